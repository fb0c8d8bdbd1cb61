"""What the dashboard says in words: each stage and what to do next, the enforce gate read
for the stage a domain is in, and the live-versus-hosted truth (does what senders see equal
what stspilot hosts).

Pure: values in, sentences out. The live side is the latest stored check (``checks.result``,
the ``stspilot.check/1`` entry written by ``render.result_to_json``); the hosted side is the
``HostedDomain`` served now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stspilot.store.hosting import HostedDomain

__all__ = ["STAGES", "Note", "StageHelp", "gate_words", "live_versus_hosted", "stage_help"]


@dataclass(frozen=True, slots=True)
class StageHelp:
    stage: str
    meaning: str
    next: str


STAGES: dict[str, StageHelp] = {
    h.stage: h
    for h in (
        StageHelp(
            "unchecked",
            "No check of this domain is stored yet, so nothing is known about what senders see.",
            "Run `stspilot rollout DOMAIN` (or enrol it in the monitor) to store a first check.",
        ),
        StageHelp(
            "none",
            "Senders see no MTA-STS policy and no TLS-RPT record: mail may be delivered "
            "without TLS or to an impostor, and nobody reports it.",
            "Publish the TLS-RPT record first (_smtp._tls TXT) to start receiving reports.",
        ),
        StageHelp(
            "reporting",
            "Senders send TLS-RPT reports, but there is no MTA-STS policy in force yet.",
            "Host a policy in mode testing here and publish its _mta-sts TXT id.",
        ),
        StageHelp(
            "testing",
            "The policy is in mode testing: senders check TLS and report failures, but "
            "deliver anyway. No failures were reported in the gate's window.",
            "Keep it in testing until the enforce gate passes, then switch to enforce.",
        ),
        StageHelp(
            "fixing",
            "The policy is in mode testing and senders report failures: under enforce this "
            "mail would be refused.",
            "Fix the causes listed under Failures (each result type says how) until the "
            "reports are clean for the gate's days.",
        ),
        StageHelp(
            "enforce",
            "The policy is in mode enforce: senders that support MTA-STS refuse to deliver "
            "over a connection that fails the checks.",
            "Watch the failures and reporters below; a failure now is mail that was not "
            "delivered. Roll back to testing if a change broke delivery.",
        ),
        StageHelp(
            "winding-down",
            "The policy is in mode none: senders forget the cached policy as it expires.",
            "Keep serving mode none until the old max_age has passed, then remove the records.",
        ),
    )
}


def stage_help(stage: str) -> StageHelp:
    return STAGES.get(stage, StageHelp(stage, f"Stage {stage}.", ""))


def gate_words(stage: str, failing: int, total: int) -> tuple[str, str]:
    """(level, sentence) for the enforce gate as the stage makes it mean something: a gate
    before enforce is "may I switch?", on a domain already at enforce it is "is it still
    safe?"; ``level`` is ok, warn or bad."""
    if total == 0:
        return "muted", "No stored check: the gate needs one."
    if stage == "enforce":
        if failing == 0:
            return "ok", "Already enforcing, and every criterion still holds."
        return (
            "warn",
            f"Already enforcing. {failing} of {total} criteria no longer hold: "
            "the conditions that made enforce safe have changed (see each one's evidence). "
            "Mail that fails them is refused now, not just reported.",
        )
    if failing == 0:
        return "ok", "Ready for mode enforce: every criterion passes."
    return "bad", f"Not ready for enforce yet: {failing} of {total} criteria fail."


@dataclass(frozen=True, slots=True)
class Note:
    """One statement about the live-versus-hosted truth; ``level`` is ok, warn or bad."""

    level: str
    text: str


def _live_policy(result: Mapping[str, Any]) -> Mapping[str, Any] | None:
    policy = result.get("policy")
    return policy if isinstance(policy, Mapping) else None


def _mx(values: Any) -> tuple[str, ...]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        return ()
    return tuple(sorted(str(v).strip().lower().rstrip(".") for v in values))


def live_versus_hosted(
    hosted: HostedDomain,
    *,
    live_id: str | None,
    result: Mapping[str, Any] | None,
    observed_at: datetime | None,
    earlier_ids: Sequence[str] = (),
) -> tuple[Note, ...]:
    """Whether senders' view (the latest check: the live _mta-sts TXT id and the policy
    fetched from mta-sts.<domain>) equals the policy hosted here (RFC 8461 §3.1, §3.3)."""
    d = hosted.domain
    if result is None or observed_at is None:
        return (
            Note(
                "warn",
                f"Unknown: no check of {d} is stored, so nothing says whether its DNS points "
                "here. Run `stspilot rollout " + d + "`.",
            ),
        )
    notes: list[Note] = []
    if observed_at < hosted.updated_at:
        notes.append(
            Note(
                "warn",
                f"The last check ({observed_at:%Y-%m-%d %H:%M} UTC) predates the last change "
                f"of the hosted policy ({hosted.updated_at:%Y-%m-%d %H:%M} UTC): what follows "
                "may be out of date; check again.",
            )
        )
    policy = _live_policy(result)
    if policy is None:
        notes.append(
            Note(
                "bad",
                f"Senders get no policy: https://mta-sts.{d}/.well-known/mta-sts.txt did not "
                f"serve one at the last check. Point mta-sts.{d} at this service.",
            )
        )
    else:
        same = (
            str(policy.get("mode")) == hosted.mode
            and _mx(policy.get("mx")) == _mx(hosted.mx)
            and policy.get("max_age") == hosted.max_age
        )
        if same:
            notes.append(Note("ok", f"DNS points here: mta-sts.{d} serves the policy hosted here."))
        else:
            diffs = []
            if str(policy.get("mode")) != hosted.mode:
                diffs.append(f"mode {policy.get('mode')} live, {hosted.mode} hosted")
            if _mx(policy.get("mx")) != _mx(hosted.mx):
                diffs.append(
                    f"mx {', '.join(_mx(policy.get('mx'))) or '(none)'} live, "
                    f"{', '.join(_mx(hosted.mx)) or '(none)'} hosted"
                )
            if policy.get("max_age") != hosted.max_age:
                diffs.append(f"max_age {policy.get('max_age')} live, {hosted.max_age} hosted")
            notes.append(
                Note(
                    "bad",
                    f"Senders see a different policy than the one hosted here ({'; '.join(diffs)}"
                    f"): mta-sts.{d} does not point at this service, or points elsewhere too. "
                    "Edits made here do not reach senders until it does.",
                )
            )
    if not live_id:
        notes.append(
            Note(
                "bad",
                f"No _mta-sts.{d} TXT record with an id was seen: senders do not look for a "
                f'policy at all. Publish _mta-sts.{d} TXT "{hosted.sts_txt_value}".',
            )
        )
    elif live_id != hosted.policy_id:
        older = " (an earlier id of this policy)" if live_id in earlier_ids else ""
        notes.append(
            Note(
                "bad",
                f"The live TXT id is {live_id}{older}, the hosted policy's id is "
                f"{hosted.policy_id}: senders that cached the policy will not fetch the new "
                f'one. Publish _mta-sts.{d} TXT "{hosted.sts_txt_value}".',
            )
        )
    else:
        notes.append(Note("ok", f"The live TXT id equals the hosted one ({live_id})."))
    return tuple(notes)
