"""Orchestration: run every probe for one domain concurrently, and many domains in a bounded pool.

For one domain (``gather_facts``): the ``_mta-sts`` TXT, ``_smtp._tls`` TXT and MX lookups and
the policy fetch start at once (a checker fetches even without a TXT record, to find policy
orphans); each MX host is probed as soon as the MX set is known; the MX sets of the TLS-RPT
``mailto:`` domains are looked up once the TLS-RPT record is. The whole is bounded by a
per-domain deadline: what did not finish becomes a timeout value and ``deadline_hit`` is set.
``check_domains`` shares one resolver, policy fetcher and TLS contexts across a pool of tasks
(and, for bulk runs, shards the domains over worker processes: ``check_pool``); one broken
domain never stops the others. ``check_domains_iter`` yields the results in input order as they
complete, holding at most a window of them, for runs too long to keep in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
from collections.abc import (
    AsyncGenerator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stspilot.errors import ConfigError
from stspilot.facts import (
    AddressLookup,
    DnssecResult,
    DnsStatus,
    DomainFacts,
    FetchOutcome,
    MxLookup,
    MxProbe,
    PolicyFetch,
    SmtpOutcome,
    TlsaLookup,
    TxtLookup,
)
from stspilot.probes.dane_share import DaneShare
from stspilot.probes.resolver import Resolver, ResolverConfig, concurrently
from stspilot.probes.tls import TlsContexts
from stspilot.sts.names import domain_name, policy_url

if TYPE_CHECKING:
    from stspilot.check.evaluate import CheckResult
    from stspilot.probes.dane import DnssecValidator, Reply
    from stspilot.probes.dnssec import TrustAnchors
    from stspilot.probes.fetch import PolicyFetcher
    from stspilot.probes.smtp import MxProber

Clock = Callable[[], dt.datetime]
MAX_MX_PROBES = 10  # a zone with a thousand MX records must not become a thousand probes
MAX_RUA_DOMAINS = 5
# MX sets of TLS-RPT report domains are shared by many checked domains (an MSP's mailbox):
# within one run they are looked up once per this many seconds.
RUA_CACHE_SECONDS = 300.0
# MX hosts are shared too (a provider's MX serves thousands of an MSP's domains): within one run
# each host is probed once per this many seconds, and every domain naming it gets that probe.
MX_PROBE_CACHE_SECONDS = 300.0
SHARED_CACHE_LIMIT = 10_000  # entries per cache; past it the cache starts again
# A probe holds the chain its host sent (a few KiB): fewer of them are kept, so a run over
# 100,000 domains with as many MX hosts stays within ~10 MiB for this (the hot, shared hosts
# are probed again at most once per clearing).
MX_CACHE_LIMIT = 2_000
# In-order results: a domain starts only within this many concurrency slots of the oldest one
# not yet yielded, so a slow domain holds back a bounded number of finished results.
WINDOW_PER_SLOT = 4
# The cyclic collector's first threshold during a bulk run (Python's default: 700 allocations).
# Hundreds of domains in flight keep their tasks, futures, transports and certificates alive
# past several collections, so the default scanned them again and again: 0.6-0.7 ms of CPU a
# domain (12-14 % of a bulk check, docs/check.md); with this, ~0.2 ms. Garbage cycles are
# still collected, after at most this many allocations.
BULK_GC_THRESHOLD = 25_000
_bulk_runs = 0
_saved_threshold: tuple[int, int, int] | None = None


@contextlib.contextmanager
def bulk_gc() -> Iterator[None]:
    """Collect garbage cycles less often while a bulk run is in progress (process-wide; runs
    that overlap share it, and the thresholds before the first are restored after the last)."""
    global _bulk_runs, _saved_threshold
    if _bulk_runs == 0:
        _saved_threshold = gc.get_threshold()
        first, *older = _saved_threshold
        gc.set_threshold(max(first, BULK_GC_THRESHOLD), *older)
    _bulk_runs += 1
    try:
        yield
    finally:
        _bulk_runs -= 1
        if _bulk_runs == 0 and _saved_threshold is not None:
            gc.set_threshold(*_saved_threshold)
            _saved_threshold = None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """How to check; the defaults are a sender's view of the public Internet."""

    nameserver: str | None = None  # None: the system resolver
    dns_port: int = 53
    ca_file: Path | None = None  # an extra CA to trust (the lab's)
    port_map: Mapping[int, int] = field(default_factory=dict)  # {443: 8443, 25: 2525}
    dns_timeout: float = 2.0
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # HTTPS reads and each SMTP reply
    fetch_timeout: float = 20.0  # the whole policy fetch
    smtp_timeout: float = 30.0  # one whole STARTTLS probe
    deadline: float = 45.0  # one whole domain
    probe_mx: bool = True
    allow_private: bool = True  # False in service mode: the SSRF guard
    concurrency: int = 50
    expiry_warning_days: int = 14
    # DANE (RFC 7672): TLSA of every probed MX host and the MX RRset, DNSSEC-validated from
    # these trust anchors (a DS/DNSKEY file; None: the IANA root KSKs)
    dane: bool = True
    trust_anchor: Path | None = None
    # An MX host named by several domains of a run is probed once and its probe shared for
    # this many seconds (0: every domain probes its MX hosts itself).
    mx_probe_reuse: float = MX_PROBE_CACHE_SECONDS


