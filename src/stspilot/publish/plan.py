"""The never-orphan order of publishing steps, from what ``rollout`` decided and what is live.

Pure core: no I/O, no clock (``now`` is a parameter). The rules (RFC 8461 §3.3, §8.1, §8.3;
RFC 8460 §3; checklist G5):

- the TLS-RPT record first, so failures are reported from the first policy on;
- the policy served (and verified through its public URL) before the ``_mta-sts`` TXT record
  names its ``id``: the reverse lets senders cache the old body under the new id (G5.1);
- every changed policy gets a fresh ``id`` (G5.2), so a policy step is always followed by a TXT
  step;
- decommission: ``mode: none`` served, a new ``id``, kept until the longest ``max_age`` ever
  served has passed, then the TXT record removed, then (after its TTL) the policy (G5.5-G5.7).

Each ``Step`` says what it changes and what the thing may hold before it (the compare-and-swap
expectation, G1.7); ``wait`` steps count from the moment the step before was verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from stspilot.errors import ConfigError
from stspilot.rollout.assess import RolloutAssessment
from stspilot.rollout.evidence import LiveState
from stspilot.rollout.generate import TXT_TTL, Publication, generate
from stspilot.rollout.runbooks import Plan as RunbookPlan
from stspilot.rollout.runbooks import keep_patterns
from stspilot.sts.names import fold_name, policy_url, sts_record_name
from stspilot.sts.records import StsRecord, format_sts_record


class StepKind(StrEnum):
    TLSRPT = "tlsrpt"  # replace the _smtp._tls TXT record
    POLICY = "policy"  # serve a policy body
    STS = "sts"  # replace the _mta-sts TXT record (a new id)
    WAIT = "wait"  # let caches expire
    REMOVE_STS = "remove-sts"
    REMOVE_POLICY = "remove-policy"
    MX = "mx"  # wait until every authoritative server shows the MX set ``value`` (a person
    # switches the MX records; stspilot verifies, it does not write them)


DNS_KINDS = frozenset({StepKind.TLSRPT, StepKind.STS, StepKind.REMOVE_STS})


@dataclass(frozen=True, slots=True)
class Step:
    """One change (or wait) and how to recognise it done."""

    kind: StepKind
    name: str  # the record's owner name (trailing dot) or the policy URL
    value: str | None = None  # record value or policy text; None: absent
    expect: tuple[str | None, ...] = ()  # what the record may hold before (compare-and-swap)
    ttl: int = TXT_TTL
    seconds: int = 0  # a wait's length, from the previous step's verification
    until: datetime | None = None  # a wait's fixed end (decommission already under way)
    policy_id: str = ""  # the id a policy step serves (the TXT step after it names it)
    max_age: int = 0  # the max_age a policy step serves
    note: str = ""

    @property
    def title(self) -> str:
        if self.kind is StepKind.WAIT:
            end = f"until {self.until:%Y-%m-%d %H:%M} UTC" if self.until else _span(self.seconds)
            return f"wait {end}: {self.note}"
        if self.kind is StepKind.POLICY:
            return f"serve the policy at {self.name} (id {self.policy_id}, max_age {self.max_age})"
        if self.kind is StepKind.REMOVE_POLICY:
            return f"stop serving {self.name}"
        if self.kind is StepKind.MX:
            return f"the MX records of {self.name} switch to {self.value}"
        if self.value is None:
            return f"remove the TXT record {self.name}"
        return f'set {self.name} TXT "{self.value}"'

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "name": self.name,
            "value": self.value,
            "expect": list(self.expect),
            "ttl": self.ttl,
            "seconds": self.seconds,
            "until": self.until.isoformat() if self.until else None,
            "policy_id": self.policy_id,
            "max_age": self.max_age,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        until = data.get("until")
        return cls(
            kind=StepKind(data["kind"]),
            name=str(data["name"]),
            value=data.get("value"),
            expect=tuple(data.get("expect") or ()),
            ttl=int(data.get("ttl", TXT_TTL)),
            seconds=int(data.get("seconds", 0)),
            until=datetime.fromisoformat(until) if until else None,
            policy_id=str(data.get("policy_id", "")),
            max_age=int(data.get("max_age", 0)),
            note=str(data.get("note", "")),
        )


def _span(seconds: int) -> str:
    """A wait's length for people: ``90s``, ``2h 30m``, ``7d``."""
    if seconds < 120:
        return f"{seconds}s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
    ]
    return " ".join(p for p in parts if p) + f" ({seconds}s)"


@dataclass(frozen=True, slots=True)
class Live:
    """What senders see now, read from the provider and the policy URL just before planning."""

    domain: str
    tlsrpt: str | None = None  # the v=TLSRPTv1 record's value
    sts: str | None = None  # the v=STSv1 record's value
    policy: str | None = None  # the policy body served, if any
    sts_ttl: int = TXT_TTL
    # Decommission: the longest max_age any policy of this domain was served with (G5.6),
    # and since when mode none has been served (None: not yet, or unknown).
    served_max_age: int = 0
    none_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class PublishPlan:
    domain: str
    action: str  # "publish", "rollback", "decommission", ...
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "action": self.action,
            "steps": [s.to_dict() for s in self.steps],
            "notes": list(self.notes),
        }


def plan_publication(live: Live, pub: Publication, *, action: str = "publish") -> PublishPlan:
    """The steps that take ``live`` to ``pub``: TLS-RPT, then policy, then the new id."""
    if pub.domain != live.domain:
        raise ConfigError(f"the publication is for {pub.domain}, not {live.domain}")
    steps: list[Step] = []
    if live.tlsrpt != pub.tlsrpt_txt.value:
        steps.append(
            Step(
                StepKind.TLSRPT,
                pub.tlsrpt_txt.name,
                pub.tlsrpt_txt.value,
                expect=(live.tlsrpt,),
                ttl=pub.tlsrpt_txt.ttl,
                note="TLS-RPT first: failures are reported from the first policy on",
            )
        )
    policy_changes = live.policy != pub.policy_text
    if policy_changes:
        steps.append(
            Step(
                StepKind.POLICY,
                pub.policy_url,
                pub.policy_text,
                policy_id=pub.policy_id,
                max_age=pub.max_age,
                note="served and fetched as a sender would before its id is published",
            )
        )
    if policy_changes or live.sts is None:
        steps.append(
            Step(
                StepKind.STS,
                pub.sts_txt.name,
                pub.sts_txt.value,
                expect=(live.sts,),
                ttl=pub.sts_txt.ttl,
                policy_id=pub.policy_id,
                note="a new id: senders fetch the policy again",
            )
        )
    return PublishPlan(live.domain, action, tuple(steps))


def plan_policy_change(live: Live, pub: Publication, *, action: str) -> PublishPlan:
    """Only the policy and its new id, never the TLS-RPT record (self-healing, MX migration:
    a repair of the mx lines must not rewrite a ``rua`` it was not asked about)."""
    full = plan_publication(live, pub, action=action)
    steps = tuple(s for s in full.steps if s.kind is not StepKind.TLSRPT)
    return PublishPlan(live.domain, action, steps)


def plan_id_bump(live: Live, *, policy_id: str, action: str = "id-bump") -> PublishPlan:
    """A new id for the policy served now (it changed while the id stayed, RFC 8461 §3.1):
    the same body served again and verified as a sender fetches it, then the TXT record with
    ``policy_id`` (checklist G5.1, G5.2)."""
    if live.policy is None or live.sts is None:
        raise ConfigError(f"{live.domain}: no policy and id are live, so no id to bump")
    text = live.policy
    age = next((v.strip() for k, _, v in _pairs(text) if k == "max_age"), "")
    value = format_sts_record(StsRecord(policy_id))
    steps = (
        Step(
            StepKind.POLICY,
            policy_url(live.domain),
            text,
            policy_id=policy_id,
            max_age=int(age) if age.isdigit() else 0,
            note="the policy served now, served again and fetched as a sender would",
        ),
        Step(
            StepKind.STS,
            sts_record_name(live.domain) + ".",
            value,
            expect=(live.sts,),
            ttl=live.sts_ttl,
            policy_id=policy_id,
            note="a new id: senders fetch the policy again",
        ),
    )
    return PublishPlan(live.domain, action, steps)


