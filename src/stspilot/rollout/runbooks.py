"""The rollout's runbooks: next step, rollback, decommission and MX migration, with exact records.

Pure core: no I/O, no clock. Every plan that changes what senders see carries a ``Publication``
from ``generate`` (the policy to serve first, then the TXT record with a new ``id``: RFC 8461
§8.1) and says how long to wait, because senders may keep a cached policy for its ``max_age``
(RFC 8461 §3.2, §5.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stspilot.findings import Finding, finding
from stspilot.rollout.evidence import LiveState
from stspilot.rollout.gate import Criterion, Stage
from stspilot.rollout.generate import DAY, WEEK, Publication, generate
from stspilot.sts.names import fold_name, host_name
from stspilot.sts.policy import mx_matches

# Gate criteria about the evidence rather than the setup: failing only these under enforce
# calls for reports, not for a rollback.
EVIDENCE_ONLY = frozenset({"report-volume", "tlsrpt"})


@dataclass(frozen=True, slots=True)
class Plan:
    """A titled list of steps, the publication they ask for (if any) and what to watch after."""

    title: str
    summary: str
    steps: tuple[str, ...]
    publications: tuple[Publication, ...] = ()
    watch: tuple[str, ...] = ()
    wait_until: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "summary": self.summary,
            "steps": list(self.steps),
            "publications": [p.to_dict() for p in self.publications],
            "watch": list(self.watch),
            "wait_until": self.wait_until.isoformat() if self.wait_until else None,
        }


@dataclass(frozen=True, slots=True)
class Runbooks:
    next_step: Plan
    rollback: Plan | None
    decommission: Plan
    migration: Plan | None
    findings: list[Finding] = field(default_factory=list)
    tlsa_rollover: Plan | None = None  # where some MX host publishes DANE (RFC 7672 §4)


def _gen(used: set[str], domain: str, **kwargs: Any) -> Publication:
    """``generate`` with an id no other plan of this assessment uses: the plans printed
    together are alternatives, and copying an id from one into another would leave senders on
    their cached policy (RFC 8461 §3.1)."""
    pub = generate(domain, avoid=used, **kwargs)
    used.add(pub.policy_id)
    return pub


def _steps(pub: Publication, live: LiveState | Sequence[str]) -> tuple[str, ...]:
    """The publication's steps, without "publish the TLS-RPT record" when exactly that record
    is live already (``live`` or the live ``rua`` list)."""
    rua = live.tlsrpt_rua if isinstance(live, LiveState) else tuple(live)
    return pub.steps[1:] if tuple(rua) == pub.rua else pub.steps


def _days(seconds: int) -> str:
    if seconds % DAY == 0:
        n = seconds // DAY
        return f"{n} day{'s' if n != 1 else ''}"
    return f"{seconds / 3600:.1f} hours"


def _when(t: datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M} UTC"


def keep_patterns(patterns: Sequence[str], hosts: Sequence[str]) -> tuple[str, ...]:
    """The current patterns that cover a live host, plus an exact line for each uncovered host."""
    norm = [p.lower() for p in patterns]
    kept = [p for p in norm if any(mx_matches(p, h) for h in hosts)]
    missing = [h for h in hosts if not any(mx_matches(p, h) for p in norm)]
    return tuple(sorted(set(kept) | set(missing)))


def build_runbooks(
    live: LiveState,
    *,
    stage: Stage,
    ready: bool,
    failing: Sequence[Criterion],
    history_max_age: int,
    since: datetime | None,
    planned_mx: tuple[str, ...] | None,
    now: datetime,
) -> Runbooks:
    hosts = sorted({fold_name(m.host) for m in live.mx} - {""})
    rua = live.tlsrpt_rua
    prev = live.sts_id or ""
    # The longest max_age any policy was served with bounds how long senders remember it.
    served_max_age = max(history_max_age, live.max_age or 0)
    used: set[str] = {live.sts_id} if live.sts_id else set()
    findings: list[Finding] = []

    enforce_pub: Publication | None = None
    if stage == "none":
        next_step = _start_reporting(used, live.domain, hosts, now)
    elif stage == "reporting":
        next_step = _start_testing(used, live.domain, hosts, rua, now, prev)
    elif stage in ("testing", "fixing") and ready:
        enforce_pub = _gen(
            used,
            live.domain,
            mx_hosts=hosts,
            mode="enforce",
            rua=rua,
            now=now,
            previous_id=prev,
            patterns=keep_patterns(live.mx_patterns, hosts),
        )
        next_step = Plan(
            "Switch to enforce",
            "Every gate criterion passes: publish the enforce policy, then the new id.",
            _steps(enforce_pub, live),
            (enforce_pub,),
            watch=(
                "Run stspilot rollout daily for two weeks: failures now mean refused mail.",
                "Keep the rollback below at hand; it takes effect as senders see the new id.",
            ),
        )
    elif stage == "winding-down":
        next_step = _decommission(used, live, hosts, served_max_age, since, now, findings)
    elif stage == "enforce" and ready:
        next_step = _keep_enforcing(used, live, hosts, rua, now, prev)
    else:
        next_step = _fix(used, live, hosts, rua, failing, stage, now, prev)

    rollback = None
    if stage == "enforce":
        rollback = _rollback(used, live, hosts, rua, live.max_age or WEEK, prev, now)
    elif enforce_pub is not None:
        rollback = _rollback(
            used, live, hosts, rua, enforce_pub.max_age, enforce_pub.policy_id, now
        )
    decommission = (
        next_step
        if stage == "winding-down"
        else _decommission(used, live, hosts, served_max_age, None, now, findings)
    )
    migration = _migration(used, live, hosts, planned_mx, now, findings)
    rollover = tlsa_rollover(live)
    return Runbooks(next_step, rollback, decommission, migration, findings, rollover)


# DaneState values (check/dane_verdict.py) of a host that publishes DANE
_WITH_DANE = frozenset({"match", "mismatch", "no-tls", "unusable", "not-checked"})


def tlsa_rollover(live: LiveState) -> Plan | None:
    """Renewing an MX certificate without breaking DANE (RFC 7671 §8.1, RFC 7672 §4): the
    next key's TLSA record goes out first, the key changes only once caches hold both."""
    hosts = [m for m in live.mx if m.dane in _WITH_DANE]
    if not hosts:
        return None
    names = ", ".join(f"_25._tcp.{m.host}" for m in hosts)
    broken = [f"{m.host} ({m.dane_problem})" for m in hosts if m.dane_problem]
    steps = []
    if broken:
        steps.append(
            "First repair what DANE senders refuse now: publish the 3 1 1 record of the key "
            f"each host serves (the dane.mismatch finding prints it) for {', '.join(broken)}."
        )
    steps += [
        "Simplest: renew with the same key (certbot --reuse-key, or your ACME client's "
        "equivalent); a 3 1 1 record pins the key, not the certificate, so nothing changes.",
        "For a new key: create it first and compute its digest: openssl pkey -in new.key "
        "-pubout -outform DER | openssl dgst -sha256 (the hex is the record's data).",
        f"Publish the new record next to the current one at {names}: "
        "IN TLSA 3 1 1 <new digest>; keep the old record.",
        "Wait at least twice the TLSA TTL (and until the zone is re-signed), then run "
        "stspilot check: dane.stale-record names the new record, dane.match the old one.",
        "Install the certificate with the new key; run stspilot check: dane.match now "
        "names the new record.",
        "After another two TTLs remove the old record. Keep two records at all times "
        "(current + next), or add 2 1 1 records for the issuing CA as a second anchor.",
    ]
    return Plan(
        "TLSA rollover (renewing an MX certificate with a new key)",
        f"{len(hosts)} MX host(s) publish DANE; a new key without a pre-published TLSA "
        "record makes every DANE sender refuse mail to it.",
        tuple(steps),
        watch=(
            "stspilot monitor alerts on dane.mismatch, on a served key missing from TLSA, "
            "and on DNSSEC turning bogus.",
        ),
    )


def _start_reporting(used: set[str], domain: str, hosts: Sequence[str], now: datetime) -> Plan:
    # Reporting first: TLS-RPT shows how senders' TLS to the MX hosts fares before any policy.
    pub = _gen(used, domain, mx_hosts=hosts or ["mx.invalid"], mode="testing", now=now)
    return Plan(
        "Start reporting",
        "Publish the TLS-RPT record only; senders start mailing daily reports.",
        (f"Publish {pub.tlsrpt_txt.zone_line()}",),
        watch=(
            "Ingest the reports (stspilot ingest / stspilot receive) for a week or two.",
            "Then run stspilot rollout again: it proposes the testing policy.",
        ),
    )


def _start_testing(
    used: set[str], domain: str, hosts: Sequence[str], rua: Sequence[str], now: datetime, prev: str
) -> Plan:
    if not hosts:
        return Plan("Add MX hosts", "The domain has no MX hosts to cover.", ())
    pub = _gen(used, domain, mx_hosts=hosts, mode="testing", rua=rua, now=now, previous_id=prev)
    return Plan(
        "Publish a testing policy",
        "Testing makes senders validate every MX and report failures without refusing mail.",
        _steps(pub, rua),
        (pub,),
        watch=(
            "Reports now carry policy-type sts; every failure names its MX and result type.",
            "Fix what they show; stspilot rollout proposes enforce once the gate passes.",
        ),
    )


