"""The lab world: DNS, policy hosts and MX hosts for a list of scenarios, on a random 127.B/16.

``Lab`` is an async context manager; ``start_lab`` is a shortcut. What a client needs to point
at it is in ``LabInfo``: the nameserver address and port, the CA file and the port map (HTTPS
and SMTP run on unprivileged ports, the same number on every host address).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stspilot.check.dane import association
from stspilot.lab.certs import CertKind, LabPki
from stspilot.lab.dns_server import DnsData, DnsFault, DnsServer, Record
from stspilot.lab.dnssec import SignedZone, anchor_file_text, sign_zone
from stspilot.lab.https_host import HttpBehaviour, HttpsHost
from stspilot.lab.scenarios import Scenario
from stspilot.lab.smtp_host import SmtpBehaviour, SmtpHost

BLOCK_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class LabInfo:
    """Where the lab lives; pass these to ``CheckOptions`` or to ``stspilot check``."""

    nameserver: str
    dns_port: int
    ca_file: Path
    https_port: int
    smtp_port: int
    domains: tuple[str, ...]
    trust_anchor: Path | None = None  # DS of the lab's signed zones (DANE)

    @property
    def port_map(self) -> dict[int, int]:
        return {443: self.https_port, 25: self.smtp_port}

    def check_args(self, *, trust_anchor: bool = False) -> list[str]:
        """The ``stspilot check`` options that point it at this lab (``trust_anchor``: with
        ``--trust-anchor``, which only ``check`` takes, for DANE)."""
        return [
            "--nameserver",
            f"{self.nameserver}:{self.dns_port}",
            "--ca-file",
            str(self.ca_file),
            "--port-map",
            f"443={self.https_port},25={self.smtp_port}",
            *(
                ["--trust-anchor", str(self.trust_anchor)]
                if trust_anchor and self.trust_anchor
                else []
            ),
        ]


def txt_value(strings: Iterable[str]) -> str:
    """A TXT rdata in presentation form, one quoted character-string per item."""
    return " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in strings)


@dataclass
class _HostPlan:
    kind: str  # "https" or "smtp"
    behaviour: str
    cert: CertKind
    names: list[str] = field(default_factory=list)
    policies: dict[str, bytes] = field(default_factory=dict)
    address: str = ""


@dataclass
class _Plan:
    records: list[Record] = field(default_factory=list)
    faults: dict[str, DnsFault] = field(default_factory=dict)
    hosts: dict[tuple[str, ...], _HostPlan] = field(default_factory=dict)


def _plan(scenarios: Sequence[Scenario]) -> _Plan:
    plan = _Plan()
    for sc in scenarios:
        d = sc.domain
        plan.records.extend(sc.records())
        plan.faults.update(dict(sc.dns_faults))
        host = sc.policy_host
        if host is not None:
            key: tuple[str, ...] = (
                ("https", host.behaviour, host.cert) if sc.shared else ("https", d)
            )
            hp = plan.hosts.setdefault(key, _HostPlan("https", host.behaviour, host.cert))
            hp.names.append(f"mta-sts.{d}")
            if sc.policy is not None:
                hp.policies[f"mta-sts.{d}"] = sc.policy.encode()
        for mx in sc.mx:
            if not mx.address or not mx.name:
                continue
            # An MX name listed twice with different servers gets an address for each.
            key = (
                ("smtp", mx.behaviour, mx.cert)
                if sc.shared
                else ("smtp", mx.name, mx.behaviour, mx.cert)
            )
            hp = plan.hosts.setdefault(key, _HostPlan("smtp", mx.behaviour, mx.cert))
            if mx.name not in hp.names:
                hp.names.append(mx.name)
    return plan


def _tlsa_records(scenarios: Sequence[Scenario], pki: LabPki) -> list[Record]:
    """The scenarios' TLSA records, with data computed from the chains the hosts serve."""
    out: list[Record] = []
    for sc in scenarios:
        for tlsa in sc.tlsa:
            _usage, selector, mtype = (int(f) for f in tlsa.params.split())
            chain = pki.chains.get(tlsa.host, ())
            index = {"leaf": 0, "issuer": 1}.get(tlsa.target)
            if index is not None and index < len(chain):
                data = association(chain[index], selector, mtype).hex()
            else:  # a key nobody serves: the next key of a rollover, or a stale one
                seed = f"{tlsa.target} key of {tlsa.host}".encode()
                digest = hashlib.sha512 if mtype == 2 else hashlib.sha256
                data = digest(seed).hexdigest()
            if tlsa.target == "short":  # a digest cut short: unusable (RFC 6698 §2.1)
                data = data[:40]
            out.append(Record(f"_25._tcp.{tlsa.host}", "TLSA", f"{tlsa.params} {data}"))
    return out


def _signed_zones(scenarios: Sequence[Scenario], records: Sequence[Record]) -> list[SignedZone]:
    return [
        sign_zone(apex, records, faults=sc.dnssec_faults) for sc in scenarios for apex in sc.signed
    ]