class Probes:
    """The shared network clients of a check run: resolver, policy fetcher, MX prober."""

    def __init__(self, options: CheckOptions) -> None:
        self.options = options
        nameservers = (options.nameserver,) if options.nameserver else ()
        self.resolver = Resolver(
            ResolverConfig(
                nameservers,
                options.dns_port,
                timeout=options.dns_timeout,
                lifetime=max(options.dns_timeout * 2, options.dns_timeout + 1),
            )
        )
        self.tls = TlsContexts.create(options.ca_file)
        self._fetcher: PolicyFetcher | None = None
        self._prober: MxProber | None = None
        # DANE's validator (dnspython's message and DNSSEC code, cryptography) is built when
        # the first MX answer needs it, after the first questions have left; a trust anchor
        # file given is read now, so a bad one stops the run before any output.
        self._anchors: TrustAnchors | None = None
        if options.dane and options.trust_anchor is not None:
            from stspilot.probes.dnssec import TrustAnchors

            self._anchors = TrustAnchors.load(options.trust_anchor)
        self._dnssec: DnssecValidator | None = None
        self._rua: dict[str, tuple[float, asyncio.Future[MxLookup]]] = {}
        self._mx: dict[str, tuple[float, asyncio.Future[MxProbe]]] = {}
        # DANE per MX host (DO addresses, validated TLSA), shared like the probe
        self.dane_share = DaneShare(self.resolver, options.mx_probe_reuse)
        self.warmed = False

    @property
    def fetcher(self) -> PolicyFetcher:
        """The policy fetcher (h11 and the HTTP code load on first use, after the first
        DNS questions of a check have left)."""
        if self._fetcher is None:
            from stspilot.probes.fetch import FetchOptions, PolicyFetcher

            options = self.options
            fetch = FetchOptions(
                port=options.port_map.get(443, 443),
                ca_file=options.ca_file,
                connect_timeout=options.connect_timeout,
                read_timeout=options.read_timeout,
                total_timeout=options.fetch_timeout,
                allow_private=options.allow_private,
            )
            self._fetcher = PolicyFetcher(self.resolver, fetch, tls=self.tls)
        return self._fetcher

    @property
    def prober(self) -> MxProber:
        """The STARTTLS prober, made on first use."""
        if self._prober is None:
            from stspilot.probes.smtp import MxProber, SmtpOptions

            options = self.options
            smtp = SmtpOptions(
                port=options.port_map.get(25, 25),
                connect_timeout=options.connect_timeout,
                command_timeout=options.read_timeout,
                total_timeout=options.smtp_timeout,
                allow_private=options.allow_private,
            )
            self._prober = MxProber(self.resolver, smtp, tls=self.tls)
        return self._prober

    @property
    def dnssec(self) -> DnssecValidator | None:
        """The DNSSEC validator of the run (None with ``dane=False``), built on first use."""
        if self._dnssec is None and self.options.dane:
            from stspilot.probes.dane import DnssecValidator
            from stspilot.probes.dnssec import TrustAnchors

            anchors = self._anchors or TrustAnchors.load(None)  # None: the IANA root KSKs
            self._dnssec = DnssecValidator(self.resolver, anchors)
        return self._dnssec

    def preload(self) -> None:
        """What the answers will need, made ready in a thread while they travel (the first
        domain's), so the loop stays free to read them and send what they start: dnspython's
        message code (it reads the DO answers: the MX set, the MX hosts' addresses), the
        trust store, DANE's validator and the pure core. Done on the loop, this held the MX
        hosts' questions back: first packet to SMTP connect 212-243 ms, 153-171 ms from a
        thread (`strace` timelines of the lab, `docs/check.md`, "Issue 14")."""
        if self.options.dane:
            import dns.message  # noqa: F401
        _warm(self.tls)
        if self.options.dane:
            import stspilot.probes.dane
        import stspilot.check.evaluate  # noqa: F401

    async def probe_mx(self, host: str, address: AddressLookup | None = None) -> MxProbe:
        """The STARTTLS probe of MX ``host`` (every address), shared between the domains of a
        run that name the same host: probed once per ``options.mx_probe_reuse`` seconds.
        ``address``: the host's addresses when already looked up (DANE asks them with DO+CD)."""
        if self.options.mx_probe_reuse <= 0:
            return await self.prober.probe_mx(host, address)
        return await self.probe_mx_started(host, address)

    def probe_mx_started(
        self, host: str, address: AddressLookup | None = None
    ) -> asyncio.Future[MxProbe]:
        """``probe_mx``'s probe, started, to await later (DANE's work goes on meanwhile in the
        caller's task); cancelling it cancels no probe that others wait for."""
        if self.options.mx_probe_reuse <= 0:
            return asyncio.ensure_future(self.prober.probe_mx(host, address))
        loop = asyncio.get_running_loop()
        cached = self._mx.get(host)
        if cached is None or loop.time() - cached[0] > self.options.mx_probe_reuse:
            if len(self._mx) > MX_CACHE_LIMIT:
                self._mx = {h: c for h, c in self._mx.items() if not c[1].done()}
            task = asyncio.ensure_future(self.prober.probe_mx(host, address))
            cached = self._mx[host] = (loop.time(), task)
        # shield: one domain's deadline must not cancel a probe that others wait for
        return asyncio.shield(cached[1])

    async def lookup_rua_mx(self, domain: str) -> MxLookup:
        """The MX set of a TLS-RPT ``mailto:`` domain, shared between domains of a run."""
        loop = asyncio.get_running_loop()
        cached = self._rua.get(domain)
        if cached is None or loop.time() - cached[0] > RUA_CACHE_SECONDS:
            if len(self._rua) > SHARED_CACHE_LIMIT:
                self._rua.clear()
            task = asyncio.ensure_future(self.resolver.lookup_mx(domain))
            cached = self._rua[domain] = (loop.time(), task)
        # shield: one domain's deadline must not cancel a lookup that others wait for
        result = await asyncio.shield(cached[1])
        if result.status in (DnsStatus.TIMEOUT, DnsStatus.SERVFAIL, DnsStatus.ERROR):
            self._rua.pop(domain, None)  # a failure is asked again by the next domain
        return result

    async def aclose(self) -> None:
        for _, task in self._mx.values():  # probes no domain waits for any more
            task.cancel()
        self.dane_share.cancel()
        if self._fetcher is not None:
            await self._fetcher.aclose()

    async def __aenter__(self) -> Probes:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


