"""The client's side of delivery: the notice received by a real SMTP server (aiosmtpd on
loopback), reminders before expiry, expired links re-issued, "deemed delivered" once the
acknowledgement period is over, and what the record keeps (the domain, never the address or
the link)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from starlette.testclient import TestClient

from flows.adapter import PrefectRuns
from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, IntegrityError, TenantError
from offboarding.core.signing import Signer
from offboarding.delivery.delivery import (
    DeliveryStatus,
    FollowUp,
    carry_out,
    delivery_status,
    plan_follow_up,
    send_links,
)
from offboarding.delivery.links import link_digest
from offboarding.delivery.mail import DeliveryFailed, compose, send
from offboarding.dev.services import free_port
from offboarding.trail import AuditTrail, events
from offboarding.web import create_app
from tests.conftest import Platform
from tests.helpers import export_and_deliver


@dataclass
class Inbox:
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[str, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{controller.port}", inbox
    finally:
        controller.stop()


def mail_settings(platform: Platform, smtp_url: str, **extra: Any) -> Settings:
    return Settings(
        home=platform.settings.home,
        database_url=platform.dsn,
        smtp_url=smtp_url,
        mail_from="exports@saas.example",
        reply_to="support@saas.example",
        **{"smtp_plaintext_hosts": ["127.0.0.1"], **extra},  # the test server has no TLS
    )


def urls_in(message: EmailMessage) -> list[str]:
    body = message.get_content()
    return [line.strip() for line in body.splitlines() if line.strip().startswith("http")]


def test_the_contact_receives_links_expiry_digests_and_how_to_verify_and_acknowledge(
    platform: Platform, smtp: tuple[str, Inbox]
) -> None:
    smtp_url, inbox = smtp
    settings = mail_settings(platform, smtp_url)
    case = platform.case("acme")
    _, delivery, bundle = export_and_deliver(platform, case, settings)

    assert len(inbox.messages) == 1
    recipients, message = inbox.messages[0]
    assert recipients == ["dpo@acme.example"]
    assert message["From"] == "exports@saas.example"
    assert message["Reply-To"] == "support@saas.example"
    assert case.case_id in message["Subject"]
    body = message.get_content()
    assert "Acme SAS" in body
    assert delivery.parts[0].sha256 in body
    assert f"{delivery.link_expires_at:%Y-%m-%d %H:%M} UTC" in body
    assert "sha256sum" in body and "offboard verify" in body
    deemed_on = delivery.delivered_at + settings.delivery.acknowledgement_timeout
    assert f"{deemed_on:%Y-%m-%d}" in body
    downloads = [u for u in urls_in(message) if "/d/" in u]
    ack = [u for u in urls_in(message) if "/ack/" in u]
    assert len(downloads) == 1 and len(ack) == 1

    client = TestClient(create_app(settings, PrefectRuns()))
    response = client.get(downloads[0].removeprefix(settings.delivery.link_base_url))
    assert response.status_code == 200 and response.content == bundle.read_bytes()

    # The record: the recipient's domain and the link's digest; never the address or the link.
    trail = AuditTrail(settings, case, Signer.load_or_create(settings.keys_dir))
    issued = trail.of(events.LinksIssued)
    assert [e.purpose for e in issued] == ["delivery"]
    assert issued[0].recipient_domain == "acme.example"
    assert issued[0].link_sha256 == [link_digest(downloads[0])]
    archive = settings.root / "stores" / "archive"
    for path in [p for p in archive.rglob("*") if p.is_file()]:
        content = path.read_bytes()
        assert b"dpo@acme.example" not in content and downloads[0].encode() not in content


def status_at(delivered: datetime, expires: datetime, notices: list[str]) -> DeliveryStatus:
    return DeliveryStatus(
        store_url="file:///x", flow_run_id="r", parts=[], delivered_at=delivered,
        expires_at=expires, notices=notices,
    )  # fmt: skip


def test_follow_ups_remind_before_expiry_reissue_after_it_and_deem_delivered_at_the_end() -> None:
    settings = Settings(
        reminders_before_expiry=[timedelta(days=3), timedelta(days=1)],
        acknowledgement_timeout=timedelta(days=30),
    )
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    expires = t0 + timedelta(days=7)
    assert plan_follow_up(settings, status_at(t0, expires, []), t0 + timedelta(days=1)) == (
        FollowUp("none")
    )
    first = plan_follow_up(settings, status_at(t0, expires, []), t0 + timedelta(days=4, hours=1))
    assert first.action == "remind" and first.reminder_before == timedelta(days=3)
    sent_3d = [f"reminder-{int(expires.timestamp())}-{3 * 86400}"]
    assert plan_follow_up(settings, status_at(t0, expires, sent_3d), t0 + timedelta(days=5)) == (
        FollowUp("none")
    )  # the same reminder is not sent twice
    second = plan_follow_up(
        settings, status_at(t0, expires, sent_3d), t0 + timedelta(days=6, hours=1)
    )
    assert second.action == "remind" and second.reminder_before == timedelta(days=1)
    # The watch was down through both reminder points: one reminder, the latest.
    late = plan_follow_up(settings, status_at(t0, expires, []), t0 + timedelta(days=6, hours=12))
    assert late.action == "remind" and late.reminder_before == timedelta(days=1)
    assert plan_follow_up(settings, status_at(t0, expires, []), expires).action == "reissue"
    assert plan_follow_up(settings, status_at(t0, None, []), t0).action == "reissue"  # type: ignore[arg-type]
    assert (
        plan_follow_up(settings, status_at(t0, expires, []), t0 + timedelta(days=30)).action
        == "deemed-delivered"
    )


def test_a_reminder_keeps_the_expiry_and_a_reissue_sends_new_links(
    platform: Platform, smtp: tuple[str, Inbox]
) -> None:
    smtp_url, inbox = smtp
    settings = mail_settings(platform, smtp_url)
    case = platform.case("acme")
    export_and_deliver(platform, case, settings)
    status = delivery_status(settings, case)
    assert status.expires_at is not None
    at = status.expires_at - timedelta(hours=12)

    reminder = plan_follow_up(settings, status, at)
    assert reminder.action == "remind"
    carry_out(settings, case, reminder, at)
    carry_out(settings, case, reminder, at)  # the watch ran twice: one reminder only
    assert [m["Subject"].strip().split(":")[0] for _, m in inbox.messages] == [
        f"Your data export is ready ({case.case_id})",
        "Reminder",
    ]
    assert f"{status.expires_at:%Y-%m-%d %H:%M} UTC" in inbox.messages[1][1].get_content()

    after = status.expires_at + timedelta(minutes=1)
    reissue = plan_follow_up(settings, delivery_status(settings, case), after)
    assert reissue.action == "reissue"
    carry_out(settings, case, reissue, after)
    new_status = delivery_status(settings, case)
    assert new_status.expires_at == after + settings.delivery.link_lifetime
    assert plan_follow_up(settings, new_status, after).action == "none"
    old_links = {u for u in urls_in(inbox.messages[0][1]) if "/d/" in u}
    new_links = {u for u in urls_in(inbox.messages[-1][1]) if "/d/" in u}
    assert len(new_links) == 1 and not old_links & new_links


def test_no_link_is_sent_for_a_destroyed_export(platform: Platform) -> None:
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case)
    bundle.unlink()
    with pytest.raises(IntegrityError, match="gone from"):
        send_links(platform.settings, case, "reissue")


def test_a_tenant_without_a_contact_stops_before_anything_is_uploaded(platform: Platform) -> None:
    platform.query("UPDATE tenants SET contact_email = NULL WHERE id = 'globex'")
    case = platform.case("globex")
    with pytest.raises(TenantError, match="no contact e-mail"):
        export_and_deliver(platform, case)
    assert not list((platform.settings.root / "stores").glob("delivery/bundles/globex/*"))


def test_an_unreachable_mail_server_is_a_clear_retryable_error(platform: Platform) -> None:
    settings = mail_settings(platform, f"smtp://127.0.0.1:{free_port()}")
    message = compose(settings, to="dpo@acme.example", subject="s", body="b")
    with pytest.raises(DeliveryFailed, match="did not accept the notice") as raised:
        send(settings, message, outbox_name="x")
    assert "dpo@acme.example" not in str(raised.value)


def test_a_mail_server_without_starttls_is_refused_unless_named_and_nothing_is_sent(
    platform: Platform, smtp: tuple[str, Inbox]
) -> None:
    """smtp:// used to fall back to plain text whenever the server offered no STARTTLS: the
    links (and the login) crossed the network in clear."""
    smtp_url, inbox = smtp
    settings = mail_settings(platform, smtp_url, smtp_plaintext_hosts=[])
    message = compose(settings, to="dpo@acme.example", subject="s", body="b")
    with pytest.raises(ConfigurationError, match=r"offers no STARTTLS.*SMTP_PLAINTEXT_HOSTS"):
        send(settings, message, outbox_name="x")
    assert inbox.messages == []
    send(mail_settings(platform, smtp_url), message, outbox_name="x")  # named: a local relay
    assert len(inbox.messages) == 1