def _pairs(policy: str) -> list[tuple[str, str, str]]:
    return [line.partition(":") for line in policy.splitlines()]


def plan_reporting(live: Live, pub: Publication) -> PublishPlan:
    """Stage none -> reporting: only the TLS-RPT record (RFC 8460 §3)."""
    full = plan_publication(live, pub, action="reporting")
    steps = tuple(s for s in full.steps if s.kind is StepKind.TLSRPT)
    return PublishPlan(live.domain, "reporting", steps)


def plan_decommission(live: Live, pub_none: Publication, *, now: datetime) -> PublishPlan:
    """RFC 8461 §8.3: ``mode: none`` with a new id, kept until every policy ever served has
    expired, then the TXT record, then (after its TTL) the policy (checklist G5.5-G5.7)."""
    if pub_none.mode != "none":
        raise ConfigError("decommission publishes a mode none policy")
    serving_none = live.policy is not None and policy_mode(live.policy) == "none" and live.sts
    steps: list[Step] = []
    longest = max(live.served_max_age, pub_none.max_age)
    notes: list[str] = []
    if serving_none and live.none_since is not None:
        end = live.none_since.timestamp() + longest
        until = datetime.fromtimestamp(max(end, now.timestamp()), tz=now.tzinfo)
        steps.append(
            Step(
                StepKind.WAIT,
                live.domain,
                until=until,
                note=f"mode none since {live.none_since:%Y-%m-%d %H:%M}; the longest max_age "
                f"ever served is {longest}s",
            )
        )
    else:
        steps += plan_publication(live, pub_none, action="decommission").steps
        steps.append(
            Step(
                StepKind.WAIT,
                live.domain,
                seconds=longest,
                note=f"every cached policy expires: the longest max_age ever served is {longest}s",
            )
        )
        notes.append(f"The run pauses for {longest}s; stspilot publish resume continues it.")
    set_sts = [s.value for s in steps if s.kind is StepKind.STS]
    current_sts = set_sts[-1] if set_sts else live.sts
    steps += [
        Step(
            StepKind.REMOVE_STS,
            pub_none.sts_txt.name,
            None,
            expect=(current_sts,),
            note="the TXT record goes first (G5.7)",
        ),
        Step(
            StepKind.WAIT,
            live.domain,
            seconds=live.sts_ttl,
            note="the removed TXT record's TTL: a live TXT without a policy makes senders "
            "report sts-policy-fetch-error",
        ),
        Step(StepKind.REMOVE_POLICY, pub_none.policy_url, None, note="then the policy host"),
    ]
    return PublishPlan(live.domain, "decommission", tuple(steps), tuple(notes))


def policy_mode(policy: str) -> str | None:
    for line in policy.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "mode":
            return value.strip()
    return None


def check_order(steps: tuple[Step, ...]) -> None:
    """Refuse a step list that could show senders an orphan (a guard for hand-made plans).

    - a TXT step naming an id must come after the policy step serving that id, unless the id
      is already live (no policy step in the plan);
    - no policy is removed while a TXT record step would still follow, and the TXT removal
      comes before the policy removal.
    """
    served: set[str] = set()
    sts_removed = False
    for step in steps:
        if step.kind is StepKind.POLICY:
            served.add(step.policy_id)
        elif step.kind is StepKind.STS:
            if any(s.kind is StepKind.POLICY for s in steps) and step.policy_id not in served:
                raise ConfigError(f"{step.title}: its policy is not served before it")
        elif step.kind is StepKind.REMOVE_STS:
            sts_removed = True
        elif step.kind is StepKind.REMOVE_POLICY and not sts_removed:
            raise ConfigError("the policy would be removed while the TXT record still points at it")