@dataclass
class _Partial:
    """Facts as they arrive; whatever is missing at the deadline becomes a timeout value."""

    domain: str
    sts: TxtLookup | None = None
    tlsrpt: TxtLookup | None = None
    mx: MxLookup | None = None
    policy: PolicyFetch | None = None
    probes: dict[str, MxProbe] = field(default_factory=dict)
    rua_mx: dict[str, MxLookup] = field(default_factory=dict)
    mx_dnssec: DnssecResult | None = None
    tlsa: dict[str, TlsaLookup] = field(default_factory=dict)
    apex: TxtLookup | None = None

    def facts(self, observed_at: dt.datetime, *, deadline_hit: bool, probe_mx: bool) -> DomainFacts:
        d = self.domain
        late = "the check's deadline passed first"
        mx = self.mx or MxLookup(d, DnsStatus.TIMEOUT, error=late)
        hosts = [h.host for h in mx.hosts if h.host][:MAX_MX_PROBES] if probe_mx else []
        probes = tuple(
            self.probes.get(host) or MxProbe(host, SmtpOutcome.TIMEOUT, error=late)
            for host in hosts
        )
        return DomainFacts(
            domain=d,
            observed_at=observed_at,
            sts_txt=self.sts or TxtLookup(f"_mta-sts.{d}", DnsStatus.TIMEOUT, error=late),
            tlsrpt_txt=self.tlsrpt or TxtLookup(f"_smtp._tls.{d}", DnsStatus.TIMEOUT, error=late),
            mx=mx,
            policy=self.policy or PolicyFetch(policy_url(d), FetchOutcome.TIMEOUT, error=late),
            mx_probes=probes,
            rua_mx=tuple(self.rua_mx.values()),
            deadline_hit=deadline_hit,
            mx_dnssec=self.mx_dnssec,
            tlsa=tuple(self.tlsa[host] for host in hosts if host in self.tlsa),
            apex_txt=self.apex,
        )


