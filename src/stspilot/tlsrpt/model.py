"""The TLS-RPT report model (RFC 8460 §4.4): frozen msgspec Structs.

Pure core: no I/O, no clock. ``stspilot.tlsrpt.reports.parse_report`` makes these from JSON
and re-exports them; ``stspilot.store.reads`` makes them from rows.

Structs rather than frozen dataclasses: the parser builds ~5 of them a report, and a Struct is
built by one call in C (``PolicyResult(a, b, ...)``) where a frozen dataclass pays an
``object.__setattr__`` per field (the parser used to fill plain twins and swap their class).
``gc=False``: a report is a tree of immutable values, it cannot hold a cycle, so the collector
has nothing to track (a Struct with ``gc=False`` is also allocated and freed faster). They
compare, hash and pickle by value as the dataclasses did; ``msgspec.structs.replace`` and
``msgspec.structs.fields`` take the place of the ``dataclasses`` functions, and ``as_dict`` gives
what ``dataclasses.asdict`` gave (for encoders that know dicts, not Structs).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args

import msgspec

from stspilot.sts.names import fold_name

__all__ = [
    "RESULT_TYPES",
    "Count",
    "Deviation",
    "FailureDetail",
    "PolicyResult",
    "PolicyType",
    "ResultType",
    "Text",
    "TlsReport",
    "as_dict",
    "fast_pickle",
]

_T = TypeVar("_T")


def fast_pickle(cls: type[_T]) -> type[_T]:
    """Pickle a frozen slots dataclass as (class, field values): the stdlib's state-dict
    round trip for such classes cost ~90 µs a report, more than parsing it, which is what made
    handing parsed reports back from a worker process slower than parsing them in place."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values: Callable[[Any], Any] = operator.attrgetter(*names)
    if len(names) == 1:
        one = values
        values = lambda obj: (one(obj),)  # noqa: E731

    def __reduce__(self: Any) -> tuple[Any, ...]:
        return (cls, values(self))

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls


class PolicyType(StrEnum):
    """RFC 8460 §4.4: "presently the only three valid choices"."""

    STS = "sts"
    TLSA = "tlsa"
    NO_POLICY_FOUND = "no-policy-found"


# IANA "STARTTLS Validation Result Types" (RFC 8460 §4.3, §6.6); unknown ones are kept and flagged.
ResultType = Literal[
    "starttls-not-supported",
    "certificate-host-mismatch",
    "certificate-expired",
    "certificate-not-trusted",
    "validation-failure",
    "tlsa-invalid",
    "dnssec-invalid",
    "dane-required",
    "sts-policy-fetch-error",
    "sts-policy-invalid",
    "sts-webpki-invalid",
]
RESULT_TYPES: frozenset[str] = frozenset(get_args(ResultType))
# I-JSON (RFC 7493 §2.2, required by RFC 8460 §4): numbers must fit an IEEE double exactly, so a
# count is a non-negative integer no larger than 2**53 - 1. Strings, floats, booleans, NaN and
# 10**400 are all refused by the typed decoder.
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]
Text = Annotated[str, msgspec.Meta(min_length=1)]  # a string the decoder refuses when empty


class Deviation(msgspec.Struct, frozen=True, gc=False):
    """A way the report departs from RFC 8460 that we tolerate, e.g. ``date.no-offset``."""

    code: str
    path: str  # JSON-pointer-like location, e.g. "/policies/0/policy/mx-host"
    message: str


class FailureDetail(
    msgspec.Struct, frozen=True, gc=False, rename="kebab", forbid_unknown_fields=True
):
    """One element of ``failure-details``. Also the checked schema's failure detail
    (``schema.CHECKED_DECODER`` decodes report JSON straight into it, one object instead of a
    wire struct and then the model): the annotations, the kebab-case member names and the
    refusal of unknown members act when decoding only, and refuse what the model does not
    store as sent (an unregistered result-type, an empty optional string,
    ``additional-info-uri``), which then takes the wire schema's path. Constructing one checks
    nothing."""

    if TYPE_CHECKING:
        result_type: str  # an unregistered type read by the wire schema's path is kept
    else:
        result_type: ResultType
    failed_session_count: Count
    sending_mta_ip: str | None = None
    receiving_mx_hostname: Text | None = None
    receiving_mx_helo: Text | None = None
    receiving_ip: str | None = None
    additional_information: Text | None = None
    failure_reason_code: Text | None = None


class PolicyResult(msgspec.Struct, frozen=True, gc=False):
    """One element of ``policies``: the policy applied, its summary and failure details."""

    policy_type: str  # a PolicyType value, or an unknown string kept with a deviation
    policy_domain: str  # "" when the reporter left it out (sys4 tlsrpt-reporter)
    policy_string: tuple[str, ...] = ()
    mx_host: tuple[str, ...] = ()
    successful_sessions: int = 0
    failed_sessions: int = 0
    failure_details: tuple[FailureDetail, ...] = ()

    @property
    def total_sessions(self) -> int:
        return self.successful_sessions + self.failed_sessions


class TlsReport(msgspec.Struct, frozen=True, gc=False):
    organization_name: str
    report_id: str
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC
    contact_info: str | None = None
    policies: tuple[PolicyResult, ...] = ()
    deviations: tuple[Deviation, ...] = ()

    @property
    def policy_domains(self) -> tuple[str, ...]:
        """Distinct policy domains in report order (``""`` for a policy that named none)."""
        return tuple(dict.fromkeys(p.policy_domain for p in self.policies))

    @property
    def successful_sessions(self) -> int:
        return sum(p.successful_sessions for p in self.policies)

    @property
    def failed_sessions(self) -> int:
        return sum(p.failed_sessions for p in self.policies)

    @property
    def deviation_codes(self) -> frozenset[str]:
        return frozenset(d.code for d in self.deviations)

    @property
    def contact_domain(self) -> str | None:
        """The domain part of ``contact-info`` (RFC 8460 §5.3 compares it with the Submitter)."""
        if not self.contact_info or "@" not in self.contact_info:
            return None
        return fold_name(self.contact_info.rpartition("@")[2].strip().strip(">")) or None


def as_dict(value: Any) -> Any:
    """A model object as ``dataclasses.asdict`` gave it when the models were dataclasses:
    a dict of field names, nested models as dicts, tuples kept as tuples, other values as
    they are (what ``fastapi.encoders.jsonable_encoder`` and ``json`` then encode)."""
    if isinstance(value, msgspec.Struct):
        return {name: as_dict(getattr(value, name)) for name in value.__struct_fields__}
    if value.__class__ is tuple:
        return tuple(as_dict(v) for v in value)
    return value
