"""Deliver the bundle and keep the client informed while the case waits for acknowledgement.

    deliver      upload every part to the delivery store of the tenant's region, then send the
                 links (one per part) with their expiry, the parts' sha256 and how to verify
    send_links   sign fresh links and e-mail them: at delivery, as a reminder before expiry,
                 or re-issued once expired (automatically by the case watch, or by staff)
    follow_up    what a waiting case needs now: a reminder, a re-issued link, or to continue
                 as "deemed delivered" once the acknowledgement period is over

The case's audit trail is the state: every upload, link and notice is an event there (with the
link's digest and the recipient's domain, never the link or the address), so the watch, the
flow and support staff all read the same facts.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from offboarding.core.config import Settings
from offboarding.core.errors import (
    ConfigurationError,
    IntegrityError,
    OffboardingError,
    TenantError,
)
from offboarding.core.faults import crash_point
from offboarding.core.records import BundleRef, CaseRef, DeliveredPart, Delivery
from offboarding.delivery.links import LinkSigner, PartLink, link_digest, sign_part_links
from offboarding.delivery.mail import compose, send
from offboarding.delivery.receipts import downloads, fully_downloaded
from offboarding.evidence.timestamps import anchor_head
from offboarding.export.export import new_case
from offboarding.locations import scratch_dir
from offboarding.locations.bundles import bundle_prefix, staging_prefix
from offboarding.people import keep_statement
from offboarding.registry import TenantRecord, TenantRegistry
from offboarding.runs import DEEMED_BY, AcknowledgementInput, Runs
from offboarding.stores import LocalStore, backend, delete_every_version, open_store
from offboarding.trail import AuditTrail, CaseState, events

__all__ = [
    "AcknowledgementTerms",
    "DeliveryStatus",
    "FollowUp",
    "acknowledgement_terms",
    "awaiting_acknowledgement",
    "deliver",
    "delivery_status",
    "plan_follow_up",
    "send_links",
    "status_of",
    "watch_cases",
]

Purpose = Literal["delivery", "reminder", "reissue"]


def deliver(settings: Settings, case: CaseRef, bundle: BundleRef, flow_run_id: str) -> Delivery:
    """Upload every part to the tenant's region, send the links, then wipe scratch: the
    delivered bundle is the only export copy left."""
    tenant = TenantRegistry(settings).get(case.tenant)
    tenant.require_contact()
    store = open_store(settings.delivery_store_url(tenant.region))
    trail = AuditTrail.open(settings, case)
    delivered: list[DeliveredPart] = []
    if bundle.store_url and bundle.store_url != store.url:
        raise ConfigurationError(
            f"the bundle was packaged into {bundle.store_url}, but tenant {case.tenant!r}'s "
            f"region {tenant.region!r} now delivers from {store.url}: the region changed "
            "during the case. Rerun the export so the bundle is written in the new region"
        )
    for part in bundle.parts:
        if bundle.store_url:  # packaged straight into the store (and verified there)
            key = part.path
            if not store.exists(key):
                raise IntegrityError(f"{store.url}/{key}: packaged part missing; rerun the case")
        else:  # a bundle packaged into scratch by an earlier release
            key = f"{bundle_prefix(case.tenant)}{case.case_id}/{Path(part.path).name}"
            stored = store.put_file(key, Path(part.path))
            if stored.sha256 != part.sha256:
                raise IntegrityError(f"{store.url}/{key}: uploaded digest differs; retry delivery")
        crash_point("deliver:part-uploaded")
        delivered.append(
            DeliveredPart(
                key=key, sha256=part.sha256, size=part.size,
                plaintext_sha256=part.plaintext_sha256,
            )
        )  # fmt: skip
    recorded = trail.record(
        events.Delivered(
            store_url=store.url, region=tenant.region, flow_run_id=flow_run_id, parts=delivered
        ),
        once="delivered",
    )
    delivered_at = recorded.at
    anchor_head(settings, trail.store, case, (recorded.seq, trail.events()[recorded.seq].body))
    # The expiry follows from the recorded delivery time, so a retried step (a crash after the
    # e-mail went, before it was recorded) sends the very same links again, not new ones.
    issued = send_links(
        settings, case, "delivery", once="links-delivery",
        expires_at=delivered_at + settings.delivery.link_lifetime, now=delivered_at,
    )  # fmt: skip
    shutil.rmtree(scratch_dir(settings, case), ignore_errors=True)
    delete_every_version(store, staging_prefix(case))  # a distributed export's parts
    return Delivery(
        store_url=store.url,
        parts=delivered,
        link_expires_at=issued.expires_at,
        delivered_at=delivered_at,
    )


@dataclass(frozen=True)
class LinksIssued:
    purpose: Purpose
    expires_at: datetime
    link_sha256: list[str]


@dataclass(frozen=True)
class DeliveryStatus:
    """What the trail says about a delivered case."""

    store_url: str
    flow_run_id: str
    parts: list[DeliveredPart]
    delivered_at: datetime
    expires_at: datetime | None
    notices: list[str] = field(default_factory=list)  # once-keys of every notice sent

    def reminded(self, expires_at: datetime, before: timedelta) -> bool:
        return _reminder_key(expires_at, before) in self.notices


def delivery_status(settings: Settings, case: CaseRef) -> DeliveryStatus:
    return status_of(AuditTrail.open(settings, case).state())


def status_of(state: CaseState) -> DeliveryStatus:
    if state.delivery is None or state.delivered_at is None:
        raise TenantError(
            f"case {state.case.case_id} has delivered nothing yet: links are sent once the "
            "bundle is delivered"
        )
    return DeliveryStatus(
        store_url=state.delivery.store_url,
        flow_run_id=state.delivery.flow_run_id,
        parts=list(state.delivery.parts),
        delivered_at=state.delivered_at,
        expires_at=state.links_expire_at,
        notices=state.notices,
    )


def awaiting_acknowledgement(settings: Settings, case: CaseRef, run_id: str, runs: Runs) -> bool:
    """The case's trail shows it delivered by run `run_id` and not acknowledged, and the
    orchestrator holds that run suspended: only then is anything a person says kept."""
    state = AuditTrail.open(settings, case).state()
    if state.delivery is None or state.acknowledgement is not None:
        return False
    return state.delivery.flow_run_id == run_id and runs.state(run_id) == "PAUSED"


@dataclass(frozen=True)
class AcknowledgementTerms:
    """What an acknowledgement given through the client's page schedules."""

    days: int | None  # days until destruction; None: the configured grace
    needs_confirmation: bool = False  # fewer days than the grace: asked to confirm first
    explanation: str = ""


