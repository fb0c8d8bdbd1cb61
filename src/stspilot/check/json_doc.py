"""The stable JSON document of check results (``stspilot check --json``, ``--jsonl``, the
stored form of a check): ``result_to_json`` per domain, ``CheckJsonDocument`` for a whole run
written one domain at a time, and ``CheckTally``, all a long run keeps of its results.

The schema (``stspilot.check/2``) is documented in ``docs/check-json.md``; additions are
allowed within a version, renames and removals need a new one. Version 2 adds DANE (``dane``
per MX host, ``mx_dnssec``) and keeps every field of version 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stspilot.check.coverage import MxVerdict
from stspilot.check.dane_verdict import DaneVerdict
from stspilot.check.evaluate import CheckResult
from stspilot.findings import Severity, finding_to_json

SCHEMA = "stspilot.check/2"


def _dane_json(dane: DaneVerdict | None) -> dict[str, Any] | None:
    if dane is None:
        return None
    return {
        "state": str(dane.state),
        "blocks_mail": dane.state.blocks_mail,
        "tlsa_name": dane.tlsa_name,
        "dnssec": str(dane.dnssec),
        "reason": dane.reason,
        "records": list(dane.records),
        "matched": list(dane.matched),
        "rrsig_expires": dane.rrsig_expires.isoformat() if dane.rrsig_expires else None,
        "address_dnssec": dane.address_dnssec or None,  # A/AAAA of the host, RFC 7672 §2.2.2
        "ip": dane.ip or None,  # the address whose chain decided "state"
        "addresses": [
            {"ip": a.ip, "state": str(a.state), "reason": a.reason, "matched": list(a.matched)}
            for a in dane.addresses
        ],
    }


def _mx_json(mx: MxVerdict, dane: DaneVerdict | None = None) -> dict[str, Any]:
    return {
        "host": mx.host,
        "preference": mx.preference,
        "covered_by": mx.covered_by,
        "probe_outcome": mx.probe_outcome,
        "tls_ok": mx.tls_ok,
        "tls_version": mx.tls_version or None,
        "cert_not_after": mx.cert_not_after.isoformat() if mx.cert_not_after else None,
        "days_to_expiry": mx.days_to_expiry,
        "findings": list(mx.finding_codes),
        "dane": _dane_json(dane),  # null when DANE was not checked for the host
        "addresses": [
            {
                "ip": a.ip,
                "probe_outcome": a.probe_outcome,
                "tls_ok": a.tls_ok,
                "tls_version": a.tls_version or None,
                "cert_not_after": a.cert_not_after.isoformat() if a.cert_not_after else None,
                "days_to_expiry": a.days_to_expiry,
                "error": a.error or None,
            }
            for a in mx.addresses
        ],
    }


def result_to_json(result: CheckResult) -> dict[str, Any]:
    """One domain's entry in the ``domains`` list of the ``stspilot.check/2`` document."""
    policy = result.policy
    record = result.sts_record
    tlsrpt = result.tlsrpt
    worst = result.worst
    dane = {verdict.host: verdict for verdict in result.dane}
    return {
        "domain": result.domain,
        "observed_at": result.observed_at.isoformat(),
        "stage": str(result.stage),
        "worst": worst.label if worst else None,
        "deadline_hit": result.deadline_hit,
        "effective": {
            "usable": result.effective.usable,
            "mode": str(result.effective.mode) if result.effective.mode else None,
            "reason_code": result.effective.reason_code,
            "reason": result.effective.reason,
        },
        "sts_record": None
        if record is None
        else {"id": record.id, "extensions": dict(record.extensions)},
        "policy": None
        if policy is None
        else {
            "version": policy.version,
            "mode": str(policy.mode),
            "max_age": policy.max_age,
            "mx": list(policy.mx),
            "extensions": dict(policy.extensions),
        },
        "policy_source": result.policy_source,
        "tlsrpt": {
            "state": str(tlsrpt.state),
            "rua": list(tlsrpt.rua),
            "extensions": dict(tlsrpt.record.extensions) if tlsrpt.record else {},
        },
        "mx": [_mx_json(mx, dane.get(mx.host)) for mx in result.mx],
        "mx_dnssec": None
        if result.mx_dnssec is None
        else {"status": str(result.mx_dnssec.status), "reason": result.mx_dnssec.reason},
        "findings": [finding_to_json(f) for f in result.findings],
    }


@dataclass(slots=True)
class CheckTally:
    """Counts of checked domains by worst finding: all a long run keeps of its results."""

    domains: int = 0
    errors: int = 0
    warnings: int = 0
    clean: int = 0  # no finding above info

    def add(self, result: CheckResult) -> None:
        self.domains += 1
        if result.worst is Severity.ERROR:
            self.errors += 1
        elif result.worst is Severity.WARNING:
            self.warnings += 1
        else:
            self.clean += 1

    @property
    def worst(self) -> Severity | None:
        """The worst severity above info seen (None: every domain clean)."""
        if self.errors:
            return Severity.ERROR
        return Severity.WARNING if self.warnings else None

    def to_json(self) -> dict[str, int]:
        return {
            "domains": self.domains,
            "errors": self.errors,
            "warnings": self.warnings,
            "clean": self.clean,
        }


def check_results_to_json(results: Iterable[CheckResult]) -> dict[str, Any]:
    """The whole ``stspilot.check/2`` document for one or many domains."""
    tally = CheckTally()
    domains = []
    for result in results:
        tally.add(result)
        domains.append(result_to_json(result))
    return {"schema": SCHEMA, "domains": domains, "summary": tally.to_json()}


class CheckJsonDocument:
    """The ``stspilot.check/2`` document as text pieces, one domain at a time.

    ``start()``, then ``entry(result)`` per domain, then ``finish()``: joined, exactly
    ``json.dumps(check_results_to_json(results), indent=2)``. Only the tally is kept, so a
    document of a million domains is written in the memory of one. The summary comes after
    ``domains`` because it is known only at the end.
    """

    def __init__(self) -> None:
        self.tally = CheckTally()

    def start(self) -> str:
        return '{\n  "schema": ' + json.dumps(SCHEMA) + ',\n  "domains": ['

    def entry(self, result: CheckResult) -> str:
        text = json.dumps(result_to_json(result), indent=2, ensure_ascii=False)
        lead = ",\n    " if self.tally.domains else "\n    "
        self.tally.add(result)
        return lead + text.replace("\n", "\n    ")

    def finish(self) -> str:
        summary = json.dumps(self.tally.to_json(), indent=2).replace("\n", "\n  ")
        close = "\n  ]" if self.tally.domains else "]"
        return close + ',\n  "summary": ' + summary + "\n}\n"


def dumps_check_json(results: Iterable[CheckResult]) -> str:
    document = CheckJsonDocument()
    return document.start() + "".join(map(document.entry, results)) + document.finish()


def format_result_jsonl(result: CheckResult) -> str:
    """One domain as one line of JSON (``--jsonl``): the document's ``domains`` entry."""
    return json.dumps(result_to_json(result), ensure_ascii=False, separators=(",", ":")) + "\n"
