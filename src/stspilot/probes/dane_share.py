"""DANE's work per MX host, shared between the domains of a run (as ``Probes.probe_mx`` shares
the STARTTLS probe): many domains name one provider's MX hosts, and each host's DO address
answers, validated TLSA lookup and address judgement (RFC 7672 §2.2.2, §2.2.3) are the same
for all of them. Each is computed once per ``reuse`` seconds (the probe's window, so a host's
verdict pairs a probe and a lookup of the same age), at most ``MAX_HOSTS`` hosts are kept, a
failed lookup is asked again by the next domain, and one domain's deadline never cancels a
lookup others wait for (each question runs in its own task, ``Shared``). The judgement, which
asks nothing, is kept with the very lookup and answers it judged, and made in the caller's task.
Neither a lookup nor a judgement is reused once an RRSIG it rests on has expired.

No dnspython import here: ``check/run.py`` loads it only once DANE needs it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from stspilot.facts import AddressLookup, DnssecStatus, DnsStatus, TlsaLookup
from stspilot.probes.resolver import Resolver

if TYPE_CHECKING:
    from stspilot.probes.dane import DnssecValidator, Reply

MAX_HOSTS = 2_000  # entries per cache; past it the finished ones are dropped
_T = TypeVar("_T")
_Cache = dict[str, tuple[float, "Shared[Any]"]]
# a lookup started for a later await: a shared cache entry, or (without reuse) a task
Started = tuple[float, "Shared[_T]"] | asyncio.Future[_T]


class Shared(Generic[_T]):
    """One computation that many tasks await, run in its own task: a waiter's cancellation
    (one domain's deadline) never cancels it for the others. Each waiter waits on a future of
    its own, set by the task as it ends; what ``asyncio.shield`` would do, without its outer
    future, two callbacks and extra loop turn per wait (~20 µs each, 4 a domain with DANE).
    Once done, ``wait`` returns at once."""

    __slots__ = ("_error", "_task", "_value", "_waiters")

    def __init__(self, make: Callable[[], Awaitable[_T]]) -> None:
        self._waiters: list[asyncio.Future[_T]] = []
        self._error: BaseException | None = None
        self._task = asyncio.ensure_future(self._run(make))

    async def _run(self, make: Callable[[], Awaitable[_T]]) -> None:
        try:
            self._value = value = await make()
        except asyncio.CancelledError:
            for waiter in self._waiters:
                waiter.cancel()
            raise
        except Exception as exc:  # kept for every waiter, so the task's own ends here
            self._error = exc
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(value)
        self._waiters.clear()

    def done(self) -> bool:
        return self._task.done()

    def result(self) -> _T:
        """The value (``done()`` first); raises what the computation raised."""
        if self._task.cancelled():
            raise asyncio.CancelledError()
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> None:
        self._task.cancel()

    async def wait(self) -> _T:
        if self._task.done():
            return self.result()
        waiter: asyncio.Future[_T] = self._task.get_loop().create_future()
        self._waiters.append(waiter)
        return await waiter


class DaneShare:
    """The shared DANE lookups of one run; ``reuse`` <= 0: every domain asks for itself."""

    def __init__(self, resolver: Resolver, reuse: float) -> None:
        self.resolver = resolver
        self.reuse = reuse
        self._addresses: _Cache = {}
        self._tlsa: _Cache = {}
        # host: (the lookup and the replies judged, the judgement)
        self._judged: dict[str, tuple[TlsaLookup, tuple[Reply, ...], TlsaLookup]] = {}

    async def addresses(self, host: str) -> tuple[AddressLookup, tuple[Reply, ...]]:
        """MX ``host``'s A/AAAA asked with DO+CD (for the probe, and for DANE to validate)."""
        return await self._shared(
            self._addresses, host,
            lambda: self.resolver.lookup_address_dnssec(host),
            lambda r: r[0].status not in (DnsStatus.OK, DnsStatus.NXDOMAIN, DnsStatus.NODATA),
        )  # fmt: skip

    async def tlsa(self, validator: DnssecValidator, host: str) -> TlsaLookup:
        """MX ``host``'s TLSA lookup, validated (``DnssecValidator.lookup_tlsa``)."""
        return await self._shared(
            self._tlsa, host, lambda: validator.lookup_tlsa(host), _failed, _spent
        )

    def tlsa_started(self, validator: DnssecValidator, host: str) -> Started[TlsaLookup]:
        """``tlsa``, started now and awaited later (``tlsa_result``): its questions go out
        while the caller goes on. Without reuse, a task of the caller's own (``abandon`` it
        if the caller ends first)."""

        def make() -> Awaitable[TlsaLookup]:
            return validator.lookup_tlsa(host)

        if self.reuse <= 0:
            return asyncio.ensure_future(make())
        return self._start(self._tlsa, host, make, _spent)

    async def tlsa_result(self, host: str, started: Started[TlsaLookup]) -> TlsaLookup:
        if isinstance(started, asyncio.Future):
            return await started
        return await self._finish(self._tlsa, host, started, _failed)

    @staticmethod
    def abandon(started: Started[Any]) -> None:
        """A started lookup the caller no longer awaits: its own task is cancelled, a shared
        one goes on for the others."""
        if isinstance(started, asyncio.Future):
            started.cancel()

    async def judged(
        self, validator: DnssecValidator, lookup: TlsaLookup, replies: tuple[Reply, ...]
    ) -> TlsaLookup:
        """``lookup`` (from ``tlsa``) with its host's address records judged from ``replies``
        (from ``addresses``), RFC 7672 §2.2.2; within the window every domain passes the same
        two objects, so the judgement of those very two serves all. No task of its own: it
        asks nothing (the zone keys it needs load, shared, in their own task), so a domain
        cancelled while judging leaves no one waiting; two judging at once both judge."""
        if self.reuse <= 0:
            return await validator.judge_addresses(lookup, replies)
        known = self._judged.get(lookup.host)
        fits = known is not None and known[0] is lookup and known[1] is replies
        if known is not None and fits and not _spent(known[2]):
            return known[2]
        judged = await validator.judge_addresses(lookup, replies)
        if not _failed(judged):
            if len(self._judged) >= MAX_HOSTS:
                self._judged.clear()
            self._judged[lookup.host] = (lookup, replies, judged)
        return judged

    def cancel(self) -> None:
        """Stop what no domain waits for any more (the run is over)."""
        for cache in (self._addresses, self._tlsa):
            for _, shared in cache.values():
                shared.cancel()
            cache.clear()
        self._judged.clear()

    async def _shared(
        self,
        cache: _Cache,
        key: str,
        make: Callable[[], Awaitable[_T]],
        failed: Callable[[_T], bool],
        spent: Callable[[_T], bool] | None = None,
    ) -> _T:
        """``make()``'s result, shared within the window; ``spent``: a result that may no
        longer be used (a signature it rests on has expired), asked again."""
        if self.reuse <= 0:
            return await make()
        return await self._finish(cache, key, self._start(cache, key, make, spent), failed)

    def _start(
        self,
        cache: _Cache,
        key: str,
        make: Callable[[], Awaitable[_T]],
        spent: Callable[[_T], bool] | None,
    ) -> tuple[float, Shared[_T]]:
        """The cache entry of ``key`` within the window, started now if there is none."""
        loop = asyncio.get_running_loop()
        cached = cache.get(key)
        if (
            cached is not None
            and spent is not None
            and cached[1].done()
            and spent(cached[1].result())
        ):
            cached = None
        if cached is None or loop.time() - cached[0] > self.reuse:
            if len(cache) >= MAX_HOSTS:
                for done in [k for k, c in cache.items() if c[1].done()]:
                    del cache[done]
            cached = cache[key] = (loop.time(), Shared(make))
        return cached

    @staticmethod
    async def _finish(
        cache: _Cache, key: str, cached: tuple[float, Shared[_T]], failed: Callable[[_T], bool]
    ) -> _T:
        result: _T = await cached[1].wait()
        if failed(result) and cache.get(key) is cached:
            del cache[key]  # asked again by the next domain
        return result


def _spent(lookup: TlsaLookup) -> bool:
    """A signature the lookup's verdict rests on (its TLSA RRset's chain, or its address
    records') has expired since it was made: the verdict is made again, never reused."""
    now = time.time()
    for result in (lookup.dnssec, lookup.address_dnssec):
        if result is not None and result.expires is not None and result.expires.timestamp() <= now:
            return True
    return False


def _failed(lookup: TlsaLookup) -> bool:
    """A lookup that did not complete (not one that completed with a bad verdict)."""
    return lookup.dnssec.status is DnssecStatus.INDETERMINATE and lookup.dnssec.anchor_ok
