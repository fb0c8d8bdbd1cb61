"""A parsed report as the rows the store writes, built without a database.

Building rows (clipping hostile values, encoding JSON columns, converting timestamps to what
each backend stores) cost as much CPU as SQLite's inserts. It is pure, so bulk ingest builds
rows in its decode worker processes and the writing process only inserts them
(``store/batch.py``). The values here are exactly what the column types store, so SQLAlchemy
Core reads them back unchanged (``store/reads.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import msgspec

from stspilot.errors import ReportError
from stspilot.store.models import NewReport
from stspilot.sts.names import fold_name
from stspilot.tlsrpt.reports import Deviation, TlsReport

# Identity columns must fit their indexed columns (PostgreSQL btree entries are capped too).
MAX_IDENTITY = 512
# Free-text columns that are indexed are clipped: a hostile 10 kB "hostname" must not fail a batch.
_CLIP = {"mx": 255, "ip": 64, "domain": 255, "type": 128, "origin": 1024}

# ``stored_at`` is last: the writer appends it (it is the commit's time, not the build's).
REPORT_COLUMNS = (
    "organization_name", "report_id", "start_at", "end_at", "day", "contact_info",
    "raw_sha256", "origin", "received_at", "envelope", "deviations",
    "policy_count", "successful_sessions", "failed_sessions", "authenticity", "stored_at",
)  # fmt: skip
# ``report_pk`` is first: the writer prepends it once the report row has its id.
POLICY_COLUMNS = (
    "report_pk", "idx", "policy_type", "policy_domain", "day", "organization_name",
    "policy_string", "mx_host", "successful_sessions", "failed_sessions", "authenticity",
)  # fmt: skip
DETAIL_COLUMNS = (
    "report_pk", "policy_idx", "idx", "policy_type", "policy_domain", "day",
    "organization_name", "result_type", "failed_session_count", "sending_mta_ip",
    "receiving_mx_hostname", "receiving_mx_helo", "receiving_ip", "additional_information",
    "failure_reason_code", "authenticity",
)  # fmt: skip

# How a stored report reached us, from its origin and envelope (issue 15): DKIM-verified mail;
# a file an operator imported; an HTTPS POST (unauthenticated by nature, RFC 8460 §5.4, §7);
# mail without a passing DKIM signature. Only the first two are authenticated. The one home of
# this rule: ``authenticity`` is computed here as the rows are built and stored on the report
# and on each of its policy and failure rows, so every reader (the gate and what-if through
# ``store.dashboard.report_windows``, the reports page and the API through
# ``store.reads.list_reports``) reads the same stored value; migration 0009 backfilled rows
# stored before with the same rule in SQL (tests/test_report_authenticity.py compares them).
AUTHENTICITY = ("dkim", "operator", "https", "mail")
AUTHENTICATED = frozenset({"dkim", "operator"})
_MAILED = ("smtp:", "imap:")  # origins of the mail intakes (ingest/smtp_receiver, ingest/imap)


def authenticity(origin: str, dkim_result: object) -> str:
    """The authenticity class of a report that came from ``origin`` with the DKIM result of its
    mail (``None``: not mailed, or not verified). The scheme prefix of the origin is compared
    without regard to case: a file named "HTTPS:x.json" is counted as unauthenticated, never
    the other way round."""
    head = origin[:6].lower()
    if head.startswith("https:"):
        return "https"
    if dkim_result == "pass":
        return "dkim"
    return "mail" if head.startswith(_MAILED) else "operator"


def envelope_dkim(envelope: object) -> object:
    """The DKIM result of a report's envelope (``ingest.mail.Envelope`` or a mapping whose
    ``dkim`` member has a ``result``, as stored); None when there is none."""
    if envelope is None:
        return None
    if isinstance(envelope, Mapping):
        verdict = envelope.get("dkim")
        return verdict.get("result") if isinstance(verdict, Mapping) else None
    return getattr(getattr(envelope, "dkim", None), "result", None)


Row = tuple[Any, ...]
_Head = tuple[str | None, str | None, str, str]  # policy type, domain, policy-string, mx-host
_Cells = tuple[str | None, str | None, str | None, str | None, str | None]


def _json_default(value: object) -> Any:
    """Envelope and result values that JSON does not know: dates, tuples of dataclasses, bytes."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def no_nul(value: str) -> str:
    """``value`` with NUL replaced by U+FFFD. PostgreSQL text and jsonb cannot hold NUL; JSON
    allows "\u0000" and hostile reports send it (RFC 8460 §7). Every string either engine is
    given goes through here (rows as they are built, every other statement's parameters in
    ``url._no_nul_parameters``), so both store the same text and find it by the same value."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def json_dumps(value: object) -> str:
    text = json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)
    # PostgreSQL jsonb refuses the NUL escape; hostile input carries it (RFC 8460 §7).
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


class ReportRows(NamedTuple):
    """One report's rows, ready to insert; small and flat, so it pickles cheaply."""

    key: tuple[str, str]  # (organization-name, report-id) as stored: the dedup identity
    sha256: str  # of ``raw``
    raw: bytes  # the unit (file, mail) the report came from
    report: Row  # REPORT_COLUMNS without stored_at
    policies: tuple[Row, ...]  # POLICY_COLUMNS without report_pk
    details: tuple[Row, ...]  # DETAIL_COLUMNS without report_pk


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def check_identity(report: TlsReport) -> None:
    """Raise ``ReportError("report.identity.too-long")`` for an identity the store cannot index."""
    if len(report.organization_name) > MAX_IDENTITY or len(report.report_id) > MAX_IDENTITY:
        raise ReportError(
            "report.identity.too-long",
            f"organization-name or report-id longer than {MAX_IDENTITY} characters",
        )


