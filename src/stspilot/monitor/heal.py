"""Self-healing, carefully: what drift a check shows, when it counts as confirmed, and which
publication repairs it.

Pure core: no I/O, no clock (``now`` is a parameter). Two repairs, each opted in per domain
(``store.heal``):

- ``id-not-bumped``: the policy served under the live ``_mta-sts`` id is not the one that id
  was first seen with (someone edited the policy and forgot the id; RFC 8461 §3.1, §8.1). The
  repair serves the same body again (verified as a sender fetches it) and publishes a new id.
- ``mx-drift`` (``mx_sync``): the live MX set and the policy's mx lines disagree. Widen before
  narrowing (checklist G5.4): a live host outside the policy is added first (old patterns
  kept); patterns that match no live host are dropped only when nothing is uncovered.

One transient or spoofed DNS answer must never rewrite an enforce policy: a drift is repaired
only when two consecutive checks at least ``min_gap`` apart saw exactly the same thing
(``confirmed``; the sightings live in the store so a restart neither resets nor skips them),
and the shell reads everything again right before it plans (a third look). Under enforce a host
is added only when the check found its STARTTLS and certificate valid (the enforce gate's
criterion for a new host).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from stspilot.rollout.evidence import HistoryEntry, LiveState
from stspilot.rollout.generate import Publication, generate
from stspilot.rollout.runbooks import keep_patterns
from stspilot.sts.names import fold_name
from stspilot.sts.policy import mx_matches

ID_NOT_BUMPED = "id-not-bumped"
MX_DRIFT = "mx-drift"
KINDS = (ID_NOT_BUMPED, MX_DRIFT)
DEFAULT_MIN_GAP = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Drift:
    """One thing a check saw that a repair could fix; ``fingerprint`` names it exactly."""

    kind: str
    fingerprint: str
    detail: str


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def announced_sha(live: LiveState, history: Sequence[HistoryEntry]) -> str:
    """The policy digest the live id was first seen with: the oldest check of the unbroken run
    of checks (ending now) that saw this id ('' when unknown)."""
    first = ""
    for entry in sorted(history, key=lambda e: e.observed_at, reverse=True):
        if entry.policy_id != live.sts_id:
            break
        if entry.policy_sha256:
            first = entry.policy_sha256
    return first


def mx_sets(live: LiveState) -> tuple[list[str], list[str], list[str], list[str]]:
    """(live hosts, policy patterns, hosts no pattern covers, patterns no host uses)."""
    hosts = sorted({fold_name(m.host) for m in live.mx} - {""})
    patterns = sorted({p.lower() for p in live.mx_patterns})
    uncovered = [h for h in hosts if not any(mx_matches(p, h) for p in patterns)]
    unused = [p for p in patterns if not any(mx_matches(p, h) for h in hosts)]
    return hosts, patterns, uncovered, unused


def observe(
    live: LiveState, history: Sequence[HistoryEntry], *, id_bump: bool, mx_sync: bool
) -> list[Drift]:
    """The drifts ``live`` shows, of the kinds opted in. Only a fully read state counts: a
    record or policy that could not be read, or an empty MX answer, shows no drift (and so
    starts the confirmation over)."""
    usable = bool(live.sts_id and live.mode and live.policy_sha256 and not live.policy_problem)
    out: list[Drift] = []
    if id_bump and usable:
        first = announced_sha(live, history)
        if first and first != live.policy_sha256:
            out.append(
                Drift(
                    ID_NOT_BUMPED,
                    _digest(str(live.sts_id), live.policy_sha256),
                    f"the policy served under id {live.sts_id} changed (sha256 "
                    f"{first[:12]}… -> {live.policy_sha256[:12]}…) but the id did not",
                )
            )
    if mx_sync and usable and live.mode in ("testing", "enforce"):
        hosts, patterns, uncovered, unused = mx_sets(live)
        if hosts and (uncovered or unused):
            out.append(
                Drift(
                    MX_DRIFT,
                    _digest(str(live.mode), ",".join(hosts), ",".join(patterns)),
                    f"live MX {', '.join(hosts)}; outside the policy: "
                    f"{', '.join(uncovered) or 'none'}; mx lines matching no live host: "
                    f"{', '.join(unused) or 'none'}",
                )
            )
    return out


def confirmed(first_seen: datetime, last_seen: datetime, checks: int, min_gap: timedelta) -> bool:
    """Two or more consecutive checks saw it, the first and the latest ``min_gap`` apart."""
    return checks >= 2 and last_seen - first_seen >= min_gap


@dataclass(frozen=True, slots=True)
class Repair:
    """What a confirmed drift calls for: a publication, or why there is none."""

    kind: str
    summary: str
    publication: Publication | None = None
    refused: str = ""  # why not (the gate, nothing to publish)
    mx_hosts: tuple[str, ...] = ()  # the MX set the repair assumes (read again before it)


def repair_for(drift: Drift, live: LiveState, *, now: datetime) -> Repair:
    """The publication that repairs ``drift`` (for ``id-not-bumped`` the shell plans the id
    bump from the body it reads live, so no publication is made here)."""
    if drift.kind == ID_NOT_BUMPED:
        return Repair(drift.kind, f"publish a new id for the policy served ({drift.detail})")
    hosts, patterns, uncovered, unused = mx_sets(live)
    mode = str(live.mode)
    if uncovered:
        chosen = tuple(sorted(set(patterns) | set(uncovered)))
        summary = f"add {', '.join(uncovered)} to the policy's mx lines (the old lines stay)"
        if mode == "enforce":
            state = {fold_name(m.host): m for m in live.mx}
            bad = [
                f"{h} ({state[h].problem or 'STARTTLS not probed'})"
                for h in uncovered
                if state[h].tls_ok is not True
            ]
            if bad:
                return Repair(
                    drift.kind,
                    summary,
                    refused="gate refused: under enforce a new MX host must pass STARTTLS with "
                    f"a valid certificate first: {', '.join(bad)}",
                )
    else:
        chosen = keep_patterns(patterns, hosts)
        summary = f"drop the mx lines no live host uses ({', '.join(unused)})"
    pub = generate(
        live.domain,
        mx_hosts=hosts,
        mode=mode,
        rua=live.tlsrpt_rua,
        now=now,
        max_age=live.max_age,
        previous_id=live.sts_id or "",
        patterns=chosen,
    )
    return Repair(drift.kind, summary, pub, mx_hosts=tuple(hosts))