def acknowledgement_terms(
    settings: Settings, case: CaseRef, days: int | None, *, confirmed: bool
) -> AcknowledgementTerms:
    """Fewer days than the standard grace only once every part was downloaded in full (a
    forwarded notice must not shorten the time the client has to get its data) and after a
    second, explicit confirmation; otherwise the standard grace applies."""
    grace = settings.destruction.grace
    if days is None or timedelta(days=days) >= grace:
        return AcknowledgementTerms(days)
    state = AuditTrail.open(settings, case).state()
    parts = [p.key.rsplit("/", 1)[-1] for p in (state.delivery.parts if state.delivery else [])]
    if not fully_downloaded(parts, downloads(settings, case)):
        return AcknowledgementTerms(
            None,
            explanation=f"The standard {_days(grace)} apply: not every part of the export has "
            "been downloaded in full yet, and a shorter time is possible only once it has.",
        )
    if not confirmed:
        return AcknowledgementTerms(days, needs_confirmation=True)
    return AcknowledgementTerms(days)


def _days(period: timedelta) -> str:
    return f"{period.days} days" if period >= timedelta(days=1) else f"{period} (h:mm:ss)"


def _reminder_key(expires_at: datetime, before: timedelta) -> str:
    return f"reminder-{int(expires_at.timestamp())}-{int(before.total_seconds())}"