async def _collect(partial: _Partial, probes: Probes, probe_mx: bool) -> None:
    d, resolver = partial.domain, probes.resolver

    apex: asyncio.Future[TxtLookup] | None = None

    async def apex_if_missing(lookup: TxtLookup, version: bytes) -> None:
        """TXT at the domain itself when ``lookup`` holds no record of ``version`` (asked
        once for both records): a record published at the apex by mistake gets named."""
        nonlocal apex
        if lookup.status not in (DnsStatus.OK, DnsStatus.NXDOMAIN, DnsStatus.NODATA):
            return
        if any(b"".join(r).startswith(version) for r in lookup.records):
            return
        if apex is None:
            apex = asyncio.ensure_future(resolver.lookup_txt(d))
        partial.apex = await apex

    async def sts() -> None:
        partial.sts = await resolver.lookup_txt(f"_mta-sts.{d}")
        await apex_if_missing(partial.sts, b"v=STSv1")

    async def policy() -> None:
        partial.policy = await probes.fetcher.fetch_policy(d)

    async def probe(host: str) -> None:
        partial.probes[host] = await probes.probe_mx(host)

    async def rua(domain: str) -> None:
        partial.rua_mx[domain] = await probes.lookup_rua_mx(domain)

    # DANE: each MX host's A/AAAA asked once with DO+CD, for the probe and to validate them
    # (RFC 7672 §2.2.2), shared per host for the run as the probe (probes/dane_share.py)
    async def addresses_then_probe(host: str) -> tuple[Reply, ...]:
        """A host's DO address answers (for DANE), its probe started with their addresses
        and recorded as soon as it ends (whatever DANE is doing then)."""
        address, answers = await probes.dane_share.addresses(host)
        probing = probes.probe_mx_started(host, address)
        probing.add_done_callback(lambda done: _record_probe(partial, host, done))
        started.append(probing)
        return answers

    started: list[asyncio.Future[MxProbe]] = []

    async def dane_and_probes(
        validator: DnssecValidator, hosts: list[str], mx: MxLookup, answer: Reply
    ) -> None:
        """A domain's DANE work and its probes in this one task (a task costs ~37,000
        instructions): the hosts' TLSA lookups start (each asks its TLSA and, if not loaded,
        its zone's keys together, shared, in tasks of their own), then each host's DO
        addresses and its probe (which runs on in its own task), then the MX RRset (whose
        zone's keys are loaded by then when a host is in the domain's zone), then each host's
        TLSA judged with its address answers, then the probes awaited."""
        share = probes.dane_share
        tlsa = [share.tlsa_started(validator, host) for host in hosts]
        try:
            answers = await concurrently(*map(addresses_then_probe, hosts)) if hosts else []
            lookups = [
                await share.tlsa_result(host, pending)
                for host, pending in zip(hosts, tlsa, strict=True)
            ]
            partial.tlsa.update(zip(hosts, lookups, strict=True))
            partial.mx_dnssec = await validator.validate_mx(mx, answer)
            for host, lookup, replies in zip(hosts, lookups, answers, strict=True):
                partial.tlsa[host] = await share.judged(validator, lookup, replies)
            for probing in started:
                await probing  # recorded by its callback
        except BaseException:  # what no one else waits for ends (shared work goes on)
            for pending in tlsa:
                share.abandon(pending)
            for probing in started:
                probing.cancel()  # a shared probe's shield, or a probe of this domain's own
            raise

    async def mx_then_probes() -> None:
        answer: Reply | None = None
        if not probes.options.dane:
            partial.mx = await resolver.lookup_mx(d)
        else:  # one DO question gives the MX set and what DANE validates (RFC 7672 §2.2.1)
            partial.mx, answer = await resolver.lookup_mx_dnssec(d)
        hosts = list(dict.fromkeys(h.host for h in partial.mx.hosts if h.host))
        hosts = hosts[:MAX_MX_PROBES] if probe_mx and partial.mx.status is DnsStatus.OK else []
        validator = probes.dnssec if answer is not None else None
        if validator is not None and answer is not None:  # DANE: beside the probes
            await dane_and_probes(validator, hosts, partial.mx, answer)
        elif hosts:
            await concurrently(*(probe(host) for host in hosts))

    async def tlsrpt_then_rua() -> None:
        partial.tlsrpt = await resolver.lookup_txt(f"_smtp._tls.{d}")
        await apex_if_missing(partial.tlsrpt, b"v=TLSRPTv1")
        if partial.tlsrpt.status is not DnsStatus.OK:
            return
        from stspilot.sts.records import rua_domains, select_tlsrpt_record

        record = select_tlsrpt_record(partial.tlsrpt.records).record
        if record is None:
            return
        others = [r for r in rua_domains(record) if r != d][:MAX_RUA_DOMAINS]
        if others:
            await concurrently(*(rua(r) for r in others))

    # The policy fetch last: its code loads (first domain only) after the other questions left.
    await concurrently(sts(), mx_then_probes(), tlsrpt_then_rua(), policy())


