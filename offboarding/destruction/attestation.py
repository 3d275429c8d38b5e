"""Attested systems: the data map's systems the pipeline cannot reach, destroyed by a named
role who confirms it (who, what was done, where the proof is) before a due date the case
computes. The destroy flow asks once per system and waits, holding no worker; the case watch
reminds the role; the certificate lists each as attested, never as verified.

The due date is the start of destruction plus the system's `within`, and never later than
the case's 90-day deadline. Everything here is recorded in the case's audit trail: the
request (with its due date, fixed once), each reminder, the confirmation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from offboarding.core.config import Settings
from offboarding.core.errors import ConfigurationError, TenantError
from offboarding.core.records import CaseRef
from offboarding.datamap import AttestedSystem, datamap_of
from offboarding.delivery import mail
from offboarding.people import pseudonym, statement
from offboarding.runs import AttestationInput
from offboarding.trail import AuditTrail, events

__all__ = [
    "AttestationDue",
    "attest",
    "attested_systems",
    "remind_attestations",
    "request_attestations",
]


@dataclass(frozen=True)
class AttestationDue:
    """One system awaiting its role's confirmation (no tenant data: names from the data map)."""

    system: str
    description: str
    role: str
    procedure: str
    due: datetime


def attested_systems(settings: Settings) -> dict[str, AttestedSystem]:
    return datamap_of(settings).attested()


def request_attestations(
    settings: Settings, case: CaseRef, started_at: datetime, deadline: datetime
) -> list[AttestationDue]:
    """Every attested system not confirmed yet, each requested once on the record with its
    due date (a rerun finds the same dates)."""
    trail = AuditTrail.open(settings, case)
    state = trail.state()
    pending = []
    for name, system in attested_systems(settings).items():
        if name in state.attestations:
            continue
        requested = state.attestations_requested.get(name)
        if requested is None:
            due = min(started_at + system.attested.within, deadline)
            trail.record(
                events.AttestationRequested(system=name, role=system.attested.role, due=due),
                once=f"attestation-requested:{name}",
            )
        else:
            due = requested.due
        pending.append(
            AttestationDue(
                system=name,
                description=system.description,
                role=system.attested.role,
                procedure=system.attested.procedure.replace("{tenant}", case.tenant),
                due=due,
            )
        )
    return pending


def attest(
    settings: Settings, case: CaseRef, name: str, given: AttestationInput, now: datetime
) -> events.SystemAttested:
    """Record the role's confirmation for one system (once: a second one changes nothing)."""
    systems = attested_systems(settings)
    system = systems.get(name)
    if system is None:
        raise ConfigurationError(
            f"{name!r} is not an attested system of the data map; attested systems: "
            f"{', '.join(systems) or 'none'}"
        )
    trail = AuditTrail.open(settings, case)
    state = trail.state()
    if name in state.attestations:
        return state.attestations[name]
    requested = state.attestations_requested.get(name)
    if requested is None:
        raise TenantError(
            f"case {case.case_id} has not asked for the attestation of {name!r}: its "
            "destruction has not reached that step (attest once the destroy run waits for it)"
        )
    said = statement(settings, given.statement, case.tenant, "attestation")
    trail.record(
        events.SystemAttested(
            system=name,
            role=system.attested.role,
            by_pseudonym=pseudonym(settings, case, said.field("name")),
            statement=said.ref,
            action=given.action,
            evidence=given.evidence,
            at=now,
            due=requested.due,
        ),
        once=f"system-attested:{name}",
    )
    return trail.state().attestations[name]


def remind_attestations(
    settings: Settings,
    cases: list[CaseRef],
    now: datetime,
    log: Callable[[str], None] = print,
) -> int:
    """For each case's attestations still open: remind the role (the data map's `notify`
    address) once per `reminder_every`, and say so when one is past its due date. Returns
    the number of reminders sent."""
    systems = attested_systems(settings)
    sent = 0
    for case in cases:
        trail = AuditTrail.open(settings, case)
        state = trail.state()
        for name, requested in state.attestations_requested.items():
            system = systems.get(name)
            if name in state.attestations or system is None:
                continue
            every = system.attested.reminder_every.total_seconds()
            reminded = state.attestation_reminders.get(name, ())
            since = reminded[-1] if reminded else state.attestations_requested_at[name]
            if (now - since).total_seconds() < every:
                continue
            overdue = now > requested.due
            if overdue:
                log(
                    f"case {case.case_id}: the attestation of {name!r} by {system.attested.role} "
                    f"was due {requested.due:%Y-%m-%d}; no certificate until it is given"
                )
            if not system.attested.notify:
                continue
            message = mail.compose(
                settings,
                to=system.attested.notify,
                subject=f"{'Overdue: ' if overdue else ''}{name}: {case.tenant} awaits your "
                "attestation",
                body=_reminder_body(case, name, system, requested.due, overdue),
            )
            outbox_name = f"{case.case_id}-attest-{name}-{now:%Y%m%d%H%M%S}"
            mail.send(settings, message, outbox_name=outbox_name)
            trail.record(
                events.AttestationReminded(
                    system=name,
                    recipient_domain=system.attested.notify.rpartition("@")[2],
                    overdue=overdue,
                    at=now,
                )
            )
            sent += 1
    return sent


def _reminder_body(
    case: CaseRef, name: str, system: AttestedSystem, due: datetime, overdue: bool
) -> str:
    return (
        f"The destruction of tenant {case.tenant} (case {case.case_id}) waits for you, as "
        f"{system.attested.role}, to destroy its data in {name}"
        f"{f' ({system.description})' if system.description else ''} and confirm it.\n\n"
        f"What to do: {system.attested.procedure.replace('{tenant}', case.tenant)}\n"
        f"Due: {due:%Y-%m-%d %H:%M} UTC{' (overdue)' if overdue else ''}\n\n"
        "Then confirm in the Prefect UI: open the destroy run of this case, which is Suspended, "
        "and fill in its Resume form (who, what was done, where the evidence is), or run\n"
        f"  offboard attest {case.case_id} {name} --by NAME --action TEXT --evidence REF\n"
    )
