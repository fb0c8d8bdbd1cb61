"""Stored checks: the one way a check is saved, read back as rollout evidence, and handed to
``assess_rollout`` (the shell of the pure rollout core).

"Since when" and "policy changed without an id bump" compare stored checks with each other, so
every writer (CLI, API, monitor) must hash and summarise a check the same way: ``save_check``.
``rollout_inputs`` is what every caller of ``assess_rollout`` (CLI, API, dashboard, monitor)
reads: the latest check (fresh, or stored), the report window and the check history.

It lives in ``store/`` because both halves are I/O over the store; ``rollout/`` stays pure and
``check/`` keeps to probing and judging.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from stspilot.rollout.evidence import (
    LiveState,
    RolloutInputs,
    effective_mode,
    live_state_from_check,
    live_state_from_stored,
    policy_digest,
)

if TYPE_CHECKING:
    from stspilot.check.evaluate import CheckResult
    from stspilot.store import CheckRecord, Store


def save_check(store: Store, result: CheckResult) -> int:
    """Store ``result`` as a check record and return its id."""
    from stspilot.check.json_doc import result_to_json

    worst = result.worst
    return store.save_check(
        domain=result.domain,
        observed_at=result.observed_at,
        stage=str(result.stage),
        mode=effective_mode(result),
        worst_severity=worst.label if worst else None,
        findings_count=len(result.findings),
        policy_id=result.sts_record.id if result.sts_record else None,
        policy_sha256=policy_digest(result),
        mx_set=[m.host for m in result.mx if m.host],
        result=result_to_json(result),
    )


def live_state(record: CheckRecord) -> LiveState:
    """A stored check read back as the rollout's evidence (the rule of a fresh check)."""
    return live_state_from_stored(
        record.result,
        domain=record.domain,
        observed_at=record.observed_at,
        policy_sha256=record.policy_sha256 or "",
    )


def rollout_inputs(
    store: Store,
    domain: str,
    now: datetime,
    *,
    days: int = 14,
    latest: CheckResult | None = None,
    history_since: datetime | None = None,
    history_limit: int = 10_000,
    planned_mx: tuple[str, ...] | None = None,
    received_since: datetime | None = None,
) -> RolloutInputs | None:
    """What ``assess_rollout`` decides ``domain`` from, as of ``now``.

    The live state is ``latest`` (a check just run, not yet saved) or else the newest stored
    check; None when there is neither. Reports are counted over the ``days`` before ``now``
    (one day more, so the window's first day is whole); history is the stored checks from
    ``history_since`` (all by default), at most the newest ``history_limit``, oldest first.
    ``received_since`` counts only reports received from then on (a tenant's hosting period).
    """
    from stspilot.store.dashboard import report_window

    if latest is not None:
        live = live_state_from_check(latest)
    else:
        record = store.latest_check(domain)
        if record is None:
            return None
        live = live_state(record)
    return RolloutInputs(
        live=live,
        reports=report_window(
            store,
            live.domain,
            now - timedelta(days=days + 1),
            now,
            received_since=received_since,
        ),
        history=store.history_entries(live.domain, history_since, limit=history_limit),
        planned_mx=planned_mx,
    )