def _keep_enforcing(
    used: set[str],
    live: LiveState,
    hosts: Sequence[str],
    rua: Sequence[str],
    now: datetime,
    prev: str,
) -> Plan:
    if (live.max_age or 0) >= WEEK:
        return Plan(
            "Keep enforcing",
            "Enforce is healthy; nothing to publish.",
            (),
            watch=("Run stspilot rollout (or the monitor) daily; failures now mean refused mail.",),
        )
    # RFC 8461 §10.2: a short max_age under enforce widens the downgrade window (checklist A9.1).
    pub = _gen(
        used,
        live.domain,
        mx_hosts=hosts,
        mode="enforce",
        rua=rua,
        now=now,
        previous_id=prev,
        patterns=keep_patterns(live.mx_patterns, hosts),
    )
    return Plan(
        "Raise max_age",
        f"Enforce is healthy but max_age is {live.max_age}s; a week or more keeps an attacker "
        "from waiting out the cached policy.",
        _steps(pub, live),
        (pub,),
    )


def _fix(
    used: set[str],
    live: LiveState,
    hosts: Sequence[str],
    rua: Sequence[str],
    failing: Sequence[Criterion],
    stage: Stage,
    now: datetime,
    prev: str,
) -> Plan:
    steps = [f"{c.title}: {c.evidence}" for c in failing]
    pubs: tuple[Publication, ...] = ()
    if any(c.name == "mx-covered" for c in failing) and hosts and live.mode:
        pub = _gen(
            used,
            live.domain,
            mx_hosts=hosts,
            mode=live.mode,
            rua=rua,
            now=now,
            previous_id=prev,
            patterns=keep_patterns(live.mx_patterns, hosts),
        )
        pubs = (pub,)
        steps += _steps(pub, live)
    if stage != "enforce":
        title, summary = "Fix before enforce", "enforce would refuse mail until they pass."
    elif {c.name for c in failing} <= EVIDENCE_ONLY:
        # The MX hosts and the policy are fine; only the reports are missing or too few.
        title, summary = "Restore the reports", "enforce works, but nobody sees its failures."
    else:
        title, summary = "Fix now or roll back", "enforce refuses mail until they pass."
    return Plan(
        title,
        f"{len(failing)} gate criterion(s) fail; {summary}",
        tuple(steps),
        pubs,
        watch=("Run stspilot rollout again after each fix; the failures must stop for a week.",),
    )