def send_links(
    settings: Settings,
    case: CaseRef,
    purpose: Purpose,
    *,
    expires_at: datetime | None = None,
    once: str | None = None,
    now: datetime | None = None,
) -> LinksIssued:
    """Sign one link per part (until `expires_at`, or now + the link lifetime) and e-mail them
    to the tenant's contact. With `once`, a notice already recorded is not sent again."""
    trail = AuditTrail.open(settings, case)
    state = trail.state()
    already = state.notice(once) if once else None
    if already is not None:
        return LinksIssued(purpose, already.expires_at, already.link_sha256)
    status = status_of(state)
    tenant = TenantRegistry(settings).get(case.tenant)
    if tenant.status == "destroyed":
        raise TenantError(f"tenant {case.tenant!r} is destroyed: there is no export to link to")
    address = tenant.require_contact()
    now = now or datetime.now(UTC)
    expires_at = expires_at or now + settings.delivery.link_lifetime
    store = open_store(status.store_url)
    missing = [p.key for p in status.parts if not store.exists(p.key)]
    if missing:
        raise IntegrityError(
            f"case {case.case_id}: {len(missing)} delivered part(s) are gone from "
            f"{store.url}; the export was destroyed or removed, and no link can be sent"
        )
    links = sign_part_links(settings, store, [p.key for p in status.parts], expires_at)
    index = None
    if isinstance(backend(store), LocalStore) and len(links) > 1:
        index = LinkSigner.from_settings(settings).create_index(
            store.url, [p.key for p in status.parts], expires_at
        )
    ack_link = LinkSigner.from_settings(settings).create_ack(
        status.flow_run_id,
        case.case_id,
        status.delivered_at + settings.delivery.acknowledgement_timeout,
    )
    message = compose(
        settings,
        to=address,
        subject=_SUBJECTS[purpose].format(case=case.case_id),
        body=_body(settings, tenant, case, status, links, index, ack_link, expires_at, purpose),
    )
    sent = send(settings, message, outbox_name=f"{case.case_id}-{purpose}-{int(now.timestamp())}")
    crash_point("deliver:notice-sent")
    digests = [link_digest(link.url) for link in links]
    trail.record(
        events.LinksIssued(
            purpose=purpose, expires_at=expires_at, link_sha256=digests,
            recipient_domain=tenant.contact_domain, message_id=sent.message_id,
            via="outbox" if not settings.delivery.smtp_url else sent.via,
        ),
        once=once,
    )  # fmt: skip
    return LinksIssued(purpose, expires_at, digests)


_SUBJECTS: dict[Purpose, str] = {
    "delivery": "Your data export is ready ({case})",
    "reminder": "Reminder: your export link expires soon ({case})",
    "reissue": "A new link to your data export ({case})",
}


