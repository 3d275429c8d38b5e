"""Notices to the client's contact: composed with the standard library's `email`, sent over
SMTP (`smtplib`), or, on the embedded default with no mail server, written to `<home>/outbox/`
as `.eml` files a person can open.

Only the recipient's domain may appear in logs and in the audit trail; the message itself,
with its links, goes to the contact and nowhere else.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlparse

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, OffboardingError
from offboarding.core.secrets import write_private

__all__ = ["DeliveryFailed", "Sent", "compose", "send"]

_TIMEOUT_SECONDS = 30


class DeliveryFailed(OffboardingError):
    """The mail server refused or could not be reached; the step can be retried."""


@dataclass(frozen=True)
class Sent:
    message_id: str
    via: str  # "smtp://host:port" or the outbox file


def compose(settings: Settings, *, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.delivery.mail_from
    message["To"] = to
    if settings.delivery.reply_to:
        message["Reply-To"] = settings.delivery.reply_to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(
        domain=settings.delivery.mail_from.rpartition("@")[2] or None
    )
    message.set_content(body)
    return message


def send(settings: Settings, message: EmailMessage, *, outbox_name: str) -> Sent:
    """Send through the configured SMTP server, or write the message to the outbox."""
    message_id = str(message["Message-ID"])
    if not settings.delivery.smtp_url:
        target = settings.root / "outbox" / f"{outbox_name}.eml"
        target.unlink(missing_ok=True)
        write_private(target, bytes(message))
        return Sent(message_id=message_id, via=str(target))
    server = urlparse(settings.delivery.smtp_url)
    if server.scheme not in ("smtp", "smtps") or not server.hostname:
        raise ConfigurationError(
            "OFFBOARD_SMTP_URL must look like smtp://user:password@host:587 or smtps://host:465"
        )
    port = server.port or (465 if server.scheme == "smtps" else 25)
    plaintext_allowed = set(settings.delivery.smtp_plaintext_hosts)
    context = ssl.create_default_context()
    try:
        client = (
            smtplib.SMTP_SSL(server.hostname, port, timeout=_TIMEOUT_SECONDS, context=context)
            if server.scheme == "smtps"
            else smtplib.SMTP(server.hostname, port, timeout=_TIMEOUT_SECONDS)
        )
        with client:
            client.ehlo()
            if server.scheme == "smtp" and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            elif server.scheme == "smtp" and server.hostname not in plaintext_allowed:
                raise ConfigurationError(
                    f"mail server {server.hostname}:{port} offers no STARTTLS: the notice (its "
                    "download links, the login) would cross the network in clear, so nothing "
                    "was sent. Use a server with STARTTLS or smtps://; for a relay on the same "
                    f'machine, name it in OFFBOARD_SMTP_PLAINTEXT_HOSTS (["{server.hostname}"])'
                )
            if server.username:
                client.login(unquote(server.username), unquote(server.password or ""))
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        # The error text of a refusal can quote the address: keep to its class and code.
        code = getattr(error, "smtp_code", None)
        raise DeliveryFailed(
            f"mail server {server.hostname}:{port} did not accept the notice "
            f"({type(error).__name__}{f' {code}' if code else ''}); it is retried"
        ) from None
    return Sent(message_id=message_id, via=f"{server.scheme}://{server.hostname}:{port}")


def read_outbox(path: Path) -> EmailMessage:
    """A message written to the outbox, parsed back (for the demo and tests)."""
    from email import policy
    from email.parser import BytesParser

    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed
