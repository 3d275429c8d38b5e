"""The `offboard` command: the demo, bundle verification, and what support staff do."""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from offboarding.core.errors import IntegrityError, OffboardingError

if TYPE_CHECKING:
    from offboarding.core.config import Settings
    from offboarding.persons import PersonRequest

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from offboarding.dev.demo.run import run_demo

    def say(message: str) -> None:
        print(f"[demo] {message}", file=sys.stderr if args.json else sys.stdout, flush=True)

    result = run_demo(Path(args.home), destroy=not args.no_destroy, say=say)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        for label, value in (
            ("person requests", "; ".join(f"{k}: {v}" for k, v in result.person_requests.items())),
            ("case", result.case_id),
            ("client's download", result.bundle),
            ("link", result.link),
            ("public key", result.public_key),
            ("certificate", result.certificate),
            ("report", result.report),
            ("certificate verified", result.certificate_verified),
            ("delivery", result.delivery),
            ("timestamping", result.timestamping),
            ("tokens verified", result.timestamp_tokens_verified),
            ("backup locations", ", ".join(result.backup_locations)),
            (
                "neighbours' backups",
                "restore"
                if result.neighbours_backups_restore
                else result.neighbours_backups_restore,
            ),
            ("remaining", result.remaining),
            ("systems", result.systems),
            ("neighbours unchanged", result.neighbours_unchanged),
        ):
            print(f"{label:>21}: {value}")
        for error in result.errors:
            print(f"ERROR: {error}", file=sys.stderr)
    return 0 if result.ok else 1


def _verify(args: argparse.Namespace) -> int:
    from exporters.bundle import verify_bundle

    key = Path(args.public_key).read_bytes() if args.public_key else None
    try:
        report = verify_bundle([Path(b) for b in args.bundle], key)
    except IntegrityError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    total = len(report.manifest.parts)
    print(
        f"OK: {report.entries_checked} entries match the manifest, {report.rows} rows, "
        f"signed by {report.signature_key}"
        + ("" if total == 1 else f"; parts {report.parts_checked} of {total}")
    )
    if not report.complete:
        missing = sorted(set(range(1, total + 1)) - set(report.parts_checked))
        print(
            f"note: parts {missing} were not given; each part checked is intact, but only all "
            f"{total} together show the export is complete",
            file=sys.stderr,
        )
    if report.key_from_bundle:
        print(
            "note: checked against the key inside the bundle, which proves integrity but not "
            "origin; pass --public-key with the operator's published key",
            file=sys.stderr,
        )
    return 0


def _waiting_run(case_or_run: str) -> str:
    """The offboard flow run of a case id (or a flow run id given as is)."""
    from uuid import UUID

    from offboarding.core.config import Settings
    from offboarding.delivery.delivery import delivery_status
    from offboarding.scheduling.scheduling import case_from_id

    try:
        return str(UUID(case_or_run))
    except ValueError:
        return delivery_status(Settings(), case_from_id(case_or_run)).flow_run_id


def _refused(what: str, invalid: Exception) -> int:
    from pydantic import ValidationError

    assert isinstance(invalid, ValidationError)
    fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in invalid.errors())
    print(f"error: the {what} is refused ({fields}); nothing was sent", file=sys.stderr)
    return 2