def _body(
    settings: Settings,
    tenant: TenantRecord,
    case: CaseRef,
    status: DeliveryStatus,
    links: list[PartLink],
    index: str | None,
    ack_link: str,
    expires_at: datetime,
    purpose: Purpose,
) -> str:
    deemed_on = status.delivered_at + settings.delivery.acknowledgement_timeout
    lines = [
        f"Hello {tenant.name},",
        "",
        {
            "delivery": "Your contract with us has ended, and the export of all your data is "
            "ready to download.",
            "reminder": "This is a reminder: the export of your data is waiting for you, and "
            "the link below expires soon.",
            "reissue": "Here is a new link to the export of your data; earlier links no longer "
            "work.",
        }[purpose],
        "",
        f"Case: {case.case_id}",
        f"Links valid until: {expires_at:%Y-%m-%d %H:%M} UTC",
        "",
    ]
    for number, (link, part) in enumerate(zip(links, status.parts, strict=True), start=1):
        lines += [
            f"Part {number} of {len(links)}: {link.filename} ({part.size:,} bytes)",
            f"  sha256: {part.sha256}",
            *([f"  sha256 once decrypted ({link.filename.removesuffix('.age')}): "
               f"{part.plaintext_sha256}"] if part.plaintext_sha256 else []),
            f"  {link.url}",
            "",
        ]  # fmt: skip
    if any(part.plaintext_sha256 for part in status.parts):
        lines += [
            "The parts are encrypted to your organisation's age key (the recipient you gave",
            "us): only the matching identity opens them, and we cannot. Decrypt each part with",
            "the age tool (https://age-encryption.org), then check it as below:",
            "  age -d -i <your identity file> -o <part>.zip <part>.zip.age",
            "",
        ]
    if index:
        lines += ["All parts on one page:", f"  {index}", ""]
    lines += [
        "How to check the download:",
        "  sha256sum <file>  must print the sha256 above for each part. Then, with all parts",
        "  in one folder: offboard verify <every part> --public-key <our published key>",
        "  checks the signed manifest and every file inside; README.txt in the bundle shows",
        "  how to do the same with standard tools (unzip, sha256sum -c, openssl).",
        "",
        "How to acknowledge receipt (once you have checked it):",
        f"  {ack_link}",
        "  or reply to this message with your name. You may ask for destruction sooner than",
        "  our standard grace period, up to 90 days after acknowledgement.",
        "",
        f"If we hear nothing by {deemed_on:%Y-%m-%d}, the export is deemed delivered, and all",
        "copies of your data on our side are destroyed within 90 days of that date. A signed",
        "certificate of destruction is sent to you when it is done.",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class FollowUp:
    action: Literal["none", "remind", "reissue", "deemed-delivered"]
    reminder_before: timedelta | None = None
    reason: str = ""


def plan_follow_up(settings: Settings, status: DeliveryStatus, now: datetime) -> FollowUp:
    """What a waiting case needs at `now` (pure: the watch and the tests share it)."""
    deemed_at = status.delivered_at + settings.delivery.acknowledgement_timeout
    if now >= deemed_at:
        return FollowUp("deemed-delivered", reason=f"no acknowledgement since {deemed_at:%F}")
    if status.expires_at is None or now >= status.expires_at:
        return FollowUp("reissue", reason="the links expired while the case waits")
    due = [r for r in settings.delivery.reminders_before_expiry if now >= status.expires_at - r]
    if due:
        latest = min(due)  # several due at once (the watch was down): remind once, the latest
        if not status.reminded(status.expires_at, latest):
            return FollowUp("remind", latest, f"links expire at {status.expires_at:%F %H:%M}")
    return FollowUp("none")


def carry_out(settings: Settings, case: CaseRef, follow_up: FollowUp, now: datetime) -> None:
    """Send the reminder or the re-issued links a follow-up calls for."""
    status = delivery_status(settings, case)
    if follow_up.action == "remind":
        assert status.expires_at is not None and follow_up.reminder_before is not None
        send_links(
            settings, case, "reminder", expires_at=status.expires_at, now=now,
            once=_reminder_key(status.expires_at, follow_up.reminder_before),
        )  # fmt: skip
    elif follow_up.action == "reissue":
        send_links(settings, case, "reissue", now=now)
    else:
        raise ConfigurationError(f"follow-up {follow_up.action!r} sends nothing")


def watch_cases(
    settings: Settings,
    runs: Runs,
    now: datetime | None = None,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> dict[str, int]:
    """One pass over the cases waiting for an acknowledgement: send the reminder that is due,
    re-issue links that expired, and resume as "deemed delivered" a case whose acknowledgement
    period is over. Returns how many got each follow-up; one case failing does not stop the
    others."""
    log = log or logging.getLogger("offboarding.watch")
    counts = {"waiting": 0, "remind": 0, "reissue": 0, "deemed-delivered": 0, "failed": 0}
    for run_id, tenant in runs.waiting_cases():
        counts["waiting"] += 1
        case = new_case(tenant, run_id)
        try:
            at = now or datetime.now(UTC)
            follow_up = plan_follow_up(settings, delivery_status(settings, case), at)
            if follow_up.action == "deemed-delivered":
                kept = keep_statement(settings, tenant, "acknowledgement", name=DEEMED_BY)
                runs.resume(run_id, AcknowledgementInput.deemed(kept))
            elif follow_up.action != "none":
                carry_out(settings, case, follow_up, at)
        except OffboardingError as error:
            counts["failed"] += 1
            log.error("case %s: follow-up failed: %s", case.case_id, error)
            continue
        if follow_up.action != "none":
            counts[follow_up.action] += 1
            log.info("case %s: %s (%s)", case.case_id, follow_up.action, follow_up.reason)
    return counts
