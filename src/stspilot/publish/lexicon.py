"""The dns-lexicon provider: the hosted DNS APIs people use (Cloudflare, Route 53, Azure, Google
Cloud DNS, Gandi, OVH, Hetzner, DigitalOcean, PowerDNS, ...), one interface.

Installed with the ``publish`` extra (``pip install 'stspilot[publish]'``). Zone config::

    [zones."example.com"]
    provider = "lexicon"
    lexicon_provider = "cloudflare"
    primary = "ns1.example-dns.com address"   # a server of the zone, for reads and verification
    auth_token_env = "CLOUDFLARE_API_TOKEN"   # every provider option: <option>_env or _file

Reads go to the zone's servers directly (``primary``), never through the API's own view, so
what is verified is what senders resolve. API calls are not atomic the way one RFC 2136 UPDATE
is: a replacement deletes the old value, then adds the new one, so the name briefly holds no
``v=STSv1`` record (senders keep their cached policy then, RFC 8461 §5.1) and never two
(checklist G1.7); the value is re-read just before writing and never overwritten when it is not
what was read (best-effort compare-and-swap).
"""

from __future__ import annotations

import asyncio
from typing import Any

import dns.name

from stspilot.errors import ConfigError, PublishError
from stspilot.publish.config import ZoneConfig
from stspilot.publish.providers import TxtChange, TxtSet
from stspilot.publish.verify import NameServer, ask_authoritative

EXTRA_HINT = "dns-lexicon is not installed: pip install 'stspilot[publish]'"
_OWN_KEYS = {"provider", "lexicon_provider", "primary", "nameserver_port", "verify_timeout"}


def _load_provider(name: str) -> Any:
    try:
        from lexicon._private.discovery import load_provider_module
    except ImportError:
        raise ConfigError(EXTRA_HINT) from None
    try:
        return load_provider_module(name).Provider
    except (ImportError, AttributeError):
        raise ConfigError(f"dns-lexicon has no provider {name!r}") from None


class LexiconProvider:
    def __init__(self, zone: ZoneConfig, server: NameServer) -> None:
        name = str(zone.options.get("lexicon_provider", ""))
        if not name:
            raise ConfigError(f"zone {zone.zone}: lexicon needs lexicon_provider = <name>")
        self.zone = zone
        self.server = server
        self.name = name
        self._provider_class = _load_provider(name)
        self._client: Any = None
        self._lock = asyncio.Lock()

    @property
    def label(self) -> str:
        return f"lexicon {self.name} zone {self.zone.zone}"

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for key, value in self.zone.options.items():
            if key in _OWN_KEYS:
                continue
            if key.endswith(("_env", "_file")):
                base = key.rsplit("_", 1)[0]
                options[base] = self.zone.secret(base)
            else:
                options[key] = value
        return options

    def _connect(self) -> Any:
        if self._client is None:
            from lexicon.config import ConfigResolver

            config = ConfigResolver().with_dict(  # type: ignore[no-untyped-call]
                {
                    "provider_name": self.name,
                    "domain": self.zone.zone,
                    "ttl": 3600,
                    self.name: self._options(),
                }
            )
            client = self._provider_class(config)
            client.authenticate()
            self._client = client
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.cleanup)
            self._client = None

    async def read_txt(self, name: str) -> TxtSet:
        return await ask_authoritative(self.server, name, label=self.label)

    async def write_txt(self, change: TxtChange, current: TxtSet) -> None:
        step = f"dns {change.label}"
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, change, current)
            except (ConfigError, PublishError):
                raise
            except Exception as exc:  # the API's own errors: HTTP 401/404/429/5xx, timeouts
                raise PublishError(
                    f"{self.label}: {_describe(exc)}", step=step, answer=_describe(exc)
                ) from None

    def _write(self, change: TxtChange, current: TxtSet) -> None:
        client = self._connect()
        relative = dns.name.from_text(change.name).relativize(dns.name.from_text(self.zone.zone))
        label = relative.to_text()
        for value in current.values(change.prefix):
            client.delete_record(None, "TXT", label, value)
        if change.value is not None:
            client.create_record("TXT", label, change.value)


def _describe(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return f"HTTP {status} {getattr(response, 'reason', '')}".strip()
    return f"{exc.__class__.__name__}: {exc}"
