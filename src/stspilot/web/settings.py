"""Settings of ``stspilot serve``: one frozen value made at the edge (CLI or environment)."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from stspilot.errors import ConfigError
from stspilot.sts.names import fold_name

if TYPE_CHECKING:
    from stspilot.check.run import CheckOptions
    from stspilot.store import Store
    from stspilot.store.accounts import Accounts
    from stspilot.store.hosting import HostedPolicies
    from stspilot.web.hosting import PolicyCache

log = logging.getLogger(__name__)

ENV_PREFIX = "STSPILOT_"
DEFAULT_REPORT_MAX_BYTES = 10 * 1024 * 1024  # RFC 8460 §5.2's commonly seen receiver limit
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """``"127.0.0.1, 10.0.0.0/8"`` → networks; a bare address is a /32 or /128."""
    out: list[IpNetwork] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ConfigError(f"not an IP address or network: {item!r}") from exc
    return tuple(out)


def in_networks(address: str, networks: tuple[IpNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


@dataclass(frozen=True, slots=True)
class WebSettings:
    """Everything the web app needs to know besides the store.

    ``secret_key`` signs session and CSRF cookies: every replica behind one load balancer needs
    the same one. ``public_hosts`` are the app's own names (dashboard, API, report POST); any
    other ``mta-sts.*`` Host only ever gets a policy file or a 404.
    """

    secret_key: bytes = field(repr=False)
    public_hosts: frozenset[str] = frozenset()
    # Report intake (RFC 8460 §5.4): where, how big, how often per client.
    report_path: str = "/tlsrpt"
    report_max_bytes: int = DEFAULT_REPORT_MAX_BYTES
    report_rate: float = 1.0  # sustained POSTs per second per client
    report_burst: int = 20
    # What the open intake may store per UTC day (ingest/admission.py): reports only for hosted
    # or monitored domains, and at most these many bytes per domain, per tenant, and of
    # unreadable inputs in the quarantine.
    intake_domain_bytes: int = 64 * 1024 * 1024
    intake_tenant_bytes: int = 512 * 1024 * 1024
    intake_quarantine_bytes: int = 64 * 1024 * 1024
    login_rate: float = 0.2  # login attempts per second per client (one per 5 s sustained)
    login_burst: int = 10
    # Clients whose X-Forwarded-For is believed (Caddy on the same host by default).
    trusted_proxies: tuple[IpNetwork, ...] = LOOPBACK
    # Clients allowed to call GET /ask (Caddy's on-demand TLS).
    ask_clients: tuple[IpNetwork, ...] = LOOPBACK
    metrics_clients: tuple[IpNetwork, ...] = LOOPBACK  # who may read GET /metrics
    secure_cookies: bool = True  # Secure + __Host- prefix; off only for plain-HTTP development
    session_seconds: int = 12 * 3600
    # How long a replica serves a cached policy before re-reading the generation counter:
    # the bound on how stale another replica's change can be.
    policy_cache_ttl: float = 2.0
    policy_cache_size: int = 100_000
    # Delegation targets shown to customers: `mta-sts.<d>` CNAME -> policy_cname_target;
    # `_mta-sts.<d>` CNAME -> `<d>.<txt_delegation_zone>` when we publish their TXT too.
    policy_cname_target: str | None = None
    txt_delegation_zone: str | None = None
    # The publish config (publish/config.py) for web actions and the delegation zone's TXT
    # records; None: $STSPILOT_PUBLISH_CONFIG or the user config folder's, as for the CLI.
    publish_config: Path | None = None
    # Optional mail intake in the same process.
    smtp_listen: tuple[str, int] | None = None
    smtp_domains: frozenset[str] = frozenset()
    smtp_verify_dkim: bool = True  # as `stspilot receive`: the public target of forged reports
    imap_config: Path | None = None
    imap_interval: float = 60.0
    # Live checks started from the API ("check now"). None: the public Internet in service
    # mode, i.e. with the SSRF guard on (no private, loopback or link-local targets).
    check_options: CheckOptions | None = None
    max_live_checks: int = 4  # at once, per replica
    # A tenant user's new hosted name is served only once its DNS proves control (web/proof.py:
    # a TXT challenge); administrators add names without. Off only for in-process tests.
    require_hosting_proof: bool = True
    # Connection bounds of the server `stspilot serve` runs (web/server.py) and of the intake.
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_header_bytes: int = 64 * 1024
    keep_alive: float = 5.0
    max_connections: int = 1024
    max_uploads: int = 16  # report bodies being received at once, per process (503 beyond)

    def __post_init__(self) -> None:
        if len(self.secret_key) < 16:
            raise ConfigError("the secret key needs at least 16 bytes")
        if not self.report_path.startswith("/"):
            raise ConfigError("the report path must start with /")
        if self.report_rate <= 0 or self.report_burst < 1:
            raise ConfigError("report rate and burst must be positive")
        if self.smtp_listen is not None and not self.smtp_domains:
            raise ConfigError("the SMTP receiver needs --smtp-domain (whose mail it accepts)")
        object.__setattr__(self, "public_hosts", frozenset(fold_name(h) for h in self.public_hosts))

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
    ) -> WebSettings:
        """Settings from ``STSPILOT_*`` variables; ``overrides`` win (the CLI's options)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        key = env.get(ENV_PREFIX + "SECRET_KEY")
        key_file = env.get(ENV_PREFIX + "SECRET_KEY_FILE")
        if key is None and key_file:
            try:
                key = Path(key_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the secret key file: {exc}") from exc
        if key is None:
            log.warning(
                "no STSPILOT_SECRET_KEY: using a random one; sessions end on restart and do "
                "not work across replicas"
            )
            key = secrets.token_urlsafe(32)
        values["secret_key"] = key.encode("utf-8")
        if hosts := env.get(ENV_PREFIX + "PUBLIC_HOSTS"):
            values["public_hosts"] = frozenset(h.strip() for h in hosts.split(",") if h.strip())
        if proxies := env.get(ENV_PREFIX + "TRUSTED_PROXIES"):
            values["trusted_proxies"] = parse_networks(proxies)
        if ask := env.get(ENV_PREFIX + "ASK_CLIENTS"):
            values["ask_clients"] = parse_networks(ask)
        if scrapers := env.get(ENV_PREFIX + "METRICS_CLIENTS"):
            values["metrics_clients"] = parse_networks(scrapers)
        if server := env.get(ENV_PREFIX + "NAMESERVER"):
            # The DNS server the live checks and the hosting proofs ask (HOST or HOST:PORT).
            from stspilot.check.run import CheckOptions

            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            if port and not port.isdigit():
                raise ConfigError(f"{ENV_PREFIX}NAMESERVER: {server!r} is not HOST[:PORT]")
            values["check_options"] = CheckOptions(
                allow_private=False, nameserver=host or server, dns_port=int(port or 53)
            )
        if publish := env.get(ENV_PREFIX + "PUBLISH_CONFIG"):
            values["publish_config"] = Path(publish)
        if (proof := env.get(ENV_PREFIX + "REQUIRE_HOSTING_PROOF")) is not None:
            values["require_hosting_proof"] = proof.lower() not in ("0", "false", "no")
        if (insecure := env.get(ENV_PREFIX + "INSECURE_COOKIES")) is not None:
            values["secure_cookies"] = insecure.lower() not in ("1", "true", "yes")
        for name in ("policy_cname_target", "txt_delegation_zone", "report_path"):
            if text := env.get(ENV_PREFIX + name.upper()):
                values[name] = text
        numbers = {
            "report_max_bytes": int,
            "report_rate": float,
            "report_burst": int,
            "policy_cache_ttl": float,
            "intake_domain_bytes": int,
            "intake_tenant_bytes": int,
            "intake_quarantine_bytes": int,
            "header_timeout": float,
            "body_timeout": float,
            "max_header_bytes": int,
            "keep_alive": float,
            "max_connections": int,
            "max_uploads": int,
        }
        for name, kind in numbers.items():
            if text := env.get(ENV_PREFIX + name.upper()):
                try:
                    values[name] = kind(text)
                except ValueError as exc:
                    raise ConfigError(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc
        values.update(overrides or {})
        return cls(**values)  # type: ignore[arg-type]  # checked in __post_init__


@dataclass(frozen=True, slots=True)
class WebContext:
    """What every handler reaches through ``request.app.state.ctx``: made once by create_app."""

    settings: WebSettings
    store: Store
    accounts: Accounts
    hosting: HostedPolicies
    policy_cache: PolicyCache
    clock: Callable[[], datetime]
