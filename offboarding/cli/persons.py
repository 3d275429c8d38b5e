"""`offboard` commands. Requests about one person, the client's retention rules, and a former
client's contacts."""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from offboarding.core.config import Settings
    from offboarding.persons import PersonRequest

__all__ = ["person_inventory", "register"]


def person_inventory(tenant: str, person: str, as_json: bool) -> int:
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
    print(f"  {'table':<32} {'column':<14} {'on erasure':<13} {'rows':>8} {'bytes':>10}")
    for t in footprint.tables:
        by = t.by or "(the person)"
        kind = t.erase if t.own else f"link: {t.erase}"
        size = t.bytes if t.own else ""
        print(f"  {t.table:<32} {by:<14} {kind:<13} {t.rows:>8} {size:>10}")
    print(f"  files: {footprint.files} objects, {footprint.file_bytes} bytes")
    for name, handling in footprint.systems.items():
        print(f"  {name}: {handling}")
    print(f"  total: {footprint.rows} rows of the person, {footprint.linked} rows of others "
          f"linking to them, {footprint.files} files")  # fmt: skip
    if footprint.refusals:
        print(f"  an erasure would be refused ({len(footprint.refusals)}), before anything "
              "changes:")  # fmt: skip
        for refusal in footprint.refusals:
            print(f"    - {refusal}")
    else:
        print("  an erasure would meet no refusal")
    return 0


def _predict(settings: Settings, request: PersonRequest) -> None:
    """What the erasure would refuse, said when the request is opened, so it is settled
    before the request is run (nothing is asked of anyone until then)."""
    from offboarding.persons import person_footprint

    assert request.person is not None
    refusals = person_footprint(settings, request.tenant, request.person).refusals
    if not refusals:
        print("the erasure would meet no refusal: run it with offboard request run " + request.ref)
        return
    print(f"the erasure would be refused ({len(refusals)}); settle these, then run it:")
    for refusal in refusals:
        print(f"  - {refusal}")


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
        if request.kind == "erasure":
            _predict(settings, request)
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


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's commands to the `offboard` parser."""
    _register_request(commands)
    _register_retention(commands)
    _register_contacts(commands)


def _register_request(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _register_retention(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _register_contacts(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
