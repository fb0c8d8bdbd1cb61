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
    ├── PublishError            a DNS provider or policy destination refused, or a change not seen
    └── ConfigError             settings, options or environment are wrong (also ValueError)
        └── InvalidName         a text given as a domain or host name is not one (sts/names.py)

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


class PublishError(StspilotError):
    """A publishing step failed: the provider's answer, the step, and how to resume.

    ``step`` names the step (``dns _mta-sts.example.com TXT``); ``answer`` is what the provider
    or server said (``REFUSED``, ``TSIG BADSIG``, ``HTTP 429``), kept for the journal.
    """

    def __init__(self, message: str, *, step: str = "", answer: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.answer = answer


class ConfigError(StspilotError, ValueError):
    """Settings, command-line options or environment variables are invalid."""


class InvalidName(ConfigError):
    """A text given as a domain or host name is not one (``stspilot.sts.names``).

    ``str()`` is one line for people: the text as given and why it is not a name.
    """

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"not a domain name: {text!r} ({reason})")
        self.text = text
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidName], tuple[str, str]]:
        return (type(self), (self.text, self.reason))