# --- what ``rollout --apply`` carries out --------------------------------------------------

TARGETS = ("reporting", "testing", "enforce", "none")


@dataclass(frozen=True, slots=True)
class Target:
    """What to publish next: the publication and how to plan it."""

    action: str  # reporting, testing, enforce, rollback, decommission, ...
    publication: Publication | None  # None: nothing to publish
    reporting_only: bool = False  # only the TLS-RPT record (stage none -> reporting)
    decommission: bool = False
    summary: str = ""


class GateRefused(ConfigError):
    """``--to enforce`` while the enforce gate fails, without ``--force``."""


def _first(plan: RunbookPlan | None) -> Publication | None:
    return plan.publications[0] if plan is not None and plan.publications else None


def choose_target(
    assessment: RolloutAssessment,
    live: LiveState,
    to: str | None,
    *,
    now: datetime,
    force_reason: str = "",
) -> Target:
    """The publication that carries out the rollout's next stage (``to`` None) or ``to``.

    ``enforce`` is refused (``GateRefused``) while the enforce gate fails, unless a
    ``force_reason`` is given; the journal records it.
    """
    stage, books = assessment.stage.value, assessment.runbooks
    if to is not None and to not in TARGETS:
        raise ConfigError(f"--to must be one of {', '.join(TARGETS)}")
    wanted = (
        to
        or {
            "none": "reporting",
            "reporting": "testing",
            "testing": "enforce",
            "fixing": "enforce",
            "enforce": "enforce",
            "winding-down": "none",
        }[stage]
    )
    if wanted == "reporting":
        if stage != "none":
            raise ConfigError(f"{assessment.domain} is past reporting ({stage})")
        hosts = [m.host for m in live.mx] or ["mx.invalid"]
        tlsrpt = generate(live.domain, mx_hosts=hosts, mode="testing", now=now)
        return Target("reporting", tlsrpt, reporting_only=True, summary=books.next_step.summary)
    if wanted == "none":
        # Already serving mode none: the same body again (its id stays; the wait counts on).
        none = _first(books.decommission) or generate(
            live.domain,
            mx_hosts=[m.host for m in live.mx],
            mode="none",
            rua=live.tlsrpt_rua,
            now=now,
            previous_id=live.sts_id or "",
            patterns=(),
            max_age=live.max_age,
        )
        return Target("decommission", none, decommission=True, summary=books.decommission.summary)
    if wanted == "testing":
        if stage == "enforce":
            rollback = books.rollback
            summary = rollback.summary if rollback else ""
            return Target("rollback", _first(rollback), summary=summary)
        if stage in ("testing", "fixing"):
            return Target("testing", None, summary="the testing policy is live already")
        return Target("testing", _first(books.next_step), summary=books.next_step.summary)
    # enforce
    if stage in ("none", "reporting"):
        raise ConfigError(f"{assessment.domain} is at {stage}: publish a testing policy first")
    if not assessment.ready and not force_reason:
        failing = ", ".join(c.name for c in assessment.gate if not c.passed)
        raise GateRefused(
            f"the enforce gate fails for {assessment.domain} ({failing}); fix it, or "
            "--force REASON (the journal records the reason)"
        )
    if stage == "enforce":
        return Target("enforce", _first(books.next_step), summary=books.next_step.summary)
    proposed = _first(books.next_step) if assessment.ready else None
    if proposed is None or proposed.mode != "enforce":
        proposed = _forced_enforce(live, now)
    return Target("enforce", proposed, summary="switch to enforce: the policy, then the new id")


def _forced_enforce(live: LiveState, now: datetime) -> Publication:
    """The enforce policy for the live MX set when the gate was overridden."""
    hosts = sorted({fold_name(m.host) for m in live.mx} - {""})
    return generate(
        live.domain,
        mx_hosts=hosts,
        mode="enforce",
        rua=live.tlsrpt_rua,
        now=now,
        previous_id=live.sts_id or "",
        patterns=keep_patterns(live.mx_patterns, hosts) if hosts else None,
    )
