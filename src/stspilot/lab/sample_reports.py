"""Realistic TLS-RPT reports for benchmarks, tests and demos, deterministic from a seed.

Shapes follow what Google, Microsoft, Mail.ru and Stalwart-style reporters really send
(checklist Part D), quirks included; the e-mails follow RFC 8460 §5.3. By default the
DKIM-Signature headers are shaped like the providers' (``d=``, ``h=``) but carry no valid
signature; with a lab key (``lab/dkim_keys.py``) they are real dkimpy signatures, to be
checked against the key records the lab DNS serves (the ``t=`` tag then makes the bytes
differ from run to run).
"""

from __future__ import annotations

import gzip
import json
import random
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stspilot.lab.dkim_keys import LabDkimKey

__all__ = [
    "PROVIDERS",
    "REPORTER_DOMAINS",
    "file_name",
    "generate_reports",
    "to_email",
    "to_gzip",
    "to_json_bytes",
    "write_corpus",
]

Report = dict[str, Any]

# Share of reports per provider shape, roughly what a mid-sized domain receives.
PROVIDERS: tuple[tuple[str, float], ...] = (
    ("google", 0.5),
    ("microsoft", 0.3),
    ("mailru", 0.1),
    ("stalwart", 0.1),
)
_ORG = {
    "google": ("Google Inc.", "smtp-tls-reporting@google.com", "google.com"),
    "microsoft": ("Microsoft Corporation", "tlsrpt-noreply@microsoft.com", "microsoft.com"),
    "mailru": ("Mail.ru", "tls_support@corp.mail.ru", "mail.ru"),
    "stalwart": ("mx.egressif.io", None, "mx.egressif.io"),
}
# The d= of each provider's report mail: what a lab key signs for and the lab DNS publishes.
REPORTER_DOMAINS = ("google.com", "microsoft.com", "corp.mail.ru", "mx.egressif.io")
# Most reports carry one or two policies; consolidated reporters send up to 20.
_POLICY_COUNTS = (1, 2, 3, 4, 6, 10, 20)
_POLICY_WEIGHTS = (45, 25, 10, 8, 6, 4, 2)
_FAILURES = (
    ("certificate-expired", None),
    ("certificate-host-mismatch", None),
    ("certificate-not-trusted", "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT"),
    ("starttls-not-supported", None),
    ("validation-failure", "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY"),
    ("sts-policy-fetch-error", "bad https response code: 404"),
    ("sts-webpki-invalid", None),
    ("tlsa-invalid", None),
)