def _record_probe(partial: _Partial, host: str, done: asyncio.Future[MxProbe]) -> None:
    if not done.cancelled() and done.exception() is None:
        partial.probes[host] = done.result()


def _warm(tls: TlsContexts) -> None:
    # TlsContexts.create refused a CA file that does not load; nothing else can fail here but
    # the system trust store, and then the fetches and probes that need it say why.
    with contextlib.suppress(OSError, ValueError):  # ssl.SSLError is an OSError
        tls.warm()


async def gather_facts(
    domain: str, *, probes: Probes, options: CheckOptions | None = None, now: Clock = utc_now
) -> DomainFacts:
    """Everything a sender would see for ``domain`` (normalized), within the deadline."""
    options = options or probes.options
    observed_at = now()
    partial = _Partial(domain)
    deadline_hit = False
    try:
        async with asyncio.timeout(options.deadline):
            await _collect(partial, probes, options.probe_mx)
    except TimeoutError:
        deadline_hit = True
    return partial.facts(observed_at, deadline_hit=deadline_hit, probe_mx=options.probe_mx)


async def check_domain(
    domain: str,
    *,
    probes: Probes | None = None,
    options: CheckOptions | None = None,
    now: Clock = utc_now,
) -> CheckResult:
    """Probe and evaluate one domain: ``await check_domain("example.com")``.

    Pass a shared ``probes`` when checking many domains; without one, clients are made for
    this call and closed after it. ``InvalidName`` (a ``ConfigError``) if ``domain`` is not a
    domain name (``sts.names.domain_name``).
    """
    domain = domain_name(domain)
    options = options or (probes.options if probes else CheckOptions())
    if probes is None:
        async with Probes(options) as own:
            facts = await _gather_loading_core(domain, own, options, now)
    else:
        facts = await _gather_loading_core(domain, probes, options, now)
    from stspilot.check.evaluate import evaluate

    return evaluate(facts, expiry_warning_days=options.expiry_warning_days)


