"""The error tree of stspilot: one root, a few branches sorted by what the caller can do.

    StspilotError
    ├── ParseError              bad text or bytes; carries a stable ``code`` (TXT, policy, report)
    │   ├── RecordError         an ``_mta-sts`` or ``_smtp._tls`` TXT record
    │   ├── PolicyError         an MTA-STS policy file
    │   └── ReportError         a TLS-RPT report or the mail/file that carries it
    │       └── LimitExceeded   an input broke a size, depth or count limit (also ValueError)
    ├── ProbeError              the network said no (DNS, HTTPS, SMTP); usually becomes a finding
    │   └── ProbeTimeout        ... in time (also TimeoutError)
    ├── StoreError              the database could not do what was asked
    │   ├── StoreRefused        ... because of the values given (retrying them cannot help)
    │   └── DuplicateReport     the report is already stored (re-ingesting is a no-op)
    └── ConfigError             settings, options or environment are wrong (also ValueError)

Expected failures never surface as tracebacks: the CLI prints ``str(error)`` with a fixed
exit code, the web app turns them into JSON problems.
"""

from __future__ import annotations


class StspilotError(Exception):
    """Root of every error stspilot raises on purpose."""


class ParseError(StspilotError, ValueError):
    """Input text or bytes are not what the RFC (or a tolerated real-world quirk) allows.

    ``code`` is stable and machine-readable (``policy.mode.invalid``); ``str()`` is for people.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[ParseError], tuple[str, str]]:
        return (type(self), (self.code, self.message))


class RecordError(ParseError):
    """A ``_mta-sts`` or ``_smtp._tls`` TXT record cannot be used."""


class PolicyError(ParseError):
    """An MTA-STS policy file cannot be used."""


class ReportError(ParseError):
    """A TLS-RPT report, or the file or mail carrying it, cannot be read."""


class LimitExceeded(ReportError):
    """An input broke a configured limit (size, decompressed size, depth, count)."""


class ProbeError(StspilotError):
    """A network probe failed in a way the caller may want to handle itself."""


class ProbeTimeout(ProbeError, TimeoutError):
    """A network probe ran out of time."""


class StoreError(StspilotError):
    """The store could not complete an operation."""


class StoreRefused(StoreError):
    """The database refused the values given (out of range, not storable text, a constraint):
    the same write will fail every time, so ingest keeps the unit in quarantine instead of
    asking its source to retry for ever."""


class DuplicateReport(StoreError):
    """The report is already stored; ingesting it again changes nothing."""


class ConfigError(StspilotError, ValueError):
    """Settings, command-line options or environment variables are invalid."""