def clip(value: str | None, kind: str) -> str | None:
    return None if value is None else no_nul(value[: _CLIP[kind]])


def report_key(report: TlsReport) -> tuple[str, str]:
    return (no_nul(report.organization_name), no_nul(report.report_id))


class RowBuilder:
    """Builds ``ReportRows`` for one backend ("sqlite" or "postgresql").

    Values repeat across reports (the same day, policy text, MX list, hosts and IPs), so each
    distinct one is converted once; the memos are bounded (cleared when full).
    """

    MEMO_MAX = 50_000

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        self._ts: dict[datetime, object] = {}
        self._day: dict[datetime, object] = {}
        self._json: dict[tuple[str, ...], str] = {}
        self._heads: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], _Head] = {}
        self._cells: dict[tuple[str, str | None, str | None, str | None, str | None], _Cells] = {}

    def build(self, item: NewReport, sha256: str | None = None) -> ReportRows:
        """The rows of ``item``; raises ``ReportError`` for an identity too long to store."""
        r = item.report
        check_identity(r)
        if len(self._cells) > self.MEMO_MAX or len(self._heads) > self.MEMO_MAX:
            self._trim()
        sha = sha256 if sha256 is not None else sha256_hex(item.raw)
        key = report_key(r)
        deviations = (*r.deviations, *item.deviations)
        day = self.day(r.start)
        origin = clip(item.origin, "origin") or ""
        auth = authenticity(origin, envelope_dkim(item.envelope))
        report = (
            *key,
            self.ts(r.start),
            self.ts(r.end),
            day,
            clip(r.contact_info, "origin"),
            sha,
            origin,
            self.ts(item.received_at),
            None if item.envelope is None else envelope_json(item.envelope),
            json_text(_JSON.encode(_deviation_json(deviations))) if deviations else "[]",
            len(r.policies),
            sum(p.successful_sessions for p in r.policies),
            sum(p.failed_sessions for p in r.policies),
            auth,
        )
        policies, details = self._children(r, day, key[0], auth)
        return ReportRows(key, sha, item.raw, report, policies, details)

    def ts(self, value: datetime) -> object:
        out = self._ts.get(value)
        if out is None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
            utc = value.astimezone(UTC)
            # SQLAlchemy's SQLite DATETIME text format, naive UTC (see schema.UtcDateTime).
            out = utc if self.pg else utc.replace(tzinfo=None).isoformat(" ", "microseconds")
            if len(self._ts) > self.MEMO_MAX:
                self._ts.clear()
            self._ts[value] = out
        return out

    def day(self, start: datetime) -> object:
        """The UTC day a report starting at ``start`` covers (RFC 8460 §4.1)."""
        out = self._day.get(start)
        if out is None:
            day = start.astimezone(UTC).date()
            if len(self._day) > self.MEMO_MAX:
                self._day.clear()
            out = self._day[start] = day if self.pg else day.isoformat()
        return out

    def _strings(self, value: tuple[str, ...]) -> str:
        """A tuple of strings as a JSON array (policy lines, MX patterns), cached."""
        out = self._json.get(value)
        if out is None:
            out = self._json[value] = json_text(_JSON.encode(value))
        return out

    def _trim(self) -> None:
        self._cells.clear()
        self._heads.clear()
        self._json.clear()

    def _children(
        self, r: TlsReport, day: object, org: str, auth: str
    ) -> tuple[tuple[Row, ...], tuple[Row, ...]]:
        policies: list[Row] = []
        details: list[Row] = []
        heads = self._heads
        cells = self._cells
        for p_idx, p in enumerate(r.policies):
            # A domain's policy recurs in every report about it: normalise it once.
            hkey = (p.policy_type, p.policy_domain, p.policy_string, p.mx_host)
            head = heads.get(hkey)
            if head is None:
                head = heads[hkey] = (
                    clip(p.policy_type, "type"),
                    clip(fold_name(p.policy_domain), "domain"),
                    self._strings(p.policy_string),
                    self._strings(p.mx_host),
                )
            ptype, domain, ps_json, mx_json = head
            policies.append(
                (
                    p_idx, ptype, domain, day, org, ps_json, mx_json,
                    p.successful_sessions, p.failed_sessions, auth,
                )
            )  # fmt: skip
            for d_idx, d in enumerate(p.failure_details):
                ckey = (
                    d.result_type,
                    d.sending_mta_ip,
                    d.receiving_mx_hostname,
                    d.receiving_mx_helo,
                    d.receiving_ip,
                )
                cell = cells.get(ckey)
                if cell is None:
                    cell = cells[ckey] = _detail_cells(*ckey)
                rtype, sending_ip, rmx, helo, receiving_ip = cell
                details.append(
                    (
                        p_idx, d_idx, ptype, domain, day, org, rtype,
                        d.failed_session_count, sending_ip, rmx, helo, receiving_ip,
                        _text(d.additional_information), _text(d.failure_reason_code), auth,
                    )
                )  # fmt: skip
        return tuple(policies), tuple(details)


