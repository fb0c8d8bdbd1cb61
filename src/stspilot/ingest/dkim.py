"""DKIM verification of report mail (RFC 8460 §3, RFC 6376 §6), opt-in: the authenticity signal.

dkimpy checks the signatures; the key records come from stspilot's own resolver
(``resolver.Resolver``, so ``--nameserver`` and the lab's DNS work as for ``stspilot check``)
through a per-process cache: bulk ingest of thousands of mails from a handful of reporters
asks once per key. Every outcome is a ``mail.DkimVerdict``, never an exception: a DNS timeout
is ``temperror`` after at most ``DkimSettings.timeout`` seconds per key.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from stspilot.facts import DnsStatus
from stspilot.ingest.mail import DkimVerdict, Envelope
from stspilot.sts.names import fold_name

if TYPE_CHECKING:
    from stspilot.probes.resolver import ResolverConfig

# dkimpy and the resolver (dnspython) are imported when a mail is first verified: ``stspilot
# ingest`` without --verify-dkim reads DkimSettings from here and should not pay ~0.17 s of
# start-up for a verifier it never builds.

__all__ = [
    "DkimSettings",
    "DkimVerifier",
    "KeyLookup",
    "is_aligned",
    "lookup_key_record",
]

# At most this many signatures of one mail are tried: a hostile mail may carry hundreds.
MAX_SIGNATURES = 4
# dkimpy's leeway for signers' clocks, kept for our x= check (see _Checker).
EXPIRY_SLOP = 36000
_TEMP = (DnsStatus.TIMEOUT, DnsStatus.SERVFAIL, DnsStatus.ERROR)


@dataclass(frozen=True, slots=True)
class DkimSettings:
    """Where key records are looked up and how long they are kept; picklable, so bulk ingest
    hands it to its worker processes, each of which builds its own ``DkimVerifier``."""

    nameserver: str | None = None  # None: the system's resolv.conf
    port: int = 53
    timeout: float = 3.0  # seconds per key lookup, retries included
    cache_size: int = 1024  # key records kept per process
    cache_ttl: float = 3600.0  # seconds a key record (or its absence) is kept
    # A failed lookup is kept briefly too: with the DNS down, a run of mails from one
    # reporter costs one timeout, not one each.
    temperror_ttl: float = 60.0

    def resolver_config(self) -> ResolverConfig:
        from stspilot.probes.resolver import ResolverConfig

        servers = (self.nameserver,) if self.nameserver else ()
        return ResolverConfig(
            nameservers=servers, port=self.port, timeout=self.timeout, lifetime=self.timeout
        )


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """A key record's TXT text (None: there is none), or a temporary failure (``error``)."""

    record: bytes | None
    error: str = ""  # set: temperror


def lookup_key_record(name: str, config: ResolverConfig) -> KeyLookup:
    """The TXT record at ``name`` (``selector._domainkey.domain``), synchronously: dkimpy asks
    from plain code. A fresh resolver and event loop each time (a miss is rare, and a fresh
    loop is safe from any thread); inside a running loop the question goes to a thread."""

    from stspilot.probes.resolver import Resolver

    async def ask() -> KeyLookup:
        resolver = Resolver(config)
        try:
            found = await resolver.lookup_txt(name.rstrip("."))
        finally:
            await resolver.aclose()
        if found.status in _TEMP:
            return KeyLookup(None, found.error or found.status.value)
        if found.status is not DnsStatus.OK or not found.records:
            return KeyLookup(None)
        # RFC 6376 §3.6.2.2: the strings of one record are concatenated. A name with several
        # records is ambiguous; dkimpy takes the first, and so do we (the DKIM1 one first).
        records = [b"".join(strings) for strings in found.records]
        records.sort(key=lambda r: not r.lstrip().startswith(b"v=DKIM1"))
        return KeyLookup(records[0])

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(ask())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, ask()).result()


def is_aligned(domain: str | None, reporters: Iterable[str | None]) -> bool:
    """Whether ``d=`` is a reporter's domain: the same, a parent or a subdomain of one (the
    TLS-Report-Submitter or the From domain). That is DMARC's relaxed alignment without the
    Public Suffix List: a two-label parent counts (``mail.ru`` for ``corp.mail.ru``), but so
    would ``co.uk`` for ``a.co.uk``; a bare top-level domain never does."""
    if not domain:
        return False
    d = fold_name(domain)
    if "." not in d:
        return False
    for reporter in reporters:
        if not reporter:
            continue
        r = fold_name(reporter)
        if d == r or r.endswith("." + d) or (d.endswith("." + r) and "." in r):
            return True
    return False


class _KeyCache:
    """Key lookups by name: bounded (least recently used goes), each with an expiry time."""

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self.size = size
        self.clock = clock
        self.entries: OrderedDict[str, tuple[float, KeyLookup]] = OrderedDict()

    def get(self, name: str) -> KeyLookup | None:
        entry = self.entries.get(name)
        if entry is None:
            return None
        expires, found = entry
        if expires <= self.clock():
            del self.entries[name]
            return None
        self.entries.move_to_end(name)
        return found

    def put(self, name: str, found: KeyLookup, ttl: float) -> None:
        self.entries[name] = (self.clock() + ttl, found)
        self.entries.move_to_end(name)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


