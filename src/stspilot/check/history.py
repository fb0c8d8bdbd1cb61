"""Check history: one shape for every check saved to the store (CLI, API, monitor).

"Since when" and "policy changed without an id bump" compare stored checks with each other,
so every writer must hash and summarise a check the same way; this is that one way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stspilot.check.evaluate import CheckResult
    from stspilot.store import Store


def save_check(store: Store, result: CheckResult) -> int:
    """Store ``result`` as a check record and return its id."""
    from stspilot.check.render import result_to_json
    from stspilot.rollout.evidence import effective_mode, policy_digest

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