def _ack(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.core.errors import NotWaitingError
    from offboarding.people import keep_statement
    from offboarding.runs import AcknowledgementInput

    if args.days is not None and not 0 <= args.days <= 90:
        print(
            "error: the acknowledgement is refused (--days must be 0 to 90, clause 2.3.2); "
            "nothing was sent",
            file=sys.stderr,
        )
        return 2
    run_id = _waiting_run(args.case)
    runs = PrefectRuns()
    tenant = dict(runs.waiting_cases()).get(run_id)
    if tenant is None:
        raise NotWaitingError(f"case {args.case} is not waiting for an acknowledgement")
    # Who acknowledges and the note stay in the ledger: Prefect gets the reference only.
    said = keep_statement(Settings(), tenant, "acknowledgement", name=args.by, note=args.note)
    try:
        acknowledgement = AcknowledgementInput(statement=said, days_until_destruction=args.days)
    except ValidationError as invalid:
        return _refused("acknowledgement", invalid)
    runs.resume(run_id, acknowledgement)
    print(f"acknowledged: case {args.case} resumes (flow run {run_id}; statement {said})")
    grace = Settings().destruction.grace
    if args.days is not None and timedelta(days=args.days) < grace:
        print(f"  {args.days} day(s) is sooner than the standard grace ({grace}): "
              "destruction stays at the grace until a second person approves "
              "(`offboard approvals`)")  # fmt: skip
    return 0


def _statement(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.people import keep_statement

    fields = {"name": args.name, "note": args.note, "reason": args.reason,
              "contact": args.contact, "text": args.text}  # fmt: skip
    kept = keep_statement(
        Settings(), args.tenant, args.kind, **{k: v for k, v in fields.items() if v is not None}
    )
    print(kept)
    return 0


def _attest(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from flows.adapter import resume_attestation
    from offboarding.core.config import Settings
    from offboarding.core.errors import NotWaitingError
    from offboarding.people import keep_statement
    from offboarding.runs import AttestationInput
    from offboarding.scheduling.scheduling import case_from_id, current_schedule

    case = case_from_id(args.case)
    said = keep_statement(Settings(), case.tenant, "attestation", name=args.by)
    try:
        given = AttestationInput(statement=said, action=args.action, evidence=args.evidence)
    except ValidationError as invalid:
        return _refused("attestation", invalid)
    schedule = current_schedule(Settings(), case)
    if schedule is None or schedule.flow_run_id is None:
        raise NotWaitingError(f"case {args.case} has no destruction run (not scheduled yet)")
    resume_attestation(schedule.flow_run_id, args.system, given)
    print(f"attested: {args.system} of case {args.case}; its destroy run resumes")
    return 0


def _reissue(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.delivery.delivery import send_links
    from offboarding.scheduling.scheduling import case_from_id

    issued = send_links(Settings(), case_from_id(args.case), "reissue")
    print(f"new links sent to the contact of case {args.case}; valid until {issued.expires_at}")
    return 0


def _hold(args: argparse.Namespace) -> int:
    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.people import keep_statement
    from offboarding.scheduling.scheduling import place_hold

    settings = Settings()
    said = keep_statement(settings, args.tenant, "hold", name=args.by, reason=args.reason)
    result = place_hold(settings, PrefectRuns(), args.tenant, said)
    print(
        f"legal hold placed on {result.tenant}; destruction runs cancelled: "
        f"{', '.join(result.cancelled_runs) or 'none were scheduled'}"
    )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _release(args: argparse.Namespace) -> int:
    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.people import keep_statement
    from offboarding.scheduling.scheduling import release_hold

    settings = Settings()
    said = keep_statement(settings, args.tenant, "hold", name=args.by)
    asked = release_hold(settings, PrefectRuns(), args.tenant, said, now=args.now)
    print(
        f"lifting the legal hold on {args.tenant}{' and destroying now' if args.now else ''} "
        f"waits for a second person: request {asked.ref}. The hold stays until they approve:\n"
        f"  offboard approve {asked.ref} --by NAME   (or the staff page, or the approve form)"
    )
    return 0


def _approve(args: argparse.Namespace) -> int:
    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.people import keep_statement
    from offboarding.scheduling.approvals import get_approval
    from offboarding.scheduling.scheduling import approve

    settings = Settings()
    asked = get_approval(settings, args.request)
    said = keep_statement(settings, asked.tenant, "approval", name=args.by, note=args.note)
    outcome = approve(settings, PrefectRuns(), args.request, said)
    print(f"{outcome.approval.action} of {asked.case_id or asked.tenant} approved and done")
    for schedule in outcome.rescheduled:
        print(
            f"  destruction run {schedule.flow_run_id} scheduled for "
            f"{schedule.scheduled_for:%Y-%m-%d %H:%M} UTC (deadline "
            f"{schedule.deadline:%Y-%m-%d %H:%M} UTC)"
        )
    return 0


def _approvals(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.scheduling.approvals import pending_approvals

    waiting = pending_approvals(Settings(), args.tenant)
    for approval in waiting:
        detail = ", ".join(f"{k} {v}" for k, v in approval.params.items() if k != "requested_kind")
        print(f"{approval.ref}  {approval.action:<18} {approval.case_id or approval.tenant:<32} "
              f"asked {approval.requested_at:%Y-%m-%d %H:%M}  {detail}")  # fmt: skip
    print(f"{len(waiting)} request(s) waiting for a second person")
    return 0


def _serve_links(args: argparse.Namespace) -> int:
    import uvicorn

    from flows.adapter import PrefectRuns
    from offboarding.core.config import Settings
    from offboarding.web import create_app

    app = create_app(Settings(), PrefectRuns())
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _serve_local(args: argparse.Namespace) -> int:
    from offboarding.dev.local import serve_local

    return serve_local(Path(args.home), args.port)


def _watch(args: argparse.Namespace) -> int:
    from flows.watch import case_watch

    counts = case_watch()
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def _terminate(args: argparse.Namespace) -> int:
    from flows.adapter import CONTRACT_TERMINATED, emit_contract_terminated
    from offboarding.core.config import Settings, validate_tenant_id

    tenant = validate_tenant_id(args.tenant)
    settings = Settings()
    if (
        settings.platform.database_url
    ):  # where the registry is reachable, refuse an unknown tenant now
        from offboarding.registry import TenantRegistry

        TenantRegistry(settings).get(tenant)
    reason_ref = ""
    if args.reason:  # the reason may name people: Prefect's event gets a reference
        from offboarding.people import keep_statement

        reason_ref = keep_statement(settings, tenant, "termination", reason=args.reason)
    event_id = emit_contract_terminated(tenant, reason_ref)
    print(f"emitted {CONTRACT_TERMINATED} for {tenant} (event {event_id}); the offboard "
          "deployment's trigger opens the case")  # fmt: skip
    return 0


def _setup_prefect(args: argparse.Namespace) -> int:
    from flows.adapter import (
        DESTRUCTION_LIMIT_NAME,
        EXPORT_LIMIT_NAME,
        WORK_POOL,
        set_up_prefect,
    )
    from offboarding.core.config import Settings

    settings = Settings()
    set_up_prefect(settings)
    print(
        f"work pool {WORK_POOL!r} (process) ready; concurrency limits {EXPORT_LIMIT_NAME}="
        f"{settings.export.concurrency}, {DESTRUCTION_LIMIT_NAME}="
        f"{settings.destruction.concurrency}. Next: prefect deploy --all, then "
        f"prefect worker start --pool {WORK_POOL}"
    )
    return 0


def _backup(args: argparse.Namespace) -> int:
    from offboarding.backup.backup import take_backup
    from offboarding.core.config import Settings
    from offboarding.registry import TenantRegistry

    settings = Settings()
    for tenant in args.tenant or TenantRegistry(settings).tenants(status="active"):
        result = take_backup(settings, tenant)
        print(
            f"{tenant}: backup {result.backup_id} ({result.rows} rows, {result.files} files, "
            f"key {result.key_id}) in {', '.join(result.locations)}"
        )
    return 0


def _restore_check(args: argparse.Namespace) -> int:
    from offboarding.backup.backup import restore_check
    from offboarding.core.config import Settings

    for check in restore_check(Settings(), args.tenant):
        print(
            f"OK {check.location}: backup {check.backup_id} of {check.taken_at:%Y-%m-%d %H:%M} "
            f"UTC decrypts and verifies ({check.entries} entries, {check.rows} rows)"
        )
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.core.signing import KeyList, load_public_key
    from offboarding.evidence.archive import latest_key_list, verify_archive
    from offboarding.evidence.timestamps import load_roots
    from offboarding.stores import open_store

    url = args.archive or Settings().store_url("archive")
    if "://" not in url:
        url = Path(url).resolve().as_uri()
    store = open_store(url)
    keys: KeyList
    if args.key_list:
        keys = KeyList.from_json(Path(args.key_list).read_bytes(), args.key_list)
    elif args.public_key:
        keys = KeyList.of(load_public_key(Path(args.public_key).read_bytes()))
    else:
        published = latest_key_list(store)
        pems = sorted(o.key for o in store.list_objects("keys/") if o.key.endswith(".pem"))
        if published is not None:
            where, keys = published
        elif len(pems) == 1:
            where = pems[0]
            with store.open_read(pems[0]) as handle:
                keys = KeyList.of(load_public_key(handle.read()))
        else:
            print(
                "error: give --key-list (the operator's published list of signing keys) or "
                "--public-key",
                file=sys.stderr,
            )
            return 2
        print(
            f"note: checked against {where}, stored in the archive itself, which proves "
            "integrity but not origin; pass --key-list with the operator's published list",
            file=sys.stderr,
        )
    ca = args.tsa_ca or Settings().evidence.timestamp_ca
    try:
        roots = load_roots(Path(ca)) if ca else None
        report = verify_archive(
            store, keys, tsa_roots=roots,
            require_timestamps=args.require_timestamps,
        )  # fmt: skip
    except IntegrityError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    print(
        f"OK: {report.cases} case chain(s), {report.events} events, {report.certificates} "
        f"case certificate(s) and {report.reports} report(s) verify and agree with their chains"
    )
    if report.downloads:
        print(f"OK: {report.downloads} signed download receipt(s)")
    if report.records:
        kinds = ", ".join(f"{n} {kind}" for kind, n in report.records.items())
        print(
            f"OK: {sum(report.records.values())} tenant record(s) ({kinds}) verify; "
            f"{report.record_chains} tenant chain(s) of {report.record_entries} entries name "
            "each one, none missing or moved"
            + (
                f"; {report.unchained_records} written before chaining began"
                if report.unchained_records
                else ""
            )
        )
    print(
        f"OK: signed by {len(report.signing_keys)} key(s) of the list, each within its "
        f"validity: {', '.join(sorted(report.signing_keys)) or 'none'}"
    )
    if report.anchors:
        latest = max(a.at for a in report.anchors)
        print(
            f"OK: {len(report.anchors)} RFC 3161 timestamp token(s) verify against the "
            f"authority's root and match the chains and certificates they cover (latest "
            f"{latest:%Y-%m-%d %H:%M:%S} UTC): nothing they cover was rewritten since"
        )
    if report.tokens_unchecked:
        print(
            f"note: {report.tokens_unchecked} timestamp token(s) not checked: give --tsa-ca "
            "with the timestamp authority's root certificate",
            file=sys.stderr,
        )
    if report.unanchored:
        print(
            f"note: {len(report.unanchored)} certified case(s) have no timestamp (certified "
            "before OFFBOARD_TIMESTAMP_URL was set?): their record rests on the operator's key "
            "alone",
            file=sys.stderr,
        )
    return 0


def _audit_person(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.delivery.receipts import downloads
    from offboarding.people import matches
    from offboarding.scheduling.scheduling import case_from_id
    from offboarding.trail import AuditTrail

    settings = Settings()
    case = case_from_id(args.case)
    recorded = [
        (f"event {e.seq:05d} ({e.kind}{', ' + name if name != 'by_pseudonym' else ''})", value)
        for e in AuditTrail.open(settings, case).recorded()
        for name in ("by_pseudonym", "reason_pseudonym")
        if isinstance(value := getattr(e.data, name, None), str)
    ] + [
        (f"download of {r.part} at {r.at:%Y-%m-%d %H:%M}", r.client)
        for r in downloads(settings, case)
    ]
    if not recorded:
        print(f"case {case.case_id} records no person")
        return 1
    if matches(settings, case, args.name, recorded[0][1]) is None:
        print(f"case {case.case_id}: its pseudonym key is gone (contact data forgotten after "
              "three years, clause 1.1.4): nobody can link a name to it any more")  # fmt: skip
        return 3
    found = [where for where, value in recorded if matches(settings, case, args.name, value)]
    for where in found:
        print(f"matches: {where}")
    if not found:
        print(f"no record of case {case.case_id} is this person's ({len(recorded)} checked)")
    return 0 if found else 1


def _keys(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.core.signing import load_key_list, rotate_signing_key
    from offboarding.evidence.archive import publish_key_list
    from offboarding.stores import open_store

    settings = Settings()
    if args.keys_command == "rotate":
        retired, new = rotate_signing_key(settings.keys_dir)
        print(f"retired {retired.fingerprint} at {retired.valid_until}; its private key is in "
              f"{settings.keys_dir / 'retired'}: take it offline or destroy it")  # fmt: skip
        print(f"signing now with {new.fingerprint}, introduced by the retired key's signature")
    keys = load_key_list(settings.keys_dir)
    published = publish_key_list(open_store(settings.store_url("archive"), write_once=True), keys)
    for key in keys.keys:
        until = key.valid_until.isoformat() if key.valid_until else "current"
        print(f"{key.fingerprint}  from {key.valid_from.isoformat()}  until {until}")
    print(f"published in the archive as {published}; give auditors this list "
          f"({settings.keys_dir / 'signing-keys.json'})")  # fmt: skip
    return 0


def _deadlines(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from offboarding.core.config import Settings
    from offboarding.scheduling.deadlines import case_deadlines

    cases = case_deadlines(Settings(), datetime.now(UTC))
    if args.json:
        print(json.dumps([c.__dict__ | {"flagged": c.flagged} for c in cases], default=str))
    else:
        for c in cases:
            deadline = f"{c.deadline:%Y-%m-%d %H:%M}" if c.deadline else "-"
            mark = "!" if c.flagged else " "
            print(f"{mark} {c.case_id:<28} {c.status:<15} deadline {deadline:<17} {c.note}")
    return 1 if any(c.status == "overdue" for c in cases) else 0


def _person_inventory(tenant: str, person: str, as_json: bool) -> int:
    import dataclasses

    from offboarding.core.config import Settings
    from offboarding.persons import person_footprint

    footprint = person_footprint(Settings(), tenant, person)
    if as_json:
        print(json.dumps(dataclasses.asdict(footprint), indent=2))
        return 0
    print(
        f"person {footprint.person} of tenant {footprint.tenant}: what a request would touch "
        "(nothing changed)"
    )
    print(f"  {'table':<32} {'by':<14} {'on erasure':<13} {'rows':>8} {'bytes':>10}")
    for t in footprint.tables:
        by = t.by or "(the person)"
        print(f"  {t.table:<32} {by:<14} {t.erase:<13} {t.rows:>8} {t.bytes:>10}")
    print(f"  files: {footprint.files} objects, {footprint.file_bytes} bytes")
    for name, handling in footprint.systems.items():
        print(f"  {name}: {handling}")
    print(f"  total: {footprint.rows} rows, {footprint.files} files")
    return 0


def _show_request(request: PersonRequest) -> None:
    person = request.person or "(the client identifies them)"
    extended = " (extended)" if request.extended_by else ""
    print(
        f"{request.ref}  {request.tenant:<14} {request.kind:<13} {request.origin:<6} "
        f"{request.status:<9} person {person:<10} due {request.due_on}{extended}"
    )


def _request(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from offboarding.core.config import Settings
    from offboarding.persons import (
        close_request,
        extend_request,
        forward_direct_request,
        list_requests,
        open_request,
    )

    settings = Settings()
    if args.action == "open":
        request = open_request(settings, args.tenant, args.person, args.kind)
        _show_request(request)
        print(f"recorded; due by {request.due_on} (one month from receipt, clause 2.2.7)")
    elif args.action == "direct":
        request = forward_direct_request(
            settings, args.tenant, args.kind, name=args.name, contact=args.contact,
            text=args.text or "",
        )  # fmt: skip
        _show_request(request)
        print("forwarded to the client's contact, not executed: the request is the client's")
    elif args.action == "run":
        return _carry_out(settings, args.ref)
    elif args.action == "emit":
        from flows.adapter import PERSON_REQUEST, emit_person_request

        event_id = emit_person_request(args.tenant, args.person, args.kind)
        print(f"{PERSON_REQUEST} event {event_id} sent: the person-request deployment records "
              "and carries out the request")  # fmt: skip
    elif args.action == "attest":
        from offboarding.persons.erasure import attest_person_system

        key = attest_person_system(settings, args.ref, args.system, name=args.by,
                                   action=args.action_done, evidence=args.evidence)  # fmt: skip
        print(f"recorded: {key} in the archive")
    elif args.action == "close":
        request = close_request(settings, args.ref, name=args.by, note=args.note or "")
        _show_request(request)
        print("closed on the administrator's word; a signed record is in the archive")
    elif args.action == "extend":
        request = extend_request(settings, args.ref, name=args.by, reason=args.reason)
        _show_request(request)
        print(f"extended once, to {request.due_on}; the reason is kept in the ledger")
    else:
        today = datetime.now(UTC).date()
        requests = list_requests(settings, args.tenant)
        for request in requests:
            print(("! " if request.overdue(today) else "  "), end="")
            _show_request(request)
        overdue = sum(r.overdue(today) for r in requests)
        print(f"{len(requests)} request(s), {overdue} overdue")
        return 1 if overdue else 0
    return 0


def _retention(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.persons.retention import list_rules, retire_rule, run_rules, set_rule

    settings = Settings()
    if args.action == "set":
        made = set_rule(settings, args.tenant, args.table, args.age_column, args.period,
                        name=args.by, files=args.files)  # fmt: skip
        print(f"{made.ref}: {made.target} rows older than {made.period} by {made.age_column} "
              "are deleted at each daily run")  # fmt: skip
    elif args.action == "retire":
        retired = retire_rule(settings, args.tenant, args.rule, name=args.by)
        print(f"{retired.ref} retired; a signed record is in the archive")
    elif args.action == "list":
        listed = list_rules(settings, args.tenant)
        for r in listed:
            state = f"retired {r.retired_at:%Y-%m-%d}" if r.retired_at else "active"
            last = (f"last run {r.last_run_at:%Y-%m-%d %H:%M}, {r.last_deleted} deleted"
                    if r.last_run_at else "not run yet")  # fmt: skip
            print(f"{r.ref}  {r.tenant:<14} {r.target:<28} {r.age_column:<14} {r.period:<10} "
                  f"{state:<18} {last}")  # fmt: skip
            if r.last_refusal:
                print(f"    last run refused: {r.last_refusal}")
        print(f"{len(listed)} rule(s)")
    else:
        runs = run_rules(settings, args.tenants or None, say=print)
        refused = sum(1 for run in runs for r in run.results if r.refused)
        for run in runs:
            if run.skipped:
                print(f"{run.tenant}: rules not run ({run.skipped})")
        refused += sum(1 for run in runs if run.failed)
        print(f"{len(runs)} tenant(s), "
              f"{sum(r.deleted for run in runs for r in run.results)} row(s) deleted, "
              f"{refused} rule(s) refused")  # fmt: skip
        return 1 if refused else 0
    return 0


def _contacts(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from offboarding.core.config import Settings
    from offboarding.persons.contacts import attest_contacts_system, contacts_due, forget_contacts

    settings = Settings()
    if args.action == "due":
        due = contacts_due(settings, datetime.now(UTC).date())
        for tenant, on in due:
            print(f"{tenant:<20} due {on}")
        print(f"{len(due)} former client(s) due")
        return 0
    if args.action == "attest":
        key = attest_contacts_system(settings, args.tenant, args.system, action=args.action_done,
                                     evidence=args.evidence)  # fmt: skip
        print(f"recorded: {key} in the archive")
        return 0
    done = forget_contacts(settings, args.tenant, say=print)
    print(f"record {done.record_key} in the archive")
    return 0


def _carry_out(settings: Settings, ref: str) -> int:
    """An open request, carried out here by its kind's handler (as the deployment does)."""
    from offboarding.persons import get_request
    from offboarding.persons.carry import carry_out

    request = get_request(settings, ref)
    if not request.kind.by_the_pipeline:
        print(
            f"request {ref} is a {request.kind} request: the client's administrator carries it "
            "out in the application (the pipeline copies and erases a person's data; it does "
            "not edit it). It stays on the deadline watch until answered",
            file=sys.stderr,
        )
        return 2
    print(carry_out(settings, ref, say=functools.partial(print, flush=True)).summary)
    return 0


def _inventory(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.export.export import dry_run_inventory

    if args.person is not None:
        return _person_inventory(args.tenant, args.person, args.json)
    inventory = dry_run_inventory(Settings(), args.tenant)
    unclassified = [t for loc in inventory.locations for t in loc.unclassified]
    if args.json:
        print(inventory.model_dump_json(indent=2))
        return 1 if unclassified else 0
    print(f"inventory of tenant {inventory.tenant} (dry run: nothing frozen or exported)")
    print(f"  {'table':<40} {'scope':<9} {'rows':>10} {'bytes':>12}")
    for table in inventory.tables:
        print(
            f"  {table.qualified:<40} {table.scope:<9} {table.rows:>10} {table.bytes_estimate:>12}"
        )
    referenced = sum(f.referenced for f in inventory.files)
    print(
        f"  files: {len(inventory.files)} objects, {inventory.total_file_bytes} bytes "
        f"({referenced} referenced by rows)"
    )
    for loc in inventory.locations:
        for name, reason in {**loc.global_tables, **loc.excluded_tables}.items():
            print(f"  not exported: {name} ({reason})")
    for name in unclassified:
        print(f"  UNCLASSIFIED: {name} (a case would stop here; classify it in the settings)")
    for warning in (w for loc in inventory.locations for w in loc.warnings):
        print(f"  WARNING: {warning}")
    return 1 if unclassified else 0


def _datamap_check(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.locations.reach import check_datamap

    datamap, checks = check_datamap(Settings())
    if args.json:
        print(json.dumps({"datamap": datamap.source, "ok": all(c.ok for c in checks),
                          "systems": [c.__dict__ for c in checks]}, indent=2))  # fmt: skip
        return 0 if all(c.ok for c in checks) else 1
    print(f"data map {datamap.source}: {len(checks)} systems")
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(
            f"  {'ok' if c.ok else '!!'} {c.name:<{width}}  {c.binding:<28} {c.status}: {c.detail}"
        )
    failed = [c.name for c in checks if not c.ok]
    if failed:
        print(f"a case would stop at its inventory: {', '.join(failed)} (see above)")
        return 1
    print("every system is bound and answered: cases can take their inventory")
    return 0


@contextlib.contextmanager
def _parts_bar() -> Iterator[Callable[[int, int, int], None]]:
    """A progress bar of the export's parts on a terminal (rich); silent when stderr is not
    one (logs, CI), where the stage lines and the summary say enough."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("\\[export] table parts", markup=True),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("parts", total=None, rows=0)

        def advance(done: int, total: int, rows: int) -> None:
            bar.update(task, completed=done, total=total, rows=rows)

        yield advance


def _export(args: argparse.Namespace) -> int:
    from offboarding.core.config import Settings
    from offboarding.export.export import export_copy

    def say(message: str) -> None:
        print(f"[export] {message}", file=sys.stderr, flush=True)

    started = time.monotonic()
    with _parts_bar() as progress:
        result = export_copy(Settings(), args.tenant, Path(args.out), say=say, progress=progress)
    if args.json:
        print(
            json.dumps(
                {
                    "tenant": result.tenant,
                    "snapshot_time": result.snapshot_time.isoformat(),
                    "manifest_sha256": result.manifest_sha256,
                    "rows": result.rows,
                    "files": result.files,
                    "tables": result.tables,
                    "entries": result.entries,
                    "parts": [p.model_dump() for p in result.parts],
                },
                indent=2,
            )
        )
        return 0
    snapshot = f"{result.snapshot_time:%Y-%m-%d %H:%M:%S}"
    print(
        f"verified copy of tenant {result.tenant} (snapshot {snapshot} UTC): {result.rows:,} "
        f"rows in {result.tables} tables, {result.files:,} files, {result.entries:,} entries, "
        f"in {time.monotonic() - started:.1f} s"
    )
    for part in result.parts:
        print(f"  {part.sha256}  {part.path}  ({part.size:,} bytes)")
    print("check it with: offboard verify <every part> --public-key <the operator's key>")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offboard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run one whole case on the embedded default")
    demo.add_argument("--json", action="store_true", help="print one JSON object at the end")
    demo.add_argument(
        "--no-destroy", action="store_true", help="stop once delivered, waiting for the ack"
    )
    demo.add_argument("--home", default=".offboard/demo", help="working directory of the demo")
    demo.set_defaults(run=_demo)

    verify = commands.add_parser("verify", help="check a bundle's signature and checksums")
    verify.add_argument("bundle", nargs="+", help="the .zip bundle, or all its parts")
    verify.add_argument("--public-key", help="the operator's published public key (PEM)")
    verify.set_defaults(run=_verify)

    inventory = commands.add_parser(
        "inventory", help="dry run: what a case would export for TENANT, and what blocks it"
    )
    inventory.add_argument("tenant")
    inventory.add_argument("--json", action="store_true", help="print the inventory as JSON")
    inventory.add_argument(
        "--person",
        metavar="REF",
        help="what a request about one person (their key in the data map's person table) "
        "would touch, instead of the whole tenant",
    )
    inventory.set_defaults(run=_inventory)

    export = commands.add_parser(
        "export",
        help="write a verified bundle of an active tenant to a folder (no freeze, no case)",
        description="A copy of a tenant's data at any time during the contract (portability, "
        "clause 2.2.7): the case's own export, packaging and verification, without freezing "
        "the tenant, delivering anything or opening a case.",
    )
    export.add_argument("tenant")
    export.add_argument("--out", required=True, help="folder for the bundle's ZIP part(s)")
    export.add_argument("--json", action="store_true", help="print the parts as JSON")
    export.set_defaults(run=_export)

    ack = commands.add_parser("ack", help="acknowledge receipt for a waiting case")
    ack.add_argument("case", help="the case id (e.g. acme-0123456789ab) or its flow run id")
    ack.add_argument("--by", required=True, help="who acknowledges")
    ack.add_argument("--days", type=int, help="days until destruction (0-90)")
    ack.add_argument("--note", help="optional note")
    ack.set_defaults(run=_ack)

    statement = commands.add_parser(
        "statement",
        help="keep what a person said (name, note, reason) in the ledger; prints the reference "
        "that Prefect's forms and flow parameters take instead",
    )
    statement.add_argument("tenant")
    statement.add_argument(
        "kind",
        choices=["acknowledgement", "termination", "attestation", "hold", "postponement",
                 "request", "extension", "answer", "rule", "approval"],
    )  # fmt: skip
    statement.add_argument("--name", help="who makes the statement")
    statement.add_argument("--note", help="acknowledgement: the optional note")
    statement.add_argument("--reason", help="termination, hold or extension: why")
    statement.add_argument("--contact", help="request (sent directly): how to reach the person")
    statement.add_argument("--text", help="request (sent directly): what they asked")
    statement.set_defaults(run=_statement)

    attest = commands.add_parser(
        "attest", help="confirm an attested system's destruction for a waiting destroy run"
    )
    attest.add_argument("case", help="the case id, e.g. acme-0123456789ab")
    attest.add_argument("system", help="the data map's name of the attested system")
    attest.add_argument(
        "--by", required=True, help="who did it (kept in the ledger; the record has a pseudonym)"
    )
    attest.add_argument("--action", required=True, help="what was done (no personal data)")
    attest.add_argument("--evidence", required=True, help="where the proof is kept")
    attest.set_defaults(run=_attest)

    request = commands.add_parser(
        "request", help="a request about one person of a tenant (clause 2.2.7), and deadlines"
    )
    request_actions = request.add_subparsers(dest="action", required=True)
    from offboarding.persons.requests import CARRIED_OUT_KINDS, REQUEST_KINDS

    kinds = [str(kind) for kind in REQUEST_KINDS]
    opened = request_actions.add_parser("open", help="the client's request: record it")
    opened.add_argument("tenant")
    opened.add_argument("person", help="the person's key in the data map's person table")
    opened.add_argument("--kind", required=True, choices=kinds)
    direct = request_actions.add_parser(
        "direct", help="a person wrote to us: record and forward it to the client, do nothing"
    )
    direct.add_argument("tenant")
    direct.add_argument("--kind", required=True, choices=kinds)
    direct.add_argument("--name", required=True, help="who wrote")
    direct.add_argument("--contact", required=True, help="their address, for the client")
    direct.add_argument("--text", help="what they asked, in their words")
    run = request_actions.add_parser(
        "run", help="carry out an open request: access/portability answer, or erasure"
    )
    run.add_argument("ref", help="the request's reference, pr-...")
    emitted = request_actions.add_parser(
        "emit", help="send the tenant.person.request event, as the client's console does"
    )
    emitted.add_argument("tenant")
    emitted.add_argument("person", help="the person's key in the data map's person table")
    emitted.add_argument("--kind", required=True, choices=[str(k) for k in CARRIED_OUT_KINDS])
    attest_person = request_actions.add_parser(
        "attest", help="a role confirms an erasure in an attested system (helpdesk, search)"
    )
    attest_person.add_argument("ref", help="the erasure request's reference, pr-...")
    attest_person.add_argument("system", help="the data map's [person.systems] name")
    attest_person.add_argument("--by", required=True, help="who did it (kept as a pseudonym)")
    attest_person.add_argument("--action", dest="action_done", required=True,
                               help="what was done (no personal data)")  # fmt: skip
    attest_person.add_argument("--evidence", required=True, help="where the evidence is")
    close = request_actions.add_parser(
        "close", help="a rectification or restriction the client carried out: close it"
    )
    close.add_argument("ref", help="the request's reference, pr-...")
    close.add_argument("--by", required=True, help="the client's administrator who did it")
    close.add_argument("--note", help="what was done (no personal data)")
    extend = request_actions.add_parser("extend", help="extend the deadline once, by 2 months")
    extend.add_argument("ref", help="the request's reference, pr-...")
    extend.add_argument("--reason", required=True, help="why (complexity, number of requests)")
    extend.add_argument("--by", default=getpass.getuser(), help="who extends it")
    listed = request_actions.add_parser("list", help="requests and deadlines; exit 1 if overdue")
    listed.add_argument("tenant", nargs="?")
    request.set_defaults(run=_request)

    retention = commands.add_parser(
        "retention", help="the clients' retention rules (clause 2.2.2): set, retire, list, run"
    )
    retention_actions = retention.add_subparsers(dest="action", required=True)
    rule = retention_actions.add_parser("set", help="record a rule the client asked for")
    rule.add_argument("tenant")
    rule.add_argument("table", help="schema.table, e.g. public.chat_messages")
    rule.add_argument("--age-column", required=True, help="the column dating each row")
    rule.add_argument("--period", required=True, help="e.g. '1 year', '6 months', '90 days'")
    rule.add_argument("--files", help="the column naming each row's object, deleted with it")
    rule.add_argument("--by", required=True, help="who at the client asked")
    retire = retention_actions.add_parser("retire", help="stop a rule")
    retire.add_argument("tenant")
    retire.add_argument("rule", help="the rule's reference, rr-...")
    retire.add_argument("--by", required=True, help="who at the client asked")
    rules = retention_actions.add_parser("list", help="the rules, and when each last ran")
    rules.add_argument("tenant", nargs="?")
    run_rules = retention_actions.add_parser("run", help="run the rules now (as the flow does)")
    run_rules.add_argument("tenants", nargs="*")
    retention.set_defaults(run=_retention)

    contacts = commands.add_parser(
        "contacts", help="former clients' contacts, three years on (clause 1.1.4)"
    )
    contacts_actions = contacts.add_subparsers(dest="action", required=True)
    contacts_actions.add_parser("due", help="former clients whose contacts are due to go")
    forget = contacts_actions.add_parser("forget", help="remove them now (only once due)")
    forget.add_argument("tenant")
    confirm = contacts_actions.add_parser(
        "attest", help="a role confirms it erased the contacts in one of the operator's systems"
    )
    confirm.add_argument("tenant")
    confirm.add_argument("system", help="the data map's [contacts.systems] name")
    confirm.add_argument("--action", dest="action_done", required=True, help="what was done")
    confirm.add_argument("--evidence", required=True, help="where the evidence is (a ticket)")
    contacts.set_defaults(run=_contacts)

    reissue = commands.add_parser("reissue", help="send the contact new download links")
    reissue.add_argument("case", help="the case id, e.g. acme-0123456789ab")
    reissue.set_defaults(run=_reissue)

    hold = commands.add_parser("hold", help="place a legal hold: cancel scheduled destruction")
    hold.add_argument("tenant")
    hold.add_argument("--reason", required=True, help="e.g. the court order's reference")
    hold.add_argument("--by", default=getpass.getuser(), help="who places the hold")
    hold.set_defaults(run=_hold)

    release = commands.add_parser(
        "release", help="ask to lift a legal hold (a second person approves: offboard approve)"
    )
    release.add_argument("tenant")
    release.add_argument("--by", default=getpass.getuser(), help="who asks to lift the hold")
    release.add_argument(
        "--now", action="store_true", help="destroy at once, even past the deadline"
    )
    release.set_defaults(run=_release)

    approval = commands.add_parser(
        "approve", help="approve, as a second person, a request that shortens a protection"
    )
    approval.add_argument("request", help="the request's reference, ap-...")
    approval.add_argument("--by", default=getpass.getuser(), help="who approves (not who asked)")
    approval.add_argument("--note", help="why, for the record (kept in the ledger)")
    approval.set_defaults(run=_approve)

    approvals = commands.add_parser("approvals", help="requests waiting for a second person")
    approvals.add_argument("tenant", nargs="?")
    approvals.set_defaults(run=_approvals)

    serve_links = commands.add_parser(
        "serve-links", help="serve local download links and the acknowledgement page"
    )
    serve_links.add_argument("--host", default="127.0.0.1")
    serve_links.add_argument("--port", type=int, default=8765)
    serve_links.set_defaults(run=_serve_links)

    terminate = commands.add_parser(
        "terminate", help="emit tenant.contract.terminated: the platform's signal to start a case"
    )
    terminate.add_argument("tenant")
    terminate.add_argument("--reason", default="", help="why the contract ended (recorded)")
    terminate.set_defaults(run=_terminate)

    setup = commands.add_parser(
        "setup-prefect", help="create the work pool and the concurrency limits on the server"
    )
    setup.set_defaults(run=_setup_prefect)

    backup = commands.add_parser("backup", help="back up tenants now (default: every active one)")
    backup.add_argument("tenant", nargs="*")
    backup.set_defaults(run=_backup)

    restore = commands.add_parser(
        "restore-check", help="decrypt and verify the newest backup in every location"
    )
    restore.add_argument("tenant")
    restore.set_defaults(run=_restore_check)

    audit = commands.add_parser("audit", help="auditors' checks of the archive")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_verify = audit_commands.add_parser(
        "verify", help="check every signature, chain and certificate, offline"
    )
    audit_verify.add_argument("archive", nargs="?", help="archive directory or store URL")
    audit_verify.add_argument("--public-key", help="the operator's published public key (PEM)")
    audit_verify.add_argument(
        "--key-list",
        help="the operator's published list of signing keys (signing-keys.json): every "
        "signature must be by a listed key, within its validity period",
    )
    audit_verify.add_argument(
        "--tsa-ca",
        help="the timestamp authority's root certificate(s), PEM (default: "
        "OFFBOARD_TIMESTAMP_CA): every timestamp token is checked against it",
    )
    audit_verify.add_argument(
        "--require-timestamps",
        action="store_true",
        help="fail when a certified case has no timestamp token",
    )
    audit_verify.set_defaults(run=_audit_verify)
    audit_person = audit_commands.add_parser(
        "person",
        help="whether a name (or address) is one a case's pseudonyms stand for (the operator "
        "only, while the case's key exists)",
    )
    audit_person.add_argument("case", help="the case id, e.g. acme-0123456789ab")
    audit_person.add_argument("name", help="the name or address to test")
    audit_person.set_defaults(run=_audit_person)

    keys = commands.add_parser("keys", help="the operator's signing keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_commands.add_parser(
        "list", help="the keys with their validity periods; publishes the list in the archive"
    ).set_defaults(run=_keys)
    keys_commands.add_parser(
        "rotate", help="retire the signing key; the new one is introduced by the old"
    ).set_defaults(run=_keys)

    deadlines = commands.add_parser("deadlines", help="every case against its 90-day deadline")
    deadlines.add_argument("--json", action="store_true")
    deadlines.set_defaults(run=_deadlines)

    local = commands.add_parser(
        "serve-local", help="a local Prefect server with the UI, every deployment and a worker"
    )
    local.add_argument("--home", default=".offboard/serve")
    local.add_argument("--port", type=int, default=4200, help="the Prefect UI/API port")
    local.set_defaults(run=_serve_local)

    watch = commands.add_parser("watch", help="follow up waiting cases once (reminders, expiry)")
    watch.set_defaults(run=_watch)

    datamap = commands.add_parser("datamap", help="the data map of the platform's systems")
    datamap_commands = datamap.add_subparsers(dest="datamap_command", required=True)
    datamap_check = datamap_commands.add_parser(
        "check", help="validate OFFBOARD_DATAMAP and reach every bound system"
    )
    datamap_check.add_argument("--json", action="store_true")
    datamap_check.set_defaults(run=_datamap_check)
    return parser


def _unexpected(error: Exception) -> str:
    """An error the pipeline did not raise itself, as one line that says what to check."""
    import psycopg

    first = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, psycopg.OperationalError):
        return (
            f"the platform database did not answer ({first}). Check OFFBOARD_DATABASE_URL "
            "(host, port, dbname, user) and that the server is running and reachable"
        )
    if isinstance(error, psycopg.Error):
        return f"the platform database refused a statement: {first}"
    return f"{type(error).__name__}: {first}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except OffboardingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if os.environ.get("OFFBOARD_DEBUG"):
            raise
        print(f"error: {_unexpected(error)}", file=sys.stderr)
        print("(set OFFBOARD_DEBUG=1 for the full traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
