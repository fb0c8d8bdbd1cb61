"""Small TLS-RPT inputs for the intake tests: report JSON, its gzip and its RFC 8460 §5.3 mail."""

from __future__ import annotations

import gzip
import json
from email.message import EmailMessage
from email.policy import SMTP


def report_json(
    org: str, report_id: str, *, domain: str = "example.com", failures: int = 0
) -> bytes:
    """An RFC 8460 §4 report (Appendix B shape) with ``failures`` failure details."""
    details = [
        {
            "result-type": "certificate-expired",
            "sending-mta-ip": f"192.0.2.{i + 1}",
            "receiving-mx-hostname": f"mx{i}.{domain}",
            "failed-session-count": i + 1,
        }
        for i in range(failures)
    ]
    report = {
        "organization-name": org,
        "date-range": {
            "start-datetime": "2026-11-20T00:00:00Z",
            "end-datetime": "2026-11-20T23:59:59Z",
        },
        "contact-info": f"tlsrpt@{org}",
        "report-id": report_id,
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": [
                        "version: STSv1",
                        "mode: testing",
                        f"mx: mx.{domain}",
                        "max_age: 86400",
                    ],
                    "policy-domain": domain,
                    "mx-host": [f"mx.{domain}"],
                },
                "summary": {
                    "total-successful-session-count": 100,
                    "total-failure-session-count": sum(range(1, failures + 1)),
                },
                "failure-details": details,
            }
        ],
    }
    return json.dumps(report).encode()


def report_mail(
    *parts: bytes,
    domain: str = "example.com",
    submitter: str = "sender.example",
    compress: bool = True,
) -> bytes:
    """A ``multipart/report; report-type=tlsrpt`` mail carrying each part as an attachment."""
    msg = EmailMessage()
    msg["From"] = f"tlsrpt-noreply@{submitter}"
    msg["To"] = f"tlsrpt@{domain}"
    msg["Subject"] = f"Report Domain: {domain} Submitter: {submitter} Report-ID: <x@{submitter}>"
    msg["TLS-Report-Domain"] = domain
    msg["TLS-Report-Submitter"] = submitter
    msg.set_content("This is an aggregate TLS report.")
    for i, body in enumerate(parts):
        if compress:
            msg.add_attachment(
                gzip.compress(body),
                maintype="application",
                subtype="tlsrpt+gzip",
                filename=f"{submitter}!{domain}!1763596800!1763683199!{i}.json.gz",
            )
        else:
            msg.add_attachment(
                body,
                maintype="application",
                subtype="tlsrpt+json",
                filename=f"{submitter}!{domain}!1763596800!1763683199!{i}.json",
            )
    msg.set_type("multipart/report")
    msg.set_param("report-type", "tlsrpt")
    return msg.as_bytes(policy=SMTP)
