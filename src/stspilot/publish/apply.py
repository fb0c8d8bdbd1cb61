"""Carry out a publish plan: each step journaled as intended, done, then verified, in order.

The one shell around ``plan.py``: it reads what is live (``read_live``), writes the plan into
the journal, and runs the steps; ``resume`` continues the domain's open run from the first step
not verified. Every step is idempotent on resume (a DNS step whose record already holds the
target writes nothing; a policy put of the same body serves the same bytes and id), so a crash
anywhere leaves a state the next run finishes, and no TXT record ever names a policy that is not
served (RFC 8461 §8.1; checklist G5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from stspilot.errors import ConfigError, PublishError
from stspilot.facts import FetchOutcome
from stspilot.probes.fetch import PolicyFetcher
from stspilot.publish.destinations import PolicyChange, PolicyDestination
from stspilot.publish.plan import (
    DNS_KINDS,
    Live,
    PublishPlan,
    Step,
    StepKind,
    Target,
    check_order,
    plan_decommission,
    plan_publication,
    plan_reporting,
)
from stspilot.publish.providers import (
    STS_PREFIX,
    TLSRPT_PREFIX,
    DnsProvider,
    TxtChange,
    change_txt,
)
from stspilot.publish.verify import (
    MxSet,
    NameServer,
    Progress,
    VerifyOptions,
    ask_mx,
    authoritative_servers,
    verify_policy,
    verify_txt,
    wait_for_mx,
)
from stspilot.store.journal import JournalRun, JournalStep, PublishJournal
from stspilot.sts.records import StsRecord, format_sts_record


@dataclass
class Publisher:
    """Everything a run needs, made once at the edge (CLI, web, monitor, bench)."""

    journal: PublishJournal
    provider: DnsProvider
    destination: PolicyDestination
    fetcher: PolicyFetcher
    zone: str
    primary: NameServer  # where the NS set is read (the provider's primary)
    clock: Callable[[], datetime]
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    nameserver_port: int = 53
    max_inline_wait: float = 600.0  # longer waits pause the run ("waiting") for a later resume
    progress: Progress | None = None
    # Called after each journal write of a step (seq, state): crash injection kills the
    # process here in the tests; a progress display could use it too.
    after_step: Callable[[int, str], None] | None = None
    _servers: tuple[NameServer, ...] = ()

    def _mark(self, run_id: int, seq: int, state: str, **fields: Any) -> None:
        self.journal.mark_step(run_id, seq, state, now=self.clock(), **fields)
        if self.after_step is not None:
            self.after_step(seq, state)

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)

    async def servers(self) -> tuple[NameServer, ...]:
        if not self._servers:
            self._servers = await authoritative_servers(
                self.zone,
                primary=self.primary,
                resolver=self.fetcher.resolver,
                port=self.nameserver_port,
            )
        return self._servers

    async def read_live(self, domain: str) -> Live:
        """The two TXT records at the primary and the policy as a sender fetches it."""
        tlsrpt, sts, fetched = await asyncio.gather(
            self.provider.read_txt(f"_smtp._tls.{domain}."),
            self.provider.read_txt(f"_mta-sts.{domain}."),
            self.fetcher.fetch_policy(domain),
        )
        body = fetched.body if fetched.outcome is FetchOutcome.OK and fetched.body else None
        served = self.journal.served_policies(domain)
        (tls_value,) = tlsrpt.values(TLSRPT_PREFIX)[:1] or (None,)
        (sts_value,) = sts.values(STS_PREFIX)[:1] or (None,)
        text = body.decode("ascii", "replace") if body is not None else None
        # The policy served now counts too, even when stspilot did not publish it: senders may
        # hold it for its max_age (RFC 8461 §8.3; checklist G5.6).
        age = _field(text, "max_age") if text else ""
        now_age = int(age) if age.isdigit() else 0
        return Live(
            domain,
            tlsrpt=tls_value,
            sts=sts_value,
            policy=text,
            sts_ttl=sts.ttl or 3600,
            served_max_age=max([now_age, *(a for a, _ in served)]),
        )

    async def plan_for(
        self,
        target: Target,
        *,
        now: datetime,
        none_since: datetime | None = None,
        history_max_age: int = 0,
    ) -> PublishPlan:
        """The steps from what is live now to ``target`` (see ``plan.py`` for the order).

        ``history_max_age`` is the longest max_age the check history saw served (the rollout's
        evidence), for policies served before stspilot published anything."""
        pub = target.publication
        if pub is None:
            raise PublishError(f"nothing to publish: {target.summary}", step="plan")
        live = await self.read_live(pub.domain)
        live = replace(live, served_max_age=max(live.served_max_age, history_max_age))
        if target.reporting_only:
            return plan_reporting(live, pub)
        if target.decommission:
            return plan_decommission(replace(live, none_since=none_since), pub, now=now)
        return plan_publication(live, pub, action=target.action)

    async def resume(self, domain: str) -> JournalRun:
        """Continue ``domain``'s open run from its first step not verified."""
        run = self.journal.open_run(domain)
        if run is None:
            raise PublishError(f"{domain} has no run to resume", step="resume")
        return await self.run(run)

    def start(
        self, plan: PublishPlan, *, actor: str, reason: str = "", dns_label: str = ""
    ) -> JournalRun:
        check_order(plan.steps)
        return self.journal.start(
            plan.domain,
            action=plan.action,
            steps=[s.to_dict() for s in plan.steps],
            actor=actor,
            reason=reason,
            dns=dns_label or self.provider.label,
            destination=self.destination.label,
            now=self.clock(),
        )

    async def run(self, run: JournalRun) -> JournalRun:
        """Carry out the run's steps from the first one not verified; returns the run as the
        journal holds it afterwards (``done``, ``waiting`` or, on error, ``failed`` + raise)."""
        previous: JournalStep | None = None
        if not self.journal.reopen(run.id, now=self.clock()):
            state = self.journal.get(run.id).state
            if state == "done":
                return self.journal.get(run.id)
            raise PublishError(
                f"run {run.id} of {run.domain} is {state}: it was superseded by a newer plan",
                step="resume",
                answer=state,
            )
        for entry in run.steps:
            if entry.state == "verified":
                previous = entry
                continue
            step = Step.from_dict(entry.target)
            if self.journal.get(run.id).state == "abandoned":
                # Another process planned this domain anew since (journal.start abandons the
                # open run): two writers would undo each other's policy and id. Stop here.
                raise PublishError(
                    f"run {run.id} of {run.domain} was superseded by a newer plan; stopped "
                    f"before step {entry.seq + 1}",
                    step=step.title,
                    answer="superseded",
                )
            try:
                if step.kind is StepKind.WAIT:
                    if not await self._wait(run, entry, step, previous):
                        return self.journal.get(run.id)
                elif step.kind is StepKind.MX:
                    if not await self._mx(run, entry, step):
                        return self.journal.get(run.id)
                else:
                    await self._step(run, entry, step)
            except (PublishError, ConfigError) as exc:
                # A provider's refusal, or a setting that does not fit this zone: the journal
                # says where it stopped, the message says how to go on.
                now = self.clock()
                resume = f"stspilot publish resume {run.domain}"
                message = f"step {entry.seq + 1} ({step.title}) failed: {exc}; resume: {resume}"
                said = exc.answer if isinstance(exc, PublishError) else "configuration"
                self.journal.mark_step(
                    run.id, entry.seq, "failed", now=now, error=str(exc), outcome={"answer": said}
                )
                self.journal.mark_run(run.id, "failed", now=now, error=message)
                step_name = exc.step if isinstance(exc, PublishError) else step.title
                raise PublishError(message, step=step_name, answer=said) from None
            previous = self.journal.get(run.id).steps[entry.seq]
        self.journal.mark_run(run.id, "done", now=self.clock())
        return self.journal.get(run.id)

    async def _wait(
        self, run: JournalRun, entry: JournalStep, step: Step, previous: JournalStep | None
    ) -> bool:
        """True when the wait is over (now or after sleeping); False: the run pauses."""
        until = step.until
        if until is None:
            since = previous.verified_at if previous and previous.verified_at else self.clock()
            until = since + timedelta(seconds=step.seconds)
            step = replace(step, until=until)
        now = self.clock()
        self._mark(run.id, entry.seq, "intended", target=step.to_dict())
        left = (until - now).total_seconds()
        if left > self.max_inline_wait:
            self.journal.mark_run(
                run.id, "waiting", now=now, error=f"waiting until {until.isoformat()}"
            )
            self._say(f"waiting until {until:%Y-%m-%d %H:%M:%S} UTC: {step.note}")
            return False
        if left > 0:
            self._say(f"waiting {left:.0f}s: {step.note}")
            await asyncio.sleep(left)
        self._mark(run.id, entry.seq, "verified", outcome={"until": until.isoformat()})
        return True

    async def read_mx(self, domain: str) -> MxSet:
        """The domain's MX set and its TTL as the zone's primary serves it."""
        return await ask_mx(self.primary, f"{domain}.")

    async def _mx(self, run: JournalRun, entry: JournalStep, step: Step) -> bool:
        """Until every authoritative server shows the MX set the step names (a person switches
        the records); True when it does, False: the run pauses until ``publish resume``."""
        assert step.value is not None
        self._mark(run.id, entry.seq, "intended", target=step.to_dict())
        self._say(f"step {entry.seq + 1}: {step.note}")
        want = step.value.split()
        allowed = {*want, *(h for e in step.expect if e for h in e.split())}
        waited = await wait_for_mx(
            await self.servers(),
            f"{run.domain}.",
            want,
            allowed=sorted(allowed),
            options=self.verify,
            patience=self.max_inline_wait,
            progress=self.progress,
        )
        if waited is None:
            message = (
                f"waiting for the MX records of {run.domain} to name {step.value}: switch them, "
                f"then stspilot publish resume {run.domain}"
            )
            self.journal.mark_run(run.id, "waiting", now=self.clock(), error=message)
            self._say(message)
            return False
        outcome = {"hosts": want, "verify_seconds": round(waited, 3)}
        self._mark(run.id, entry.seq, "verified", outcome=outcome)
        return True

    async def _step(self, run: JournalRun, entry: JournalStep, step: Step) -> None:
        domain = run.domain
        if step.kind in (StepKind.STS, StepKind.REMOVE_STS):
            # An earlier id step of this run may have written another value than planned (a
            # hosted policy's id): that value is expected here too.
            written = _earlier_sts(self.journal.get(run.id), entry.seq)
            step = replace(step, expect=tuple(dict.fromkeys((*step.expect, *written))))
        if step.kind is StepKind.STS:
            # The id is the one the policy step before it really serves (a hosted policy gets
            # its id from the store), so the TXT record never names another body (G5.1).
            served_id = _served_id(self.journal.get(run.id), entry.seq)
            if served_id and served_id != step.policy_id:
                step = replace(
                    step, value=format_sts_record(StsRecord(served_id)), policy_id=served_id
                )
        self._mark(run.id, entry.seq, "intended", target=step.to_dict())
        self._say(f"step {entry.seq + 1}: {step.title}")
        outcome: dict[str, Any]
        if step.kind in DNS_KINDS:
            prefix = TLSRPT_PREFIX if step.kind is StepKind.TLSRPT else STS_PREFIX
            change = TxtChange(step.name, prefix, step.value, step.ttl)
            result = await change_txt(self.provider, change, expected=(*step.expect, step.value))
            outcome = {"written": result.written, "before": list(result.before.values(prefix))}
            self._mark(run.id, entry.seq, "done", outcome=outcome)
            waited = await verify_txt(
                await self.servers(), change, options=self.verify, progress=self.progress
            )
        elif step.kind is StepKind.POLICY:
            assert step.value is not None
            served = await self.destination.put(
                PolicyChange(
                    domain,
                    step.value,
                    step.policy_id,
                    _field(step.value, "mode"),
                    tuple(_fields(step.value, "mx")),
                    step.max_age,
                )
            )
            outcome = {"text": served.text, "policy_id": served.policy_id}
            self._mark(run.id, entry.seq, "done", outcome=outcome)
            waited = await verify_policy(
                self.fetcher, domain, served.text, options=self.verify, progress=self.progress
            )
        else:  # REMOVE_POLICY
            await self.destination.remove(domain)
            outcome = {}
            self._mark(run.id, entry.seq, "done", outcome=outcome)
            waited = await verify_policy(
                self.fetcher, domain, None, options=self.verify, progress=self.progress
            )
        self._mark(
            run.id, entry.seq, "verified", outcome={**outcome, "verify_seconds": round(waited, 3)}
        )


def _earlier_sts(run: JournalRun, seq: int) -> tuple[str | None, ...]:
    """The values the verified id steps before ``seq`` wrote (as the journal holds them)."""
    return tuple(
        e.target.get("value")
        for e in run.steps[:seq]
        if e.kind == StepKind.STS.value and e.state == "verified"
    )


def _served_id(run: JournalRun, seq: int) -> str:
    """The id the latest policy step before ``seq`` serves ('' when none in this run)."""
    for entry in reversed(run.steps[:seq]):
        if entry.kind == StepKind.POLICY.value and entry.outcome:
            return str(entry.outcome.get("policy_id", ""))
    return ""


def _fields(policy: str, key: str) -> list[str]:
    out = []
    for line in policy.splitlines():
        k, _, v = line.partition(":")
        if k.strip() == key:
            out.append(v.strip())
    return out


def _field(policy: str, key: str) -> str:
    values = _fields(policy, key)
    return values[0] if values else ""