def _detail_cells(
    result_type: str, sending_ip: str | None, rmx: str | None, helo: str | None, ip: str | None
) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """A failure detail's indexed values, clipped; the receiving MX name compares
    case-insensitively without the root dot (RFC 8461 §4.1), so it is stored that way."""
    return (
        clip(result_type, "type"),
        clip(sending_ip, "ip") if sending_ip else sending_ip,
        clip(fold_name(rmx), "mx") if rmx else rmx,
        clip(helo, "mx") if helo else helo,
        clip(ip, "ip") if ip else ip,
    )


def _text(value: str | None) -> str | None:
    return None if value is None else no_nul(value)


def json_text(encoded: bytes) -> str:
    text = encoded.decode()
    # PostgreSQL jsonb refuses the NUL escape (see no_nul).
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


def _deviation_json(deviations: Sequence[Deviation]) -> list[dict[str, str]]:
    return [{"code": d.code, "path": d.path, "message": d.message} for d in deviations]


_JSON = msgspec.json.Encoder()
# Envelope values the fast encoder takes as they are (floats and anything else go the slow way,
# whose rules for NaN, bytes and sets differ from msgspec's).
_PLAIN = frozenset({str, int, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def envelope_json(envelope: object) -> str:
    """The envelope as JSON text: the mail ``Envelope`` (flat strings, flags, string tuples and
    a date) goes through msgspec; anything else through ``url.json_dumps`` (asdict + json,
    ~20x slower, which was a third of the store's time per mailed report)."""
    omit: frozenset[str] = frozenset()
    if is_dataclass(envelope) and not isinstance(envelope, type):
        names = _FIELD_NAMES.get(type(envelope))
        if names is None:
            names = _FIELD_NAMES[type(envelope)] = tuple(f.name for f in fields(envelope))
        items: Any = [(n, getattr(envelope, n)) for n in names]
        # Optional members (the DKIM verdict) are left out while None: absent = not asked.
        omit = getattr(type(envelope), "JSON_OMIT_NONE", omit)
    elif isinstance(envelope, Mapping):
        items = envelope.items()
    else:
        raise TypeError(f"envelope must be a mapping or a dataclass, not {type(envelope).__name__}")
    out: dict[str, object] = {}
    for key, value in items:
        kind = type(value)
        if kind is datetime:
            value = value.isoformat()  # the format json_dumps writes
        elif kind is tuple or kind is list:
            if not all(type(v) is str for v in value):
                return json_dumps(_jsonable_envelope(envelope))
        elif kind not in _PLAIN or type(key) is not str:
            nested = _flat_member(value)
            if nested is None or type(key) is not str:
                return json_dumps(_jsonable_envelope(envelope))
            value = nested
        elif value is None and key in omit:
            continue
        out[key] = value
    return json_text(_JSON.encode(out))


def _flat_member(value: object) -> dict[str, object] | None:
    """A dataclass member of plain values (the DKIM verdict) as an object; else None."""
    if not is_dataclass(value) or isinstance(value, type):
        return None
    out = {f.name: getattr(value, f.name) for f in fields(value)}
    return out if all(type(v) in _PLAIN for v in out.values()) else None


def _jsonable_envelope(envelope: object) -> Mapping[str, Any] | None:
    if envelope is None:
        return None
    if is_dataclass(envelope) and not isinstance(envelope, type):
        omit: frozenset[str] = getattr(type(envelope), "JSON_OMIT_NONE", frozenset())
        return {k: v for k, v in asdict(envelope).items() if not (v is None and k in omit)}
    if isinstance(envelope, Mapping):
        return dict(envelope)
    raise TypeError(f"envelope must be a mapping or a dataclass, not {type(envelope).__name__}")