def _rollback(
    used: set[str],
    live: LiveState,
    hosts: Sequence[str],
    rua: Sequence[str],
    old_max_age: int,
    prev: str,
    now: datetime,
) -> Plan:
    patterns = keep_patterns(live.mx_patterns, hosts) if hosts else live.mx_patterns
    if not patterns:  # no MX and no mx line: a testing policy would have nothing to list
        return Plan(
            "Roll back to testing",
            "The domain has no MX hosts and the policy no mx line: add the MX records first.",
            (f"Then run stspilot generate {live.domain} --mode testing.",),
        )
    pub = _gen(
        used,
        live.domain,
        mx_hosts=hosts,
        mode="testing",
        rua=rua,
        now=now,
        previous_id=prev,
        patterns=patterns,
    )
    until = now + timedelta(seconds=old_max_age)
    return Plan(
        "Roll back to testing",
        "Serve the testing policy, then publish its new id; senders switch when they see it.",
        (
            *_steps(pub, live),
            "Senders that check the TXT id before delivering (RFC 8461 §5.1) follow within the "
            "TXT TTL; a sender that only refreshes on expiry may keep the enforce policy for its "
            f"max_age of {_days(old_max_age)}, until {_when(until)}.",
        ),
        (pub,),
        wait_until=until,
    )


def _decommission(
    used: set[str],
    live: LiveState,
    hosts: Sequence[str],
    served_max_age: int,
    since: datetime | None,
    now: datetime,
    findings: list[Finding],
) -> Plan:
    """RFC 8461 §8.3 (checklist A5.8): serve mode none until every policy ever served expired."""
    if live.mode == "none":
        start = since or now
        until = start + timedelta(seconds=served_max_age)
        if since is not None and now >= until:
            findings.append(
                finding(
                    "rollout.decommission-safe",
                    f"mode none has been served since {_when(since)}, longer than the longest "
                    f"max_age ever served ({_days(served_max_age)}).",
                    f"Delete _mta-sts.{live.domain}, then the policy host.",
                )
            )
            steps: tuple[str, ...] = (
                f"Delete the TXT record _mta-sts.{live.domain}.",
                f"Then stop serving https://mta-sts.{live.domain}/.well-known/mta-sts.txt.",
                "Keep the TLS-RPT record if you still want reports.",
            )
        else:
            steps = (
                f"Keep serving mode none until {_when(until)} "
                f"({_days(served_max_age)} after mode none began"
                + ("" if since else "; start unknown, counted from now")
                + ").",
                f"Then delete _mta-sts.{live.domain}, then the policy host.",
            )
        return Plan(
            "Finish removing MTA-STS",
            "Senders forget the policy once every cached copy has expired.",
            steps,
            wait_until=until,
        )
    pub = _gen(
        used,
        live.domain,
        mx_hosts=hosts,
        mode="none",
        rua=live.tlsrpt_rua,
        now=now,
        previous_id=live.sts_id or "",
        patterns=(),
    )
    until = now + timedelta(seconds=served_max_age)
    return Plan(
        "Remove MTA-STS safely",
        "Never delete first: senders that cached the policy would keep enforcing a stale MX list.",
        (
            *_steps(pub, live),
            f"Keep serving mode none until {_when(until)}: the longest max_age ever served is "
            f"{_days(served_max_age)}.",
            f"Then delete _mta-sts.{live.domain}, then the policy host.",
        ),
        (pub,),
        wait_until=until,
    )


