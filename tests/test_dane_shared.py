"""``Shared`` (probes/dane_share.py): one computation awaited by many tasks, without
``asyncio.shield``. A waiter's cancellation (a domain's deadline) never cancels it for the
others; every waiter gets the same value or the same error; a finished one answers at once."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace

import pytest

from stspilot.facts import DnssecResult, DnssecStatus, DnsStatus, TlsaLookup
from stspilot.probes.dane_share import DaneShare, Shared


@pytest.mark.asyncio
async def test_every_waiter_gets_the_one_value() -> None:
    runs = []
    gate = asyncio.Event()

    async def make() -> int:
        runs.append(1)
        await gate.wait()
        return 42

    shared = Shared(make)
    waiters = [asyncio.ensure_future(shared.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not shared.done()
    gate.set()
    assert await asyncio.gather(*waiters) == [42, 42, 42]
    assert runs == [1]
    assert shared.done() and shared.result() == 42
    assert await shared.wait() == 42  # done: no waiting


@pytest.mark.asyncio
async def test_a_cancelled_waiter_does_not_cancel_the_computation() -> None:
    gate = asyncio.Event()

    async def make() -> str:
        await gate.wait()
        return "done"

    shared = Shared(make)
    first = asyncio.ensure_future(shared.wait())
    second = asyncio.ensure_future(shared.wait())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    assert await second == "done"
    # a deadline that ends the only waiter still leaves the value for the next one
    late = Shared(make)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await late.wait()
    assert await late.wait() == "done"


@pytest.mark.asyncio
async def test_an_error_reaches_every_waiter_and_later_ones() -> None:
    async def make() -> int:
        await asyncio.sleep(0)
        raise ValueError("broken")

    shared = Shared(make)
    results = await asyncio.gather(shared.wait(), shared.wait(), return_exceptions=True)
    assert [type(r) for r in results] == [ValueError, ValueError]
    with pytest.raises(ValueError, match="broken"):
        await shared.wait()


@pytest.mark.asyncio
async def test_cancel_ends_the_computation_and_its_waiters() -> None:
    async def make() -> int:
        await asyncio.sleep(3600)
        return 1

    shared = Shared(make)
    waiter = asyncio.ensure_future(shared.wait())
    await asyncio.sleep(0)
    shared.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert shared.done()
    with pytest.raises(asyncio.CancelledError):
        shared.result()


class _Judge:
    """A validator whose ``judge_addresses`` counts its calls (no DNS)."""

    def __init__(self, status: DnssecStatus = DnssecStatus.SECURE) -> None:
        self.calls = 0
        self.status = status
        self.expires: dt.datetime | None = None

    async def judge_addresses(self, lookup: TlsaLookup, replies: tuple[object, ...]) -> TlsaLookup:
        self.calls += 1
        await asyncio.sleep(0)
        return replace(lookup, address_dnssec=DnssecResult(self.status, expires=self.expires))


def _lookup() -> TlsaLookup:
    secure = DnssecResult(DnssecStatus.SECURE)
    return TlsaLookup("mx.example", "_25._tcp.mx.example", DnsStatus.OK, secure, ("3 1 1 ab",))


@pytest.mark.asyncio
async def test_a_judgement_serves_only_the_very_lookup_and_replies_it_judged() -> None:
    share = DaneShare(None, 300.0)  # type: ignore[arg-type]  # judged asks nothing itself
    judge, lookup, replies = _Judge(), _lookup(), ((DnsStatus.NODATA, ""),) * 2
    first = await share.judged(judge, lookup, replies)  # type: ignore[arg-type]
    assert await share.judged(judge, lookup, replies) is first  # type: ignore[arg-type]
    assert judge.calls == 1 and first.address_dnssec is not None
    # a new lookup of the host (its window ended), or new replies: judged again
    await share.judged(judge, _lookup(), replies)  # type: ignore[arg-type]
    await share.judged(judge, lookup, tuple(replies))  # type: ignore[arg-type]
    assert judge.calls == 3


@pytest.mark.asyncio
async def test_an_incomplete_judgement_is_not_kept() -> None:
    share = DaneShare(None, 300.0)  # type: ignore[arg-type]
    judge, lookup, replies = _Judge(DnssecStatus.INDETERMINATE), _lookup(), ()
    lookup = replace(lookup, dnssec=DnssecResult(DnssecStatus.INDETERMINATE, "timeout"))
    await share.judged(judge, lookup, replies)  # type: ignore[arg-type]
    await share.judged(judge, lookup, replies)  # type: ignore[arg-type]
    assert judge.calls == 2


class _Tlsa:
    """A validator whose TLSA lookups are secure until ``expires`` (no DNS)."""

    def __init__(self, expires: dt.datetime) -> None:
        self.calls = 0
        self.expires = expires

    async def lookup_tlsa(self, host: str) -> TlsaLookup:
        self.calls += 1
        return replace(_lookup(), dnssec=DnssecResult(DnssecStatus.SECURE, expires=self.expires))


@pytest.mark.asyncio
@pytest.mark.parametrize(("hours", "lookups"), [(1, 1), (-1, 2)])
async def test_a_lookup_is_never_reused_past_its_signatures(hours: int, lookups: int) -> None:
    """Within the window a lookup serves every domain, unless an RRSIG it rests on expired."""
    validator = _Tlsa(dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours))
    share = DaneShare(None, 300.0)  # type: ignore[arg-type]
    await share.tlsa(validator, "mx.example")  # type: ignore[arg-type]
    await share.tlsa(validator, "mx.example")  # type: ignore[arg-type]
    assert validator.calls == lookups


@pytest.mark.asyncio
async def test_a_judgement_is_never_reused_past_its_signatures() -> None:
    share = DaneShare(None, 300.0)  # type: ignore[arg-type]
    judge, lookup, replies = _Judge(), _lookup(), ()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    judge.expires = past
    await share.judged(judge, lookup, replies)  # type: ignore[arg-type]
    await share.judged(judge, lookup, replies)  # type: ignore[arg-type]
    assert judge.calls == 2