async def _gather_loading_core(
    domain: str, probes: Probes, options: CheckOptions, now: Clock
) -> DomainFacts:
    """``gather_facts``, with the TLS contexts built and the code the answers need imported
    once the first questions have left (the first domain's only, ``Probes.preload``, in a
    thread), so that work is done while the answers travel rather than before the first
    packet or in the loop's way."""
    if probes.warmed:
        return await gather_facts(domain, probes=probes, options=options, now=now)
    task = asyncio.ensure_future(gather_facts(domain, probes=probes, options=options, now=now))
    probes.warmed = True
    for _ in range(3):  # the lookups' tasks start and send (the policy host's A/AAAA last)
        await asyncio.sleep(0)
    loaded = asyncio.get_running_loop().run_in_executor(None, probes.preload)
    try:
        return await task
    finally:
        await loaded


def _broken_facts(domain: str, exc: Exception, observed_at: dt.datetime) -> DomainFacts:
    if isinstance(exc, ConfigError):
        error = str(exc)[:300]
    else:
        error = f"internal error while checking: {type(exc).__name__}: {exc}"[:300]
    return DomainFacts(
        domain=domain,
        observed_at=observed_at,
        sts_txt=TxtLookup(f"_mta-sts.{domain}", DnsStatus.ERROR, error=error),
        tlsrpt_txt=TxtLookup(f"_smtp._tls.{domain}", DnsStatus.ERROR, error=error),
        mx=MxLookup(domain, DnsStatus.ERROR, error=error),
        notes=(error,),
    )


def broken_result(domain: str, exc: Exception, observed_at: dt.datetime) -> CheckResult:
    """The result of a domain whose check itself failed: every lookup an error, with why."""
    from stspilot.check.evaluate import evaluate

    return evaluate(_broken_facts(domain, exc, observed_at))


async def check_one(domain: str, probes: Probes, options: CheckOptions, now: Clock) -> CheckResult:
    """``check_domain`` for bulk runs: a bug in one domain's check becomes its result."""
    try:
        return await check_domain(domain, probes=probes, options=options, now=now)
    except Exception as exc:  # one broken domain must not stop the run
        return broken_result(domain, exc, now())


def _window(options: CheckOptions, window: int | None) -> int:
    return max(1, window if window is not None else WINDOW_PER_SLOT * options.concurrency)


