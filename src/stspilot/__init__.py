"""stspilot: MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) from first record to ``mode: enforce``.

The public library API, listed in ``docs/api.md`` (a test keeps ``__all__``, that page and the
README's snippet in agreement). Names are imported on first use, so ``import stspilot`` (and the
CLI's start-up) stays cheap::

    import asyncio, stspilot
    result = asyncio.run(stspilot.check_domain("example.com"))
    print(result.stage, [f.code for f in result.findings])
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "StspilotError": "errors",
    "ParseError": "errors",
    "RecordError": "errors",
    "PolicyError": "errors",
    "ReportError": "errors",
    "LimitExceeded": "errors",
    "ProbeError": "errors",
    "ProbeTimeout": "errors",
    "StoreError": "errors",
    "StoreRefused": "errors",
    "ConfigError": "errors",
    "InvalidName": "errors",
    "PublishError": "errors",
    # findings
    "CATALOGUE": "findings",
    "Finding": "findings",
    "Severity": "findings",
    # pure core
    "StsRecord": "sts.records",
    "TlsRptRecord": "sts.records",
    "parse_sts_record": "sts.records",
    "parse_tlsrpt_record": "sts.records",
    "select_sts_record": "sts.records",
    "select_tlsrpt_record": "sts.records",
    "Mode": "sts.policy",
    "Policy": "sts.policy",
    "parse_policy": "sts.policy",
    "format_policy": "sts.policy",
    "mx_matches": "sts.policy",
    "TlsReport": "tlsrpt.reports",
    "parse_report": "tlsrpt.reports",
    "CheckResult": "check.evaluate",
    "evaluate": "check.evaluate",
    "assess_rollout": "rollout.assess",
    "RolloutAssessment": "rollout.assess",
    "generate": "rollout.generate",
    # network and persistence
    "CheckOptions": "check.run",
    "check_domain": "check.run",
    "check_domains": "check.run",
    "check_domains_iter": "check.run",
    "Store": "store",
}

__all__ = [
    "CATALOGUE",
    "CheckOptions",
    "CheckResult",
    "ConfigError",
    "Finding",
    "InvalidName",
    "LimitExceeded",
    "Mode",
    "ParseError",
    "Policy",
    "PolicyError",
    "ProbeError",
    "ProbeTimeout",
    "PublishError",
    "RecordError",
    "ReportError",
    "RolloutAssessment",
    "Severity",
    "Store",
    "StoreError",
    "StoreRefused",
    "StsRecord",
    "StspilotError",
    "TlsReport",
    "TlsRptRecord",
    "__version__",
    "assess_rollout",
    "check_domain",
    "check_domains",
    "check_domains_iter",
    "evaluate",
    "format_policy",
    "generate",
    "mx_matches",
    "parse_policy",
    "parse_report",
    "parse_sts_record",
    "parse_tlsrpt_record",
    "select_sts_record",
    "select_tlsrpt_record",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stspilot' has no attribute {name!r}")
    value = getattr(import_module(f"stspilot.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # let type checkers see the real names
    from stspilot.check.evaluate import CheckResult, evaluate
    from stspilot.check.run import CheckOptions, check_domain, check_domains, check_domains_iter
    from stspilot.errors import (
        ConfigError,
        InvalidName,
        LimitExceeded,
        ParseError,
        PolicyError,
        ProbeError,
        ProbeTimeout,
        PublishError,
        RecordError,
        ReportError,
        StoreError,
        StoreRefused,
        StspilotError,
    )
    from stspilot.findings import CATALOGUE, Finding, Severity
    from stspilot.rollout.assess import RolloutAssessment, assess_rollout
    from stspilot.rollout.generate import generate
    from stspilot.store import Store
    from stspilot.sts.policy import Mode, Policy, format_policy, mx_matches, parse_policy
    from stspilot.sts.records import (
        StsRecord,
        TlsRptRecord,
        parse_sts_record,
        parse_tlsrpt_record,
        select_sts_record,
        select_tlsrpt_record,
    )
    from stspilot.tlsrpt.reports import TlsReport, parse_report
