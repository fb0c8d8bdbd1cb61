"""The publish configuration: which DNS provider and policy destination each domain uses.

A TOML file (``--config``, ``$STSPILOT_PUBLISH_CONFIG``, else ``publish.toml`` in the user's
config folder)::

    [zones."example.com"]
    provider = "rfc2136"             # or "lexicon", "manual"
    server = "192.0.2.53"            # the primary (RFC 2136 §4.3)
    port = 53
    key_name = "stspilot-example"
    key_algorithm = "hmac-sha256"
    key_secret_env = "STSPILOT_TSIG_SECRET"     # or key_secret_file = "/etc/stspilot/tsig.key"

    [domains."example.com"]
    zone = "example.com"             # default: the longest configured zone holding the domain
    policy = "webroot:/var/www/mta-sts"

Secrets come only from the environment or from a file only its owner can read; a config file
or secret file that the group or others can read is refused when it holds a secret (RFC 8945
§10, checklist G4.3). Secrets never reach the command line, the store or a log line.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stspilot.errors import ConfigError
from stspilot.publish.rfc2136 import Rfc2136Config, TsigKey

CONFIG_ENV = "STSPILOT_PUBLISH_CONFIG"
PROVIDERS = ("rfc2136", "lexicon", "manual")


def default_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("stspilot")) / "publish.toml"


def check_private(path: Path, what: str) -> None:
    """Refuse a secret-holding file that is not the caller's, or that others can read."""
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what} {path} holds a secret but is readable by others "
            f"(mode {stat.filemode(info.st_mode)}): chmod 600 {path}"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigError(f"{what} {path} holds a secret but belongs to another user")


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    zone: str  # no trailing dot
    provider: str
    options: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def secret(self, prefix: str = "key_secret") -> str | None:
        """The secret named by ``<prefix>_env`` or ``<prefix>_file``; inline only in a private
        config file."""
        env = self.options.get(f"{prefix}_env")
        if env:
            value = os.environ.get(str(env))
            if not value:
                raise ConfigError(f"zone {self.zone}: ${env} is not set")
            return value.strip()
        path = self.options.get(f"{prefix}_file")
        if path:
            secret_file = Path(str(path)).expanduser()
            if not secret_file.is_file():
                raise ConfigError(f"zone {self.zone}: no secret file {secret_file}")
            check_private(secret_file, "secret file")
            return secret_file.read_text().strip()
        inline = self.options.get(prefix)
        if inline:
            if self.source is not None:
                check_private(self.source, "config file")
            return str(inline)
        return None

    def rfc2136(self) -> Rfc2136Config:
        opts = self.options
        server = opts.get("server")
        if not server:
            raise ConfigError(f"zone {self.zone}: rfc2136 needs server = <primary address>")
        key_name = opts.get("key_name")
        key = None
        if key_name:
            secret = self.secret()
            if secret is None:
                raise ConfigError(
                    f"zone {self.zone}: key {key_name} needs key_secret_env or key_secret_file"
                )
            key = TsigKey(str(key_name), secret, str(opts.get("key_algorithm", "hmac-sha256")))
        elif not opts.get("allow_unsigned"):
            # RFC 2136 §7.5, §8.1: no unauthenticated UPDATE (checklist G2.9).
            raise ConfigError(f"zone {self.zone}: rfc2136 needs a TSIG key (key_name)")
        return Rfc2136Config(
            zone=self.zone,
            server=str(server),
            port=int(opts.get("port", 53)),
            key=key,
            timeout=float(opts.get("timeout", 10.0)),
        )

    @property
    def nameserver_port(self) -> int:
        """The port the zone's name servers answer on (53; the lab uses a high one)."""
        return int(self.options.get("nameserver_port", self.options.get("port", 53)))


@dataclass(frozen=True, slots=True)
class DomainConfig:
    domain: str
    zone: ZoneConfig
    policy: str  # hosted | webroot:PATH | elsewhere
    verify_timeout: float = 300.0


@dataclass(frozen=True, slots=True)
class PublishConfig:
    zones: Mapping[str, ZoneConfig]
    domains: Mapping[str, Mapping[str, Any]]
    source: Path | None = None

    def for_domain(
        self, domain: str, *, dns: str | None = None, policy: str | None = None
    ) -> DomainConfig:
        own = self.domains.get(domain, {})
        zone_name = str(own.get("zone", "")).rstrip(".") or self._zone_of(domain)
        if zone_name not in self.zones:
            where = self.source or "the publish config"
            raise ConfigError(
                f'no DNS provider configured for {domain}: add [zones."{zone_name}"] to {where}'
            )
        zone = self.zones[zone_name]
        if dns is not None and dns != zone.provider:
            raise ConfigError(
                f"{domain}: --dns {dns} but zone {zone.zone} is configured for {zone.provider}"
            )
        chosen = policy or str(own.get("policy", "")) or "elsewhere"
        timeout = float(own.get("verify_timeout", zone.options.get("verify_timeout", 300.0)))
        return DomainConfig(domain, zone, chosen, timeout)

    def _zone_of(self, domain: str) -> str:
        """The longest configured zone that holds ``_mta-sts.<domain>``."""
        labels = domain.split(".")
        for i in range(len(labels)):
            candidate = ".".join(labels[i:])
            if candidate in self.zones:
                return candidate
        return domain


def load_config(path: Path | None = None) -> PublishConfig:
    """Read the config file (an absent default file means an empty config)."""
    explicit = path or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    source = explicit or default_path()
    if not source.is_file():
        if explicit is not None:
            raise ConfigError(f"no publish config at {source}")
        return PublishConfig({}, {}, None)
    try:
        data = tomllib.loads(source.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    zones: dict[str, ZoneConfig] = {}
    for name, opts in (data.get("zones") or {}).items():
        if not isinstance(opts, dict):
            raise ConfigError(f"{source}: [zones.{name}] must be a table")
        provider = str(opts.get("provider", "rfc2136"))
        if provider not in PROVIDERS:
            raise ConfigError(f"{source}: zone {name}: provider must be one of {PROVIDERS}")
        zone = name.rstrip(".").lower()
        zones[zone] = ZoneConfig(zone, provider, dict(opts), source)
    domains = {
        str(k).rstrip(".").lower(): dict(v)
        for k, v in (data.get("domains") or {}).items()
        if isinstance(v, dict)
    }
    return PublishConfig(zones, domains, source)