async def check_domains_iter(
    domains: Iterable[str],
    *,
    options: CheckOptions | None = None,
    now: Clock = utc_now,
    on_result: Callable[[CheckResult], None] | None = None,
    probes: Probes | None = None,
    workers: int | None = None,
    window: int | None = None,
) -> AsyncGenerator[tuple[int, CheckResult], None]:
    """Check many domains; yield ``(index, result)`` in input order as results complete.

    ``async for i, result in check_domains_iter(names, options=...)``. ``domains`` is read
    lazily, as room opens. Order costs a bounded reorder buffer: a domain is started only
    while it is fewer than ``window`` (default ``4 * options.concurrency``) places behind the
    next one to yield, so a slow domain holds back at most ``window`` results and memory does
    not grow with the number of domains. ``on_result`` is called as each domain finishes
    (completion order: progress bars). ``workers``, ``probes`` and ``now`` as for
    ``check_domains``; with ``workers=None`` an iterable without ``len`` runs in one process.
    Stopping early: close the iterator (``contextlib.aclosing``) to stop the checks in
    flight and any worker processes at once.
    """
    options = options or (probes.options if probes else CheckOptions())
    size = _window(options, window)
    if probes is None:
        from stspilot.check.pool import check_sharded_iter, default_workers

        if workers is None:
            count = default_workers(len(domains)) if isinstance(domains, Sized) else 1
        else:
            count = max(1, workers)
        if isinstance(domains, Sized):
            count = min(count, max(1, len(domains)))
        if count > 1:
            sharded = check_sharded_iter(
                domains, workers=count, options=options, now=now, on_result=on_result, window=size
            )
            async with contextlib.aclosing(sharded):
                async for item in sharded:
                    yield item
            return
    own = probes is None
    shared = probes or Probes(options)
    try:
        async with contextlib.aclosing(
            _iter_in_process(domains, shared, options, now, on_result, size)
        ) as stream:
            async for item in stream:
                yield item
    finally:
        if own:
            await shared.aclose()


async def _iter_in_process(
    domains: Iterable[str],
    probes: Probes,
    options: CheckOptions,
    now: Clock,
    on_result: Callable[[CheckResult], None] | None,
    window: int,
) -> AsyncGenerator[tuple[int, CheckResult], None]:
    source = enumerate(domains)
    finished: asyncio.Queue[tuple[int, CheckResult]] = asyncio.Queue()
    running: set[asyncio.Task[None]] = set()
    waiting: dict[int, CheckResult] = {}  # finished, behind a slower one: at most ``window``
    head = started = received = 0  # next index to yield; domains started; results in
    exhausted = False

    async def one(index: int, domain: str) -> None:
        finished.put_nowait((index, await check_one(domain, probes, options, now)))

    def start_more() -> None:
        nonlocal started, exhausted
        while not exhausted and started - received < options.concurrency:
            if started >= head + window:
                return
            item = next(source, None)
            if item is None:
                exhausted = True
                return
            task = asyncio.ensure_future(one(*item))
            running.add(task)
            task.add_done_callback(running.discard)
            started += 1

    with bulk_gc():
        try:
            start_more()
            while received < started:
                index, result = await finished.get()
                received += 1
                if on_result is not None:
                    on_result(result)
                waiting[index] = result
                ready = []
                while head in waiting:
                    ready.append((head, waiting.pop(head)))
                    head += 1
                start_more()  # before yielding: the next checks run while the caller writes
                for item in ready:
                    yield item
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)


async def check_domains(
    domains: Iterable[str],
    *,
    options: CheckOptions | None = None,
    now: Clock = utc_now,
    on_result: Callable[[CheckResult], None] | None = None,
    probes: Probes | None = None,
    workers: int | None = None,
) -> list[CheckResult]:
    """Check many domains with at most ``options.concurrency`` in flight; results in input order.

    Give normalized domains (``sts.names.domain_name``); one that is not a domain still gets a
    result (its lookups fail). ``on_result`` is called as each domain finishes (progress bars).
    ``workers`` > 1 shards the run over that many processes (``stspilot.check.pool``; ``now``
    must then be picklable, e.g. a module-level function); None means one process per CPU for
    runs of 200 domains or more, else one. With ``probes`` given, the run stays in this
    process. Every result is held until the end: for long runs ``check_domains_iter`` yields
    them as they come with bounded memory.
    """
    todo: Sequence[str] = list(domains)
    stream = check_domains_iter(
        todo,
        options=options,
        now=now,
        on_result=on_result,
        probes=probes,
        workers=workers,
        # Everything is kept anyway: no reason to hold a domain back behind a slow one.
        window=max(1, len(todo)),
    )
    async with contextlib.aclosing(stream):
        return [result async for _, result in stream]