def generate_reports(
    n: int,
    *,
    seed: int = 0,
    domains: Sequence[str] = ("example.com",),
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
) -> list[Report]:
    """``n`` report dicts (JSON-ready, wire member names), cycling over ``domains`` and days from
    ``start``; one report per (provider, domain, day)."""
    rng = random.Random(seed)
    providers = [p for p, _ in PROVIDERS]
    weights = [w for _, w in PROVIDERS]
    day0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
    out: list[Report] = []
    seen: set[str] = set()
    for i in range(n):
        domain = domains[i % len(domains)]
        day = day0 + timedelta(days=(i // len(domains)) // len(providers))
        provider = providers[(i // len(domains)) % len(providers)]
        if rng.random() < 0.3:  # not every provider every day: mix the order up a little
            provider = rng.choices(providers, weights)[0]
        report = _report(rng, provider, domain, day, i)
        if report["report-id"] in seen:  # two reports of one shape for one day: keep ids unique
            report["report-id"] += f"_{i}"
        seen.add(report["report-id"])
        out.append(report)
    return out


def to_json_bytes(report: Report) -> bytes:
    return json.dumps(report, separators=(",", ":")).encode()


def to_gzip(report: Report) -> bytes:
    return gzip.compress(to_json_bytes(report), compresslevel=6, mtime=0)


def file_name(report: Report, *, gzip: bool = True, unique: str | None = None) -> str:
    """RFC 8460 §5.1: ``sender!policy-domain!begin!end[!unique-id].json[.gz]``."""
    submitter = _submitter(report)
    domain = report["policies"][0]["policy"].get("policy-domain", "unknown")
    start = _ts(report["date-range"]["start-datetime"])
    end = _ts(report["date-range"]["end-datetime"])
    if unique is None:
        unique = "".join(c for c in report["report-id"] if c.isalnum())[-16:] or "1"
    return f"{submitter}!{domain}!{start}!{end}!{unique}.json" + (".gz" if gzip else "")


def to_email(report: Report, *, gzip: bool = True, dkim_key: LabDkimKey | None = None) -> bytes:
    """An RFC 8460 §5.3 report message: multipart/report; report-type=tlsrpt. Signed for real
    with ``dkim_key`` (its selector, the provider's d=), else with a look-alike signature."""
    submitter = _submitter(report)
    domain = report["policies"][0]["policy"].get("policy-domain", "unknown")
    rid = report["report-id"]
    google = submitter == "google.com"
    # A fixed boundary keeps the bytes a function of the report (the default is random).
    msg = MIMEMultipart(
        "report", boundary=f"tlsrpt-{zlib.crc32(rid.encode()):08x}", report_type="tlsrpt"
    )
    end = datetime.fromisoformat(report["date-range"]["end-datetime"].replace("Z", "+00:00"))
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    sent = end + timedelta(hours=3, minutes=len(rid) % 60)
    signed_headers = "from:to:subject:date:message-id"
    if google:  # Google signs the TLS-Report-* headers; Microsoft and Mail.ru do not (B8.5)
        signed_headers = "to:from:subject:message-id:tls-report-submitter:tls-report-domain"
    dkim_domain = "corp.mail.ru" if submitter == "mail.ru" else submitter
    if dkim_key is None:
        msg["DKIM-Signature"] = (
            f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={dkim_domain}; s=lab; h={signed_headers}; "
            "bh=AAAA; b=AAAA"
        )
    msg["From"] = f"noreply-smtp-tls-reporting@{dkim_domain}"
    msg["To"] = f"tlsrpt@{domain}"
    msg["Date"] = format_datetime(sent)
    if submitter == "microsoft.com":
        subject_id = rid  # Microsoft: no <...@...> (checklist D.3)
    elif "@" in rid:
        subject_id = f"<{rid}>"
    else:
        subject_id = f"<{rid.replace(':', '.').replace('-', '.').replace('_', '+')}@{submitter}>"
    msg["Subject"] = f"Report Domain: {domain} Submitter: {submitter} Report-ID: {subject_id}"
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = submitter
    msg["Message-ID"] = f"<{zlib.crc32(rid.encode()):08x}.{len(rid)}@{dkim_domain}>"
    msg.attach(
        MIMEText(f"This is an aggregate TLS report from {submitter} for {domain}.\n", "plain")
    )
    if gzip:
        part = MIMEApplication(to_gzip(report), "tlsrpt+gzip")
    else:
        part = MIMEApplication(to_json_bytes(report), "tlsrpt+json")
    part.add_header("Content-Disposition", "attachment", filename=file_name(report, gzip=gzip))
    msg.attach(part)
    if dkim_key is None:
        return msg.as_bytes()
    return sign_email(msg.as_bytes(), dkim_key, domain=dkim_domain, headers=signed_headers)


def sign_email(raw: bytes, key: LabDkimKey, *, domain: str, headers: str) -> bytes:
    """``raw`` with a real DKIM-Signature (relaxed/relaxed, rsa-sha256, no ``l=``: RFC 8460 §3)
    by ``key`` for ``domain``, signing the colon-separated ``headers``."""
    import dkim  # type: ignore[import-untyped]  # only the signing lab needs it

    signature = dkim.sign(
        raw,
        key.selector.encode(),
        domain.encode(),
        key.private_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[h.encode() for h in headers.split(":")],
        linesep=b"\r\n" if b"\r\n" in raw[:200] else b"\n",
        tlsrpt=True,
    )
    return bytes(signature) + raw


def write_corpus(
    directory: Path,
    n: int,
    *,
    seed: int = 0,
    formats: Sequence[str] = ("json.gz", "eml"),
    domains: Sequence[str] = ("example.com",),
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    dkim_key: LabDkimKey | None = None,
) -> list[Path]:
    """Write ``n`` reports in each of ``formats`` ("json", "json.gz", "eml") under
    ``directory``; returns the paths written. Mail is signed with ``dkim_key`` if given."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, report in enumerate(generate_reports(n, seed=seed, domains=domains, start=start)):
        for fmt in formats:
            if fmt == "json":
                name = file_name(report, gzip=False, unique=f"{i:06d}")
                path, data = directory / name, to_json_bytes(report)
            elif fmt == "json.gz":
                path, data = directory / file_name(report, unique=f"{i:06d}"), to_gzip(report)
            elif fmt == "eml":
                path, data = directory / f"{i:06d}.eml", to_email(report, dkim_key=dkim_key)
            else:
                raise ValueError(f"unknown format {fmt!r}: use json, json.gz or eml")
            path.write_bytes(data)
            written.append(path)
    return written


# --- the provider shapes ---------------------------------------------------------------------


def _report(rng: random.Random, provider: str, domain: str, day: datetime, i: int) -> Report:
    org, contact, _ = _ORG[provider]
    start = day.strftime("%Y-%m-%dT00:00:00Z")
    if provider in ("mailru", "stalwart"):
        end = (day + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")  # next midnight (D.4)
    else:
        end = day.strftime("%Y-%m-%dT23:59:59Z")
    if provider == "microsoft":
        rid = f"{133_000_000_000_000_000 + rng.randrange(10**15)}+{domain}"
        if rng.random() < 0.1:  # Microsoft's zone-less dates (D.1)
            start, end = start[:-1], end[:-1]
    elif provider == "mailru":
        rid = f"{rng.getrandbits(128):032x}@mail.ru"
    elif provider == "stalwart":
        rid = f"{int(day.timestamp())}_{rng.getrandbits(63)}"
    else:
        rid = f"{start}_{domain}"
        if i and rng.random() < 0.5:  # Google: several reports a day for big senders
            rid = f"{start}_{domain}_{i}"
    policies = [
        _policy(rng, provider, domain if k == 0 else f"mx{k}.{domain}", k, day)
        for k in range(rng.choices(_POLICY_COUNTS, _POLICY_WEIGHTS)[0])
    ]
    return {
        "organization-name": org,
        "date-range": {"start-datetime": start, "end-datetime": end},
        "contact-info": contact,
        "report-id": rid,
        "policies": policies,
    }


def _policy(rng: random.Random, provider: str, domain: str, k: int, day: datetime) -> Report:
    # A domain publishes one policy at a time: its MX set, max_age, TLSA records and the day it
    # moved from testing to enforce follow from its name, not from the report.
    trait = zlib.crc32(domain.encode())
    mxs = [f"mx{j}.{domain}" for j in range(1, trait % 4 + 2)]
    kind = "sts"
    if k > 0 and provider == "microsoft":
        kind = "tlsa"  # DANE for the MX host as policy domain (checklist B1.1, C.5)
    elif trait % 10 == 0:
        kind = "no-policy-found"
    policy: Report = {"policy-type": kind}
    if kind == "sts" and provider != "mailru":
        enforce_from = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=trait % 60)
        mode = "enforce" if day >= enforce_from else "testing"
        policy["policy-string"] = (
            ["version: STSv1", f"mode: {mode}"]
            + [f"mx: {m}" for m in mxs]
            + [f"max_age: {(86400, 604800, 1209600)[trait % 3]}"]
        )
    elif kind == "tlsa":
        rrs = [f"3 1 1 {zlib.crc32(f'{domain}{n}'.encode()):08X}" * 8 for n in range(2)]
        policy["policy-string"] = [json.dumps(rrs, separators=(",", ":"))]  # Microsoft (D.2)
    policy["policy-domain"] = domain
    if kind == "sts" and provider in ("google", "stalwart"):
        policy["mx-host"] = mxs
    elif provider == "stalwart":
        policy["policy-string"], policy["mx-host"] = [], []
    failed = 0
    details: list[Report] = []
    if rng.random() < 0.3:
        for _ in range(rng.randint(1, 3)):
            result, reason = rng.choice(_FAILURES)
            count = rng.randint(1, 40)
            failed += count
            detail: Report = {"result-type": result}
            if provider != "mailru":  # Mail.ru leaves out addresses and names (D.4)
                mx = rng.choice(mxs)
                # A reporter sends from a pool of a few dozen MTAs; an MX has one address.
                detail["sending-mta-ip"] = f"209.85.{rng.randrange(4)}.{rng.randrange(1, 17)}"
                detail["receiving-ip"] = f"192.0.2.{zlib.crc32(mx.encode()) % 254 + 1}"
                detail["receiving-mx-hostname"] = mx
            detail["failed-session-count"] = count
            if reason:
                detail["failure-reason-code"] = reason
            details.append(detail)
    result_entry: Report = {
        "policy": policy,
        "summary": {
            "total-successful-session-count": rng.randint(0, 5000),
            "total-failure-session-count": failed,
        },
    }
    if details or provider == "stalwart":  # Google omits an empty failure-details (D.5)
        result_entry["failure-details"] = details
    return result_entry


def _submitter(report: Report) -> str:
    for org, _, submitter in _ORG.values():
        if report.get("organization-name") == org:
            return submitter
    contact = report.get("contact-info") or "reporter.invalid"
    return str(contact).rpartition("@")[2]


def _ts(text: str) -> int:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())