class _Capture(logging.Handler):
    """dkimpy tells why a key was refused only in its log: keep the last error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


@cache
def _checker_class() -> Any:
    """dkimpy's DKIM class with our expiry rule (below), made on first use."""
    import dkim  # type: ignore[import-untyped]
    import dkim.util  # type: ignore[import-untyped]

    class _Checker(dkim.DKIM):  # type: ignore[misc]
        """dkimpy's verifier with the signature expiry (``x=``, RFC 6376 §3.5) judged at the time
        the mail was sent (its Date, when earlier than now) instead of now: Google signs report
        mail with ``x=`` a week or so ahead, so an archive ingested later would otherwise "fail"
        every such report. x= is a MAY in RFC 6376; a replayed old report is still the
        reporter's own. The rest of the header checks are dkimpy's own."""

        as_of: float | None = None

        def verify_headerprep(self, idx: int = 0) -> Any:
            sigheaders = [(x, y) for x, y in self.headers if x.lower() == b"dkim-signature"]
            if len(sigheaders) <= idx:
                return False
            try:
                sig = dkim.util.parse_tag_value(sigheaders[idx][1])
            except dkim.util.InvalidTagValueList as exc:
                raise dkim.MessageFormatError(exc) from exc
            self.signature_fields = sig
            dkim.validate_signature_fields({k: v for k, v in sig.items() if k != b"x"})
            expires = sig.get(b"x")
            if expires is not None:
                if re.fullmatch(rb"\d+", expires) is None:
                    raise dkim.ValidationError(f"x= value is not a decimal integer ({expires!r})")
                now = time.time() if self.as_of is None else min(self.as_of, time.time())
                if int(expires) < now - EXPIRY_SLOP:
                    raise dkim.ValidationError(f"x= value is past ({int(expires)})")
                if b"t" in sig and int(expires) < int(sig[b"t"]):
                    raise dkim.ValidationError("x= value is less than t= value")
            self.domain = sig[b"d"]
            self.selector = sig[b"s"]
            include_headers = [x.lower() for x in re.split(rb"\s*:\s*", sig[b"h"])]
            self.include_headers = tuple(include_headers)
            return sig, include_headers, sigheaders

    return _Checker


class DkimVerifier:
    """Verifies report mails; one per process (or thread pool), sharing its key cache.

    ``lookup`` replaces the DNS question (name -> ``KeyLookup``); ``lookups`` counts the
    questions actually asked (cache misses)."""

    def __init__(
        self,
        settings: DkimSettings | None = None,
        *,
        lookup: Callable[[str], KeyLookup] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or DkimSettings()
        config = self.settings.resolver_config()
        self._lookup = lookup or (lambda name: lookup_key_record(name, config))
        self._cache = _KeyCache(self.settings.cache_size, clock)
        self._lock = threading.Lock()  # the SMTP receiver verifies from worker threads
        self.lookups = 0

    def key_record(self, name: str) -> KeyLookup:
        """The key record at ``name``, from the cache or DNS."""
        key = fold_name(name)
        with self._lock:
            found = self._cache.get(key)
        if found is not None:
            return found
        found = self._lookup(key)
        ttl = self.settings.temperror_ttl if found.error else self.settings.cache_ttl
        with self._lock:
            self.lookups += 1
            self._cache.put(key, found, ttl)
        return found

    def verify(self, raw: bytes, envelope: Envelope | None = None) -> DkimVerdict:
        """Verify the signatures of ``raw`` (at most ``MAX_SIGNATURES``); alignment is judged
        against the envelope's TLS-Report-Submitter and From domain, and expiry (``x=``) as of
        its Date. The best outcome wins: an aligned pass, then any pass, then temperror, then
        fail."""
        reporters: list[str | None] = []
        sent = None
        if envelope is not None:
            sent = envelope.date.timestamp() if envelope.date is not None else None
            from_domain = (envelope.from_addr or "").rpartition("@")[2] or None
            reporters = [envelope.tls_report_submitter, envelope.subject_submitter, from_domain]
        capture = _Capture()
        logger = logging.Logger("stspilot.dkim", logging.ERROR)  # not registered: ours alone
        logger.addHandler(capture)
        logger.propagate = False
        try:
            checker = _checker_class()(
                raw, logger=logger, timeout=self.settings.timeout, tlsrpt=True
            )
            checker.as_of = sent
            count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
        except _dkim().DKIMException as exc:
            return DkimVerdict("fail", reason=f"message cannot be read: {exc}")
        if count == 0:
            return DkimVerdict("none")
        verdicts = [
            self._one(checker, idx, reporters, capture) for idx in range(min(count, MAX_SIGNATURES))
        ]
        rank = {"pass": 0, "temperror": 2, "fail": 3}
        return min(verdicts, key=lambda v: rank[v.result] - (v.result == "pass" and v.aligned))

    def _one(
        self, checker: Any, idx: int, reporters: list[str | None], capture: _Capture
    ) -> DkimVerdict:
        dkim = _dkim()
        temp: list[str] = []

        def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
            text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
            found = self.key_record(text)
            if found.error:
                temp.append(found.error)
                raise dkim.DnsTimeoutError(found.error)
            return found.record

        capture.last = ""
        checker.signature_fields = {}  # set again by a signature that parses
        try:
            ok = checker.verify(idx=idx, dnsfunc=dnsfunc)
            reason = "" if ok else capture.last or "signature does not verify"
        except dkim.DKIMException as exc:
            ok, reason = False, str(exc) or type(exc).__name__
        except (ValueError, LookupError, TypeError, UnicodeError) as exc:  # hostile tag values
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        fields = checker.signature_fields or {}
        domain = _text(fields.get(b"d"))
        selector = _text(fields.get(b"s"))
        aligned = is_aligned(domain, reporters)
        if ok:
            return DkimVerdict("pass", domain, selector, aligned)
        if temp:
            return DkimVerdict("temperror", domain, selector, aligned, f"key lookup: {temp[-1]}")
        return DkimVerdict("fail", domain, selector, aligned, reason[:300])


def _dkim() -> Any:
    import dkim

    return dkim


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip().lower() or None
    return None
