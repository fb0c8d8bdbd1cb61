"""Alert delivery: webhook POSTs (httpx) and mail through an SMTP relay (smtplib, in a thread).

Every delivery has a timeout; a failed target is reported back, never raised, so the monitor
keeps the alert unsent and tries again on the next run (the dedup table remembers only what
was delivered).
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stspilot.store.monitor import Outgoing

USER_AGENT = "stspilot-monitor"


@dataclass(frozen=True, slots=True)
class MailRelay:
    """An SMTP relay to hand alert mail to (no authentication: a local MTA or a smarthost)."""

    host: str
    port: int = 25
    mail_from: str = "stspilot@localhost"
    mail_to: tuple[str, ...] = ()
    starttls: bool = False


@dataclass(frozen=True, slots=True)
class Notifier:
    """Where alerts go; with no target, alerts are only remembered (``stspilot monitor list``)."""

    webhooks: tuple[str, ...] = ()
    mail: MailRelay | None = None
    timeout: float = 10.0

    @property
    def targets(self) -> int:
        return len(self.webhooks) + (1 if self.mail and self.mail.mail_to else 0)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What reached every target, and the errors of those that failed."""

    delivered: tuple[Outgoing, ...]
    errors: tuple[str, ...] = field(default=())


def webhook_payload(item: Outgoing) -> dict[str, Any]:
    """JSON body of one alert; ``text`` makes Slack/Mattermost-style incoming webhooks work."""
    prefix = "RESOLVED" if item.resolved else item.severity.upper()
    return {
        "text": f"[stspilot {prefix}] {item.message}",
        "domain": item.domain,
        "code": item.code,
        "severity": item.severity,
        "key": item.key,
        "resolved": item.resolved,
    }


def mail_message(item: Outgoing, relay: MailRelay) -> EmailMessage:
    msg = EmailMessage()
    prefix = "resolved" if item.resolved else item.severity
    msg["Subject"] = f"[stspilot {prefix}] {item.domain}: {item.code}"
    msg["From"] = relay.mail_from
    msg["To"] = ", ".join(relay.mail_to)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="stspilot.invalid")
    msg.set_content(f"{item.message}\n\nalert key: {item.key}\n")
    return msg


def _send_mail(items: Sequence[Outgoing], relay: MailRelay, timeout: float) -> None:
    with smtplib.SMTP(relay.host, relay.port, timeout=timeout) as smtp:
        if relay.starttls:
            smtp.starttls()
        for item in items:
            smtp.send_message(mail_message(item, relay))


async def deliver(items: Sequence[Outgoing], notifier: Notifier) -> Delivery:
    """Send ``items`` to every target; an item counts as delivered when no target failed.

    With no target nothing is delivered: the alerts stay unsent (and are sent once a target
    is given), rather than being counted and remembered as sent."""
    if not items or not notifier.targets:
        return Delivery(())
    failed: set[str] = set()
    errors: list[str] = []
    if notifier.webhooks:
        import httpx

        headers = {"User-Agent": USER_AGENT}
        async with httpx.AsyncClient(
            timeout=notifier.timeout, follow_redirects=False, headers=headers
        ) as client:
            for url in notifier.webhooks:
                for item in items:
                    try:
                        response = await client.post(url, json=webhook_payload(item))
                        if response.status_code >= 300:
                            raise httpx.HTTPStatusError(
                                f"status {response.status_code}",
                                request=response.request,
                                response=response,
                            )
                    except httpx.HTTPError as exc:
                        failed.add(item.key)
                        errors.append(f"webhook {url}: {type(exc).__name__}: {exc}"[:300])
    relay = notifier.mail
    if relay is not None and relay.mail_to:
        try:
            await asyncio.to_thread(_send_mail, items, relay, notifier.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            failed.update(item.key for item in items)
            errors.append(f"mail {relay.host}:{relay.port}: {type(exc).__name__}: {exc}"[:300])
    return Delivery(tuple(i for i in items if i.key not in failed), tuple(errors))