def _migration(
    used: set[str],
    live: LiveState,
    hosts: Sequence[str],
    planned_mx: tuple[str, ...] | None,
    now: datetime,
    findings: list[Finding],
) -> Plan | None:
    """Change the MX set without a live MX ever outside the policy (RFC 8461 §4.1, §8.1)."""
    if live.mode not in ("testing", "enforce"):
        return None
    patterns = [p.lower() for p in live.mx_patterns]
    uncovered = [h for h in hosts if not any(mx_matches(p, h) for p in patterns)]
    unused = [p for p in patterns if not any(mx_matches(p, h) for h in hosts)]
    if uncovered or unused:
        findings.append(
            finding(
                "rollout.mx-drift",
                "Live MX hosts outside the policy: "
                + (", ".join(uncovered) or "none")
                + "; patterns matching no live host: "
                + (", ".join(unused) or "none")
                + ".",
                "Follow the MX migration runbook.",
            )
        )
    # A planned host comes from a person (``--new-mx``): strict, ``InvalidName`` when no name.
    target = sorted({host_name(h) for h in planned_mx if h.strip()}) if planned_mx else None
    if target is None and not uncovered and not unused:
        return None
    old_age = live.max_age or DAY
    rua = live.tlsrpt_rua
    mode = live.mode or "testing"
    if target is None:
        return _realign(used, live, hosts, patterns, uncovered, unused, mode, now)
    both = _gen(
        used,
        live.domain,
        mx_hosts=sorted(set(hosts) | set(target)),
        mode=mode,
        rua=rua,
        now=now,
        previous_id=live.sts_id or "",
        patterns=tuple(sorted(set(patterns) | set(keep_patterns(patterns, target)))),
    )
    final = _gen(
        used,
        live.domain,
        mx_hosts=target,
        mode=mode,
        rua=rua,
        now=now,
        previous_id=both.policy_id,
        patterns=keep_patterns(patterns, target),
    )
    wait = now + timedelta(seconds=old_age)
    return Plan(
        "MX migration",
        f"From {', '.join(hosts) or 'no hosts'} to {', '.join(target)} without a live MX ever "
        "outside the policy.",
        (
            "1. Add the new hosts to the policy (old and new together) and bump the id:",
            *_steps(both, live),
            f"2. Check every new host with stspilot check: STARTTLS and a valid certificate "
            f"for its name ({', '.join(target)}).",
            f"3. Wait until {_when(wait)} (the current max_age, {_days(old_age)}), so no sender "
            "still holds a policy without the new hosts.",
            "4. Switch the MX records to the new hosts.",
            "5. Wait for the old MX records' TTL and until reports stop naming the old hosts.",
            "6. Remove the old hosts from the policy and bump the id again:",
            *_steps(final, live),
        ),
        (both, final),
        wait_until=wait,
    )


def _realign(
    used: set[str],
    live: LiveState,
    hosts: Sequence[str],
    patterns: Sequence[str],
    uncovered: Sequence[str],
    unused: Sequence[str],
    mode: str,
    when: datetime,
) -> Plan:
    """The MX set already changed: cover the live hosts now, retire stale patterns after."""
    rua, now_id = live.tlsrpt_rua, live.sts_id or ""
    steps: list[str] = []
    pubs: list[Publication] = []
    if uncovered:
        cover = _gen(
            used,
            live.domain,
            mx_hosts=hosts,
            mode=mode,
            rua=rua,
            now=when,
            previous_id=now_id,
            patterns=tuple(sorted(set(patterns) | set(uncovered))),
        )
        steps += [
            "Cover the live hosts first (the old patterns stay for now):",
            *_steps(cover, live),
        ]
        pubs.append(cover)
        now_id = cover.policy_id
    if unused and hosts:  # with no MX left there is nothing to narrow the policy to
        tidy = _gen(
            used,
            live.domain,
            mx_hosts=hosts,
            mode=mode,
            rua=rua,
            now=when,
            previous_id=now_id,
            patterns=keep_patterns(patterns, hosts),
        )
        steps += [
            f"Once the old MX records' TTL has passed and no report names them, drop the stale "
            f"patterns {', '.join(unused)}:",
            *_steps(tidy, live),
        ]
        pubs.append(tidy)
    return Plan(
        "Bring the policy in line with the MX set",
        "Under enforce, an MX outside the policy refuses mail: cover it first.",
        tuple(steps),
        tuple(pubs),
    )
