"""One interface for every DNS provider, and the one way a TXT record is changed through it.

A provider reads a TXT RRset as the zone's primary holds it and replaces it in one atomic step
whose precondition is the RRset it last read (compare-and-swap). ``change_txt`` is the only
caller: it reads, refuses to overwrite what someone else wrote, writes, and reads back, because
a server can answer NOERROR and change nothing (RFC 2136 §3.4.2; checklist G1.7-G1.11).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from stspilot.errors import PublishError

STS_PREFIX = "v=STSv1"
TLSRPT_PREFIX = "v=TLSRPTv1"


def split_txt(value: str) -> tuple[bytes, ...]:
    """The character-strings of one TXT record: at most 255 octets each (RFC 1035 §3.3;
    RFC 8461 §3.1 and RFC 8460 §3 join them without spaces; checklist G5.9)."""
    raw = value.encode("ascii")
    return tuple(raw[i : i + 255] for i in range(0, len(raw), 255)) or (b"",)


def owned_by(strings: Sequence[bytes], prefix: str) -> bool:
    """Whether a record (its strings joined) is a ``prefix`` record (``v=STSv1``...).

    RFC 8461 §3.1 and RFC 8460 §3 pick records by their version field; the field ends at ``;``
    or at the end of the record, so ``v=STSv10`` is not ours."""
    text = b"".join(strings).decode("ascii", "replace")
    head = text.split(";", 1)[0].strip()
    return head == prefix


@dataclass(frozen=True, slots=True)
class TxtSet:
    """A TXT RRset exactly as a server holds it: each record's strings (unjoined: an UPDATE's
    delete and its prerequisite must repeat the split the server has; checklist G1.8)."""

    name: str  # absolute, trailing dot
    records: tuple[tuple[bytes, ...], ...] = ()
    ttl: int = 0
    cname: str | None = None  # the name is an alias: no TXT can live here (RFC 2136 §1.1.4)

    def owned(self, prefix: str) -> tuple[tuple[bytes, ...], ...]:
        return tuple(r for r in self.records if owned_by(r, prefix))

    def others(self, prefix: str) -> tuple[tuple[bytes, ...], ...]:
        return tuple(r for r in self.records if not owned_by(r, prefix))

    def values(self, prefix: str) -> tuple[str, ...]:
        """The joined text of each ``prefix`` record, sorted (servers differ in RRset order)."""
        return tuple(sorted(b"".join(r).decode("ascii", "replace") for r in self.owned(prefix)))

    def holds(self, prefix: str, value: str | None) -> bool:
        """Exactly one ``prefix`` record with ``value`` (or none at all when ``value`` is None):
        two ``v=STSv1`` records mean "no policy" to a sender (RFC 8461 §3.1)."""
        return self.values(prefix) == (() if value is None else (value,))


@dataclass(frozen=True, slots=True)
class TxtChange:
    """Make ``name`` hold exactly one ``prefix`` record with ``value`` (None: no such record),
    keeping every other TXT record at the name (another service's verification token...)."""

    name: str  # absolute, trailing dot
    prefix: str
    value: str | None
    ttl: int = 3600

    @property
    def label(self) -> str:
        verb = "remove" if self.value is None else f'"{self.value}"'
        return f"{self.name} TXT {verb}"


class DnsProvider(Protocol):
    """What ``change_txt`` needs from a provider; RFC 2136, dns-lexicon and manual implement it."""

    @property
    def label(self) -> str:
        """Where changes go, for messages and the journal (no secrets)."""
        ...

    async def read_txt(self, name: str) -> TxtSet:
        """The TXT RRset at ``name`` as the provider's authority holds it now."""
        ...

    async def write_txt(self, change: TxtChange, current: TxtSet) -> None:
        """Replace ``current``'s ``change.prefix`` records by ``change.value`` in one step that
        fails (``PublishError``) when the RRset is no longer ``current``."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChangeResult:
    before: TxtSet
    after: TxtSet
    written: bool  # False: the record already held the value (a resumed step)


async def change_txt(
    provider: DnsProvider, change: TxtChange, *, expected: Sequence[str | None] = ()
) -> ChangeResult:
    """Carry out ``change`` through ``provider``: read, compare-and-swap, read back.

    ``expected`` lists the values the record may hold now (the journal's "before", and for a
    resumed step the target itself); anything else was written by someone else since the plan
    was made, and is never overwritten (checklist G1.9, G2.2): the caller re-plans.
    """
    before = await provider.read_txt(change.name)
    if check_before(change, before, expected):
        return ChangeResult(before, before, written=False)
    await provider.write_txt(change, before)
    after = await provider.read_txt(change.name)
    check_after(change, after, provider.label)
    return ChangeResult(before, after, written=True)


def check_before(change: TxtChange, before: TxtSet, expected: Sequence[str | None]) -> bool:
    """True when ``before`` already holds the change; ``PublishError`` when it must not be
    written over (a CNAME, or a value nobody planned for)."""
    step = f"dns {change.label}"
    if before.cname is not None:
        # RFC 8461 §8.2 delegation: the record lives in the CNAME target's zone (G1.10).
        raise PublishError(
            f"{change.name} is a CNAME to {before.cname}: the record is published there; "
            "configure the provider for that zone instead",
            step=step,
            answer="CNAME",
        )
    if before.holds(change.prefix, change.value):
        return True
    now = before.values(change.prefix)
    allowed = {(() if v is None else (v,)) for v in expected}
    if expected and now not in allowed:
        shown = " | ".join(now) or "no record"
        raise PublishError(
            f"{change.name} changed since the plan was made (it holds {shown}); "
            "nothing was written: run the command again to plan from what is there",
            step=step,
            answer="changed elsewhere",
        )
    return False


def check_after(change: TxtChange, after: TxtSet, label: str) -> None:
    """The read-back: RFC 2136 §3.4.2 answers NOERROR also for updates the server silently
    skipped (checklist G1.11)."""
    if not after.holds(change.prefix, change.value):
        shown = " | ".join(after.values(change.prefix)) or "no record"
        raise PublishError(
            f"{label} accepted the update but {change.name} holds {shown}",
            step=f"dns {change.label}",
            answer="NOERROR without effect",
        )
