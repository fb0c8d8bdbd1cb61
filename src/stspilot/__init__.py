"""stspilot: MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) from first record to ``mode: enforce``.

The public library API is re-exported here as the modules land; see README for a snippet.
"""

from stspilot.errors import (
    ConfigError,
    LimitExceeded,
    ParseError,
    PolicyError,
    ProbeError,
    RecordError,
    ReportError,
    StoreError,
    StspilotError,
)
from stspilot.findings import CATALOGUE, Finding, Severity

__all__ = [
    "CATALOGUE",
    "ConfigError",
    "Finding",
    "LimitExceeded",
    "ParseError",
    "PolicyError",
    "ProbeError",
    "RecordError",
    "ReportError",
    "Severity",
    "StoreError",
    "StspilotError",
]
__version__ = "0.1.0"
