"""Admission of POSTed report units: what an open endpoint may make the service store.

RFC 8460 §5.4 gives the HTTPS report endpoint no authentication, so anyone can POST to it.
Before a unit is committed, ``Admission.judge`` decides:

- a unit whose reports name no domain hosted or monitored here is refused (403): no store
  space for strangers' domains;
- a unit that would take a domain, or a tenant, past its daily byte budget is refused (429,
  ``Retry-After`` until the next UTC day: RFC 8460 §5.5 senders retry for a day);
- an unreadable unit (nothing but quarantine) is kept only while the quarantine's daily budget
  lasts; past it the unit is answered as before (400/415) but not kept.

Refusals are counted by reason (``refused``, exported on ``/metrics``); the bytes of admitted
units are counted per UTC day in the store (``store.intake.IntakeLedger``) after the commit.
The bytes counted are an estimate of what the unit costs the store: its raw size plus a row
cost per policy and failure detail (a small gzip body can expand into many rows).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from stspilot.ingest.pipeline import Prepared
from stspilot.store.batch import QUARANTINE_KEEP_BYTES
from stspilot.store.intake import QUARANTINE_SCOPE, scope_domain, scope_tenant

log = logging.getLogger(__name__)

ROW_COST = 300  # bytes counted per stored row besides its text (keys, numbers, indexes)
MIB = 1024 * 1024


class Ledger(Protocol):
    """What admission needs from ``store.intake.IntakeLedger``."""

    def known_domains(self) -> dict[str, int | None]: ...

    def usage(self, day: date, scopes: Sequence[str]) -> dict[str, int]: ...

    def add(self, day: date, spent: dict[str, int]) -> None: ...


@dataclass(frozen=True, slots=True)
class IntakeCaps:
    """Daily byte budgets (per UTC day) of the public report intake."""

    domain_bytes: int = 64 * MIB  # one domain: far above any real day's reports
    tenant_bytes: int = 512 * MIB  # all the domains of one tenant together
    quarantine_bytes: int = 64 * MIB  # unreadable inputs from anyone, kept as prefixes


@dataclass(frozen=True, slots=True)
class Refusal:
    """A unit not stored: the status and message that answer it, and the counted reason."""

    status: int
    reason: str  # unknown-domain, domain-cap, tenant-cap, quarantine-cap
    message: str
    retry_after: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    unit: Prepared | None  # what to commit (None: nothing)
    refusal: Refusal | None
    spent: dict[str, int]  # bytes per scope, counted once the unit is committed as new


def unit_cost(unit: Prepared) -> int:
    """Bytes a unit's reports cost the store (an estimate: raw bytes, plus per policy and
    failure-detail row its text and a fixed cost for keys, numbers and indexes)."""
    if not unit.reports:
        return 0
    cost = len(unit.reports[0].raw)  # every report of a unit shares its raw bytes (kept once)
    for r in unit.reports:
        for p in r.report.policies:
            cost += ROW_COST + sum(map(len, p.policy_string)) + sum(map(len, p.mx_host))
            for d in p.failure_details:
                cost += ROW_COST + sum(
                    len(v)
                    for v in (
                        d.result_type,
                        d.sending_mta_ip,
                        d.receiving_mx_hostname,
                        d.receiving_mx_helo,
                        d.receiving_ip,
                        d.additional_information,
                        d.failure_reason_code,
                    )
                    if v
                )
    return cost


def unit_domains(unit: Prepared) -> set[str]:
    return {
        p.policy_domain.strip().rstrip(".").lower()
        for r in unit.reports
        for p in r.report.policies
        if p.policy_domain
    }


def seconds_to_next_day(now: datetime) -> int:
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, int((tomorrow - now).total_seconds()))


class Admission:
    """Judges units against the known domains and the day's budgets (thread-safe)."""

    def __init__(
        self,
        ledger: Ledger,
        caps: IntakeCaps = IntakeCaps(),
        *,
        domains_ttl: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.caps = caps
        self.domains_ttl = domains_ttl
        self._monotonic = monotonic
        self._known: dict[str, int | None] = {}
        self._known_at = float("-inf")
        self._lock = threading.Lock()
        self.refused: Counter[str] = Counter()

    def known(self) -> dict[str, int | None]:
        now = self._monotonic()
        if now - self._known_at >= self.domains_ttl:
            self._known = self.ledger.known_domains()
            self._known_at = now
        return self._known

    def judge(self, units: Sequence[Prepared], now: datetime) -> list[Verdict]:
        """One verdict per unit, in order; budgets are shared along the batch."""
        known = self.known()
        day = now.astimezone(UTC).date()
        plans: list[tuple[Prepared, set[str], dict[str, int]]] = []
        scopes: set[str] = set()
        for unit in units:
            names = {d for d in unit_domains(unit) if d in known}
            cost = unit_cost(unit)
            spent: dict[str, int] = {}
            for name in names:
                spent[scope_domain(name)] = cost
                tenant = known[name]
                if tenant is not None:
                    spent[scope_tenant(tenant)] = cost
            if unit.quarantine is not None:
                spent[QUARANTINE_SCOPE] = min(len(unit.quarantine.raw), QUARANTINE_KEEP_BYTES)
            plans.append((unit, names, spent))
            scopes.update(spent)
        used = self.ledger.usage(day, sorted(scopes))
        verdicts = []
        with self._lock:
            for unit, names, spent in plans:
                verdict = self._one(unit, names, spent, used, now)
                if verdict.refusal is not None:
                    self.refused[verdict.refusal.reason] += 1
                for scope, size in verdict.spent.items():
                    used[scope] = used.get(scope, 0) + size
                verdicts.append(verdict)
        return verdicts

    def _one(
        self,
        unit: Prepared,
        names: set[str],
        spent: dict[str, int],
        used: dict[str, int],
        now: datetime,
    ) -> Verdict:
        if unit.reports and not names:
            return Verdict(None, UNKNOWN_DOMAIN, {})
        for scope, size in spent.items():
            if scope == QUARANTINE_SCOPE:
                continue
            cap = self.caps.domain_bytes if scope.startswith("domain:") else self.caps.tenant_bytes
            if used.get(scope, 0) + size > cap:
                kind = "domain" if scope.startswith("domain:") else "tenant"
                return Verdict(
                    None,
                    Refusal(
                        429,
                        f"{kind}-cap",
                        f"the daily report budget of this {kind} is spent; retry tomorrow",
                        seconds_to_next_day(now),
                    ),
                    {},
                )
        kept = spent.get(QUARANTINE_SCOPE)
        if kept is not None and used.get(QUARANTINE_SCOPE, 0) + kept > self.caps.quarantine_bytes:
            if not unit.reports:
                return Verdict(None, QUARANTINE_FULL, {})
            self.refused["quarantine-cap"] += 1  # the reports go in, the unreadable part not
            rest = {k: v for k, v in spent.items() if k != QUARANTINE_SCOPE}
            return Verdict(replace(unit, quarantine=None), None, rest)
        return Verdict(unit, None, spent)

    def record(self, now: datetime, spent: Sequence[dict[str, int]]) -> None:
        """Count what the committed units stored (never raises: the units are committed)."""
        total: dict[str, int] = {}
        for one in spent:
            for scope, size in one.items():
                total[scope] = total.get(scope, 0) + size
        try:
            self.ledger.add(now.astimezone(UTC).date(), total)
        except Exception:
            log.exception("could not count %d intake bytes", sum(total.values()))


UNKNOWN_DOMAIN = Refusal(
    403,
    "unknown-domain",
    "no policy domain of this report is hosted or monitored here; reports are accepted only "
    "for those",
)
QUARANTINE_FULL = Refusal(
    400,
    "quarantine-cap",
    "not a readable TLS report, and not kept: the quarantine's daily budget is spent",
)
