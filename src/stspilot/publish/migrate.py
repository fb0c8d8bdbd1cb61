"""The MX-migration runbook as publish steps: widen the policy, wait, switch, wait, narrow.

Pure core: no I/O, no clock (``now`` is a parameter). The order (RFC 8461 §4.1, §5.1, §8.1;
checklist G5.4, "widen before narrowing"), each step verified before the next:

1. serve the policy with the old and the new MX patterns together, then a new ``id``;
2. wait the longest ``max_age`` ever served (senders may still hold a policy without the new
   hosts until it expires) and at least the ``_mta-sts`` TTL;
3. the MX records switch to the new hosts: a person changes them (stspilot names the records),
   stspilot waits until every authoritative server shows exactly the new set on two
   consecutive polls; a long wait pauses the run, ``publish resume`` looks again;
4. wait the old MX records' TTL (resolvers may hand senders the old hosts until then);
5. serve the policy with only the new hosts' patterns, then a new ``id``.

At every moment each policy a sender may hold covers every MX host a sender may be given:
before step 3 the live MX are the old hosts, which every policy lists; after it, every policy
still cached was fetched after step 1 and lists the new hosts too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from stspilot.errors import ConfigError
from stspilot.publish.plan import Live, PublishPlan, Step, StepKind, plan_policy_change
from stspilot.rollout.generate import Publication, generate
from stspilot.rollout.runbooks import keep_patterns
from stspilot.sts.names import host_name
from stspilot.sts.policy import mx_matches

ACTION = "mx-migration"


def mx_value(hosts: Sequence[str]) -> str:
    """How an MX step names its set: the sorted host names, space-separated."""
    return " ".join(sorted({h.rstrip(".").lower() for h in hosts}))


def policy_fields(text: str) -> tuple[str, int | None, tuple[str, ...]]:
    """(mode, max_age, mx patterns) of a served policy body."""
    mode, age, mx = "", None, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "mode" and not mode:
            mode = value
        elif key == "max_age" and age is None and value.isdigit():
            age = int(value)
        elif key == "mx" and value:
            mx.append(value.lower())
    return mode, age, tuple(mx)


def plan_mx_migration(
    live: Live,
    *,
    mx_now: Sequence[str],
    mx_ttl: int,
    new_hosts: Sequence[str],
    rua: Sequence[str],
    now: datetime,
) -> PublishPlan:
    """The steps that move ``live.domain``'s mail from ``mx_now`` to ``new_hosts``."""
    domain = live.domain
    if live.policy is None or live.sts is None:
        raise ConfigError(f"{domain} serves no policy with an id: publish one first")
    mode, max_age, patterns = policy_fields(live.policy)
    if mode not in ("testing", "enforce"):
        raise ConfigError(f"{domain} is in mode {mode or 'unknown'}: nothing to migrate under")
    target = sorted({host_name(h) for h in new_hosts if h.strip()})
    if not target:
        raise ConfigError("name at least one new MX host")
    old = sorted({h.rstrip(".").lower() for h in mx_now} - {""})
    if old == target:
        raise ConfigError(f"the MX records of {domain} already name {mx_value(target)}")
    for host in old:
        if not any(mx_matches(p, host) for p in patterns):
            raise ConfigError(f"the live MX {host} is not covered by the policy: fix that first")
    both_patterns = tuple(sorted(set(patterns) | set(keep_patterns(patterns, target))))
    final_patterns = keep_patterns(patterns, target)
    steps: list[Step] = []
    notes: list[str] = []
    both: Publication | None = None
    if both_patterns != tuple(sorted(set(patterns))):
        both = generate(
            domain,
            mx_hosts=sorted(set(old) | set(target)),
            mode=mode,
            rua=rua,
            now=now,
            max_age=max_age,
            previous_id=_id_of(live.sts),
            patterns=both_patterns,
        )
        steps += plan_policy_change(live, both, action=ACTION).steps
        longest = max(live.served_max_age, max_age or 0, live.sts_ttl)
        steps.append(
            Step(
                StepKind.WAIT,
                domain,
                seconds=longest,
                note=f"senders may hold a policy without {mx_value(target)} for the longest "
                f"max_age ever served ({longest}s): only then may the MX records name them",
            )
        )
    else:
        notes.append(f"The policy served already covers {mx_value(target)}: no widening needed.")
    steps.append(
        Step(
            StepKind.MX,
            domain,
            mx_value(target),
            expect=(mx_value(old),),
            note=f"switch the MX records of {domain} to {mx_value(target)} now (at your DNS "
            "provider); stspilot waits until every authoritative server shows them",
        )
    )
    steps.append(
        Step(
            StepKind.WAIT,
            domain,
            seconds=max(mx_ttl, 0),
            note=f"the old MX records' TTL ({mx_ttl}s): resolvers may still give senders "
            f"{mx_value(old) or 'the old hosts'} until then",
        )
    )
    if tuple(final_patterns) != both_patterns:
        final = generate(
            domain,
            mx_hosts=target,
            mode=mode,
            rua=rua,
            now=now,
            max_age=max_age,
            previous_id=both.policy_id if both else _id_of(live.sts),
            patterns=final_patterns,
            avoid={both.policy_id} if both else (),
        )
        body = both.policy_text if both else live.policy
        # Planned against the widened policy that step 1 serves (the live one otherwise).
        after_widen = Live(domain, live.tlsrpt, live.sts, body, live.sts_ttl)
        narrow = plan_policy_change(after_widen, final, action=ACTION).steps
        steps += [s for s in narrow if s.kind is not StepKind.STS]
        steps += [
            Step(
                StepKind.STS,
                s.name,
                s.value,
                expect=(live.sts,),  # the apply step adds the id step 1 wrote
                ttl=s.ttl,
                policy_id=s.policy_id,
                note="a new id: senders drop the old hosts from their policy",
            )
            for s in narrow
            if s.kind is StepKind.STS
        ]
    return PublishPlan(domain, ACTION, tuple(steps), tuple(notes))


def _id_of(sts: str) -> str:
    return sts.rpartition("id=")[2].strip().rstrip(";").strip()