class Lab:
    """The running world. ``async with Lab(scenarios) as lab: lab.info.nameserver ...``."""

    def __init__(
        self,
        scenarios: Sequence[Scenario],
        *,
        latency: float = 0.0,
        dns_latency: float = 0.0,
        directory: Path | None = None,
        records: Sequence[Record] = (),
        standard_ports: bool = False,
    ) -> None:
        """``records``: served by the lab DNS besides the scenarios' own (the DKIM key
        records of ``dkim_keys.LabDkimKey.records``, say). ``standard_ports``: DNS on 53, HTTPS
        on 443 and SMTP on 25, so a client that knows no port map (another tool, the system
        resolver) can use the lab; it needs the right to bind them (root in a network
        namespace of its own, as ``bench/peers.py`` runs it)."""
        self.scenarios = tuple(scenarios)
        self.records = tuple(records)
        self.standard_ports = standard_ports
        self.latency = latency
        self.dns_latency = dns_latency
        self._given_directory = directory
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.dns: DnsServer | None = None
        self.https_hosts: list[HttpsHost] = []
        self.smtp_hosts: list[SmtpHost] = []
        self._info: LabInfo | None = None

    @property
    def info(self) -> LabInfo:
        if self._info is None:
            raise RuntimeError("the lab is not running")
        return self._info

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> LabInfo:
        if self._given_directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="stspilot-lab-")
            directory = Path(self._tmp.name)
        else:
            directory = self._given_directory
        pki = LabPki(directory)
        plan = _plan(self.scenarios)
        for _ in range(BLOCK_ATTEMPTS):
            # A random 127.B/16 per lab, so two labs (two test runs) can share the machine.
            block = random.randint(2, 254)
            try:
                await self._start_in_block(block, plan, pki)
            except OSError:
                await self.stop_servers()
                continue
            return self.info
        raise OSError("could not find a free 127.B/16 block for the lab")

    async def _start_in_block(self, block: int, plan: _Plan, pki: LabPki) -> None:
        addresses: dict[str, list[str]] = defaultdict(list)
        records = list(plan.records) + list(self.records)
        for index, hp in enumerate(plan.hosts.values()):
            hp.address = f"127.{block}.{1 + index // 250}.{1 + index % 250}"
            for name in hp.names:
                addresses[name].append(hp.address)
        records += [Record(name, "A", ip) for name, ips in addresses.items() for ip in ips]
        contexts = [pki.sni_context(hp.cert, hp.names) for hp in plan.hosts.values()]
        records += _tlsa_records(self.scenarios, pki)
        signed = _signed_zones(self.scenarios, records)
        anchor_file = pki.directory / "lab-trust-anchors"
        anchor_file.write_text(anchor_file_text(signed))
        self.dns = DnsServer(
            DnsData(records, plan.faults, signed),
            host=f"127.{block}.0.1",
            port=53 if self.standard_ports else 0,
            latency=self.dns_latency,
        )
        await self.dns.start()
        https_port, smtp_port = (443, 25) if self.standard_ports else (0, 0)
        for hp, context in zip(plan.hosts.values(), contexts, strict=True):
            if hp.kind == "https":
                https = HttpsHost(
                    hp.address,
                    https_port,
                    context=context,
                    behaviour=HttpBehaviour(hp.behaviour),
                    policies=hp.policies,
                    latency=self.latency,
                )
                self.https_hosts.append(https)
                https_port = await https.service.start()
            else:
                smtp = SmtpHost(
                    hp.address,
                    smtp_port,
                    name=hp.names[0],
                    context=context,
                    behaviour=SmtpBehaviour(hp.behaviour),
                    latency=self.latency,
                )
                self.smtp_hosts.append(smtp)
                smtp_port = await smtp.service.start()
        self._info = LabInfo(
            nameserver=self.dns.host,
            dns_port=self.dns.port,
            ca_file=pki.ca_file,
            https_port=https_port,
            smtp_port=smtp_port,
            domains=tuple(sc.domain for sc in self.scenarios),
            trust_anchor=anchor_file,
        )

    async def stop_servers(self) -> None:
        services = [h.service for h in self.https_hosts] + [h.service for h in self.smtp_hosts]
        await asyncio.gather(*(service.stop() for service in services))
        if self.dns is not None:
            await self.dns.stop()
        self.https_hosts, self.smtp_hosts, self.dns, self._info = [], [], None, None

    async def stop(self) -> None:
        await self.stop_servers()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None


async def start_lab(
    scenarios: Sequence[Scenario], *, latency: float = 0.0, dns_latency: float = 0.0
) -> Lab:
    """Start a lab; the caller stops it with ``await lab.stop()``."""
    lab = Lab(scenarios, latency=latency, dns_latency=dns_latency)
    await lab.start()
    return lab
