"""Erasing one person of a tenant, for the client's erasure request (clause 2.2.7), with a
signed certificate.

Each table follows the data map's policy. Rows the person owns alone are deleted; rows others
depend on (a post with comments, a comment with answers) are kept with their personal columns
replaced, text by the request's pseudonym (`erased-` and random hex, linked to nothing) and
anything else by NULL, and their reference to the person cleared where the person's own row
goes. Everything happens in one REPEATABLE READ transaction that holds the person's row locked,
so no row can start pointing at the person meanwhile (inserting one takes a key-share lock on
it), and commits only when the construction checks out:

- every statement's condition is the tenant's own rows AND the person's key (the same scope as
  the export and the destruction), and each affected exactly the rows counted before it;
- no row outside the doomed set references a row about to be deleted (so no cascade, set-null
  or refused delete reaches someone else's row): otherwise nothing changes and the error names
  the table and foreign key to declare;
- afterwards no row of any table matches the person and the kept rows hold no personal value.

In REPEATABLE READ a statement finds its rows in the transaction's snapshot (a row changed by
someone else since fails the transaction instead), so the rows each statement changes are the
rows marked before it, and the exact counts confirm it; what a delete could do to other rows is
ruled out by the reference check. What the pipeline cannot see is a platform trigger that
writes elsewhere: the touched tables' triggers are named in the certificate. Every query is
served by the person's key and the tables' keys: the cost is the person's rows, not the
tenant's or the platform's (benchmarks/persons.py). An earlier draft compared a digest of the
tenant's other rows before and after; on a derived table that read the whole platform's table
(measured 1.4 s of a 1.5 s erasure with 200 neighbours), for nothing the snapshot and the counts
do not already prove.

The person's files go, every generation, before the commit (a rerun after a failed commit finds
them gone and goes on). Backups: the tenant's backups made by this pipeline are encrypted with
the tenant's key and hold every person, so they are re-based: a new backup, taken and checked
after the erasure, then every older one deleted. Per-person keys (crypto-shredding) would need
a backup format that encrypts each person's rows apart, which ours does not; re-basing gives
the same result with no new format. Copies the pipeline cannot rewrite (the platform's
pgBackRest repository, soft-deleted objects, the cache) are listed as lingering, dated by the
same rules as a case; systems a role erases (the data map's `attested`) are listed as requested
from that role, with the date they are due.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from graphlib import TopologicalSorter
from importlib.metadata import version
from typing import Any

import psycopg
from psycopg import sql

from offboarding.backup.backup import restore_check, take_backup
from offboarding.core.config import Settings
from offboarding.core.errors import DestructionIncompleteError, IsolationBreachError, TenantError
from offboarding.core.names import qualified, split_qualified
from offboarding.core.records import CaseRef
from offboarding.datamap import PersonScope, PgBackRestSystem, load_datamap
from offboarding.delivery.mail import compose, send
from offboarding.locations import lingering
from offboarding.locations.backups import backup_prefix
from offboarding.locations.base import PersonErased
from offboarding.locations.bundles import bundle_prefix
from offboarding.locations.pgbackrest import PgBackRestLocation
from offboarding.locations.postgres.catalog import ident
from offboarding.people import keep_statement, pseudonym
from offboarding.persons.records import archive_signed
from offboarding.persons.requests import (
    PersonRequest,
    RequestKind,
    get_request,
    mark_answered,
    to_carry_out,
)
from offboarding.persons.rows import (
    Reference,
    affect,
    count_rows,
    lock_rows,
    mark_rows,
    references_now,
)
from offboarding.persons.scope import (
    PersonSelection,
    person_conditions,
    person_files,
    person_footprint,
    require_person,
)
from offboarding.persons.systems import erasable
from offboarding.registry import TenantRegistry
from offboarding.stores import delete_every_version, delete_object_versions, open_store
from offboarding.trail.records import PersonErasureCertificate, PersonSystemAttested

__all__ = ["PersonErasure", "attest_person_system", "certificate_key", "erase_person"]

_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "citext", "name"})
_ATTEMPTS = 3


@dataclass(frozen=True)
class PersonErasure:
    """What an erasure did (counts only) and where its certificate is."""

    request: str
    tenant: str
    deleted: dict[str, int]
    pseudonymised: dict[str, int]
    files: int
    file_bytes: int
    backups_rebased: int
    certificate_key: str


def certificate_key(request: PersonRequest) -> str:
    return f"persons/{request.tenant}/{request.ref}/certificate.json"


def _replace(selection: PersonSelection, table: str, columns: list[str], text: str) -> sql.Composed:
    types = {c.name: c.type_name for c in selection.columns[table]}
    return sql.SQL(", ").join(
        sql.SQL("{} = {}").format(
            sql.Identifier(name),
            sql.Literal(text) if types[name] in _TEXT_TYPES else sql.SQL("NULL"),
        )
        for name in columns
    )


def _not_replaced(
    selection: PersonSelection, table: str, columns: list[str], text: str
) -> sql.Composable:
    """True for a kept row still holding a value of the person in one of `columns`."""
    types = {c.name: c.type_name for c in selection.columns[table]}
    schema, name = split_qualified(table)
    tests = [
        sql.SQL("{c} IS DISTINCT FROM {v}").format(
            c=sql.Identifier(schema, name, column),
            v=sql.Literal(text) if types[column] in _TEXT_TYPES else sql.SQL("NULL"),
        )
        for column in columns
    ]
    return sql.SQL(" OR ").join(tests) if tests else sql.SQL("FALSE")


def _doomed(scope: PersonScope) -> list[str]:
    """The tables whose person's rows are deleted (the person table last, if it goes), each
    after the doomed tables whose rows reference it."""
    return [t for t, p in scope.tables.items() if p.erase == "delete"] + (
        [scope.table] if scope.erase == "delete" else []
    )


def _delete_order(selection: PersonSelection, doomed: list[str]) -> list[str]:
    """Referencing tables before the tables they reference, so no delete waits on a row that
    goes later in the same transaction."""
    graph: dict[str, set[str]] = {t: set() for t in doomed}
    for table in doomed:
        for fk in selection.tables[table].foreign_keys:
            if fk.references in graph and fk.references != table:
                graph[fk.references].add(table)  # the referencing table goes first
    return list(TopologicalSorter(graph).static_order())


class _SnapshotBehind(Exception):
    """Rows of the person were committed between the transaction's snapshot and its lock."""


def _snapshot_current(
    settings: Settings, conditions: dict[str, sql.Composable], counts: dict[str, int]
) -> None:
    """The snapshot is taken at the transaction's first statement, the person's row locked a
    little later: a row pointing at the person that was being written in between committed
    after the snapshot, and the erasure cannot see it. Now that the lock holds new ones off,
    count the person's rows as committed (another connection) against what the snapshot
    marked; any difference and the erasure starts again on a fresh snapshot."""
    with psycopg.connect(settings.require_database(), autocommit=True) as fresh:
        behind = [t for t, condition in conditions.items()
                  if count_rows(fresh, t, condition) != counts[t]]  # fmt: skip
    if behind:
        raise _SnapshotBehind(", ".join(behind))


@dataclass(frozen=True)
class _Erased:
    deleted: dict[str, int]  # table -> rows deleted
    pseudonymised: dict[str, int]  # table -> rows kept, personal columns replaced
    keys: list[str]  # the person's objects, deleted
    generations: int
    file_bytes: int
    triggers: dict[str, list[str]]  # the platform's triggers on the touched tables


def _erase_rows(
    conn: psycopg.Connection[Any],
    settings: Settings,
    scope: PersonScope,
    request: PersonRequest,
    replacement: str,
    files: Any,
) -> _Erased:
    """In one transaction: check, change, verify, delete the files, commit."""
    person = str(request.person)
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '30s'")
        selection = person_conditions(conn, settings, scope, request.tenant, person)
        conditions = selection.conditions
        require_person(conn, scope, conditions, request.tenant, person)
        conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE {} FOR UPDATE").format(
                ident(scope.table), conditions[scope.table]
            )
        )
        keys = person_files(conn, scope, conditions, files, request.tenant, person, missing_ok=True)
        marked = mark_rows(conn, selection.tables, conditions)
        _require_only_the_person(conn, scope, selection, marked, person)
        counts = {t: count_rows(conn, t, marked[t]) for t in marked}
        _snapshot_current(settings, conditions, counts)
        doomed = _doomed(scope)
        cleared = frozenset(  # kept rows whose reference to the person goes with the person
            (t, (p.by,))
            for t, p in scope.tables.items()
            if p.erase == "pseudonymise" and scope.erase == "delete"
        )
        for table in doomed:
            lock_rows(conn, table, marked[table])
        blocked = references_now(
            settings.require_database(), selection.catalog,
            {t: conditions[t] for t in doomed}, cleared,
        )  # fmt: skip
        if blocked:
            raise TenantError(
                f"erasure of request {request.ref} would reach rows that are not the person's, "
                f"so nothing was changed: {' '.join(_advice(scope, r) for r in blocked)}"
            )
        pseudonymised: dict[str, int] = {}
        kept = [(t, p.personal, p.by) for t, p in scope.tables.items() if p.erase != "delete"]
        for table, personal, by in kept:
            changes = [_replace(selection, table, personal, replacement)] if personal else []
            if scope.erase == "delete":
                changes.append(sql.SQL("{} = NULL").format(sql.Identifier(by)))
            if changes and counts[table]:
                pseudonymised[table] = affect(conn, sql.SQL("UPDATE {} SET {} WHERE {}").format(
                    ident(table), sql.SQL(", ").join(changes), conditions[table]
                ), counts[table], table)  # fmt: skip
            elif counts[table]:
                pseudonymised[table] = 0
        if scope.erase == "pseudonymise" and scope.personal:
            pseudonymised[scope.table] = affect(conn, sql.SQL("UPDATE {} SET {} WHERE {}").format(
                ident(scope.table), _replace(selection, scope.table, scope.personal, replacement),
                conditions[scope.table],
            ), 1, scope.table)  # fmt: skip
        deleted: dict[str, int] = {}
        for table in _delete_order(selection, doomed):
            deleted[table] = affect(
                conn,
                sql.SQL("DELETE FROM {} WHERE {}").format(ident(table), conditions[table]),
                counts[table],
                table,
            )
        _verify(conn, selection, scope, replacement, marked)
        triggers = _triggers(conn, list(conditions))
        removed = [delete_object_versions(files, key) for key in keys]
        still = [k for k in keys if files.exists(k)]
        if still:
            raise DestructionIncompleteError(
                f"{len(still)} of the person's files are still in the files store after "
                "deletion; nothing in the database was changed. Retry the erasure"
            )
    return _Erased(
        deleted=deleted,
        pseudonymised=pseudonymised,
        keys=keys,
        generations=sum(n for n, _ in removed),
        file_bytes=sum(b for _, b in removed),
        triggers=triggers,
    )


def _advice(scope: PersonScope, reference: Reference) -> str:
    """What the operator can actually do about one blocking reference."""
    keep = (
        'erase = "pseudonymise" under [person]'
        if reference.references == scope.table
        else f'erase = "pseudonymise" under [person.tables."{reference.references}"]'
    )
    if reference.table == scope.table == reference.references:
        return (
            f"{reference}: other people's rows point at the person ({reference.constraint}, "
            f"e.g. their manager). They are not the person's and are never selected by "
            f"[person]: keep the person's row with {keep} (its personal columns are "
            "replaced, their reference stays valid), or have the client's application clear "
            "those references first."
        )
    if reference.table == scope.table or reference.table in scope.tables:
        return (
            f"{reference}: rows the erasure keeps reference rows it deletes: delete them too "
            f'(erase = "delete" for {reference.table}), or keep the referenced rows with {keep}.'
        )
    return (
        f"{reference}: keep the referenced rows with {keep}; declare {reference.table} under "
        "[person.tables] only if those rows are the person's own (a column holding the "
        "person's key)."
    )


def _require_only_the_person(
    conn: psycopg.Connection[Any],
    scope: PersonScope,
    selection: PersonSelection,
    marked: dict[str, sql.Composable],
    person: str,
) -> None:
    """Proof, inside the transaction, that the person table's rows about to change are
    exactly one: the row whose key is the person's (whatever the data map declares)."""
    schema, name = split_qualified(scope.table)
    pg_type = next(c.pg_type for c in selection.columns[scope.table] if c.name == scope.key)
    row = conn.execute(
        sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE {key} IS DISTINCT FROM {person}::{type}) "
            "FROM {table} WHERE {marked}"
        ).format(
            key=sql.Identifier(schema, name, scope.key),
            person=sql.Literal(person),
            type=sql.SQL(pg_type),
            table=ident(scope.table),
            marked=marked[scope.table],
        )
    ).fetchone()
    rows, others = (int(row[0]), int(row[1])) if row else (0, 0)
    if (rows, others) != (1, 0):
        raise IsolationBreachError(
            f"the erasure selected {rows} row(s) of {scope.table}, {others} of them not the "
            f"person's own (key {scope.key}): nothing was changed. Check [person] in the data "
            "map: the person table's rows are selected by its key alone",
            facts={
                "nature": "an erasure selected rows of the person table other than the person's "
                "(refused before any change)",
                "affected_tenants": [], "categories": [f"rows of {scope.table}"],
                "approximate_records": others, "approximate_people": others,
            },
        )  # fmt: skip


def _verify(
    conn: psycopg.Connection[Any],
    selection: PersonSelection,
    scope: PersonScope,
    replacement: str,
    marked: dict[str, sql.Composable],
) -> None:
    """Inside the transaction, before it commits: nothing of the person left."""
    conditions = selection.conditions
    left: list[str] = []
    for table in _doomed(scope):
        # Two counts, each served by an index (an OR of the two would read the whole table).
        if n := count_rows(conn, table, conditions[table]) + count_rows(conn, table, marked[table]):
            left.append(f"{n} row(s) of {table}")
    kept = {t: p.personal for t, p in scope.tables.items() if p.erase != "delete"}
    if scope.erase == "pseudonymise":
        kept[scope.table] = scope.personal
    for table, personal in kept.items():
        still = sql.SQL("{} AND ({})").format(
            marked[table], _not_replaced(selection, table, personal, replacement)
        )
        if n := count_rows(conn, table, still):
            left.append(f"{n} kept row(s) of {table} with a personal value")
        if scope.erase == "delete" and (n := count_rows(conn, table, conditions[table])):
            left.append(f"{n} kept row(s) of {table} still pointing at the person")
    if left:
        raise DestructionIncompleteError(
            "the erasure did not check out; nothing was changed: " + "; ".join(left)
        )


def _triggers(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, list[str]]:
    """The platform's own triggers on the touched tables (they ran with the erasure)."""
    pairs = [split_qualified(t) for t in tables]
    rows = conn.execute(
        "SELECT n.nspname, c.relname, t.tgname FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT t.tgisinternal AND (n.nspname, c.relname) IN "
        "(SELECT * FROM unnest(%s::text[], %s::text[])) ORDER BY 1, 2, 3",
        ([schema for schema, _ in pairs], [name for _, name in pairs]),
    ).fetchall()
    found: dict[str, list[str]] = {}
    for schema, table, name in rows:
        found.setdefault(qualified(str(schema), str(table)), []).append(str(name))
    return found


def _days(delay: timedelta) -> str:
    days = delay.total_seconds() / 86400
    return f"{days:g} day(s)" if days >= 1 else f"{delay.total_seconds() / 3600:g} hour(s)"


def _lingers(
    settings: Settings, bound: object, name: str, declared: timedelta
) -> tuple[timedelta, str]:
    """How long a system's copies of the person live on: as declared, or, for a pgBackRest
    repository, as its plug-in dates its backup sets (whichever is later)."""
    if isinstance(bound, PgBackRestSystem):
        delay, why = PgBackRestLocation(settings, name, bound).lingering_delay()
        if delay > declared:
            return delay, f"in backup sets until they expire ({why})"
    return declared, f"copies expire by themselves within {_days(declared)}"


def _rebase_backups(settings: Settings, tenant: str) -> int:
    """A fresh backup of the tenant after the erasure, restored and checked, then every older
    one deleted in every location. Returns how many older backups went (0: none existed)."""
    stores = [open_store(url) for url in settings.backup_store_urls()]
    prefix = backup_prefix(tenant)
    older = {o.key[len(prefix) :].split("/", 1)[0] for s in stores for o in s.list_objects(prefix)}
    if not older:
        return 0
    fresh = take_backup(settings, tenant)
    checks = restore_check(settings, tenant, fresh.backup_id)  # raises if it does not restore
    if not checks or any(c.backup_id != fresh.backup_id for c in checks):
        raise DestructionIncompleteError(
            f"the backup taken after the erasure ({fresh.backup_id}) did not restore in every "
            "location: the older backups are kept. Check `offboard backup check` and retry"
        )
    for backup_id in sorted(older - {fresh.backup_id}):
        for store in stores:
            delete_every_version(store, f"{prefix}{backup_id}/")
    return len(older - {fresh.backup_id})


def _withdraw_answers(settings: Settings, request: PersonRequest) -> dict[str, int]:
    """Every earlier access or portability answer about the person, in every delivery store:
    deleted (every generation), so its links answer "gone". Per request, the objects removed."""
    with TenantRegistry(settings).connect() as conn:
        rows = conn.execute(
            "SELECT ref FROM offboarding.person_requests WHERE tenant = %s AND person = %s "
            "AND kind IN ('access', 'portability') AND ref <> %s ORDER BY ref",
            (request.tenant, request.person, request.ref),
        ).fetchall()
    withdrawn: dict[str, int] = {}
    for row in rows:
        prefix = f"{bundle_prefix(request.tenant)}{row['ref']}/"
        removed = [delete_every_version(open_store(url), prefix)[2]
                   for url in settings.delivery_store_urls()]  # fmt: skip
        left = [url for url in settings.delivery_store_urls()
                if any(True for _ in open_store(url).list_objects(prefix))]  # fmt: skip
        if left:
            raise DestructionIncompleteError(
                f"request {request.ref}: the earlier answer {row['ref']} is still in "
                f"{', '.join(left)} after its deletion; the database erasure is done. Retry"
            )
        withdrawn[str(row["ref"])] = sum(removed)
    return withdrawn


def erase_person(
    settings: Settings, ref: str, *, say: Callable[[str], None] = lambda _: None
) -> PersonErasure:
    """Carry out an open erasure request; archive its signed certificate; mark it answered.
    Refused before anything changes when the erasure would reach another person's rows."""
    request, person = to_carry_out(settings, ref, (RequestKind.ERASURE,))
    tenant = TenantRegistry(settings).get(request.tenant)
    if tenant.status != "active":
        raise TenantError(
            f"tenant {request.tenant!r} is {tenant.status} (case {tenant.offboarding_case}): its "
            "data is frozen for the hand-over and goes whole at the case's destruction. Tell "
            "the client: the person's erasure comes with it, on the certificate's date"
        )
    datamap = load_datamap(settings.datamap)
    scope = datamap.require_person_scope()
    files = open_store(settings.store_url("files"))
    replacement = f"erased-{secrets.token_hex(6)}"
    started_at = datetime.now(UTC)
    # The person's pseudonym for the archive, while their key still names a row.
    named = pseudonym(settings, CaseRef(tenant=request.tenant, case_id=ref), person)
    say(f"erasing person {person} of {request.tenant}")
    person_footprint(settings, request.tenant, person)  # a person of the tenant, fully mapped
    # The systems whose plug-in erases the person go first, each final on its own; the
    # platform database last, so a refusal there leaves the request open, and a rerun finds
    # the systems before it already empty.
    by_plugin: dict[str, PersonErased] = {}
    for name, declared, location in erasable(settings, datamap, scope):
        there = location.erase_person(
            request.tenant, person, declared, replacement, person_kept=scope.erase != "delete"
        )
        by_plugin[name] = there
        say(f"{name}: {sum(there.deleted.values())} item(s) deleted, "
            f"{sum(there.pseudonymised.values())} kept with personal values replaced")  # fmt: skip
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with psycopg.connect(settings.require_database()) as conn:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                erased = _erase_rows(conn, settings, scope, request, replacement, files)
            break
        except (_SnapshotBehind, psycopg.errors.SerializationFailure) as moved:
            say(f"the person's rows changed during attempt {attempt} ({moved}): again")
            if attempt == _ATTEMPTS:
                raise TenantError(
                    f"request {ref}: the person's rows kept changing during {_ATTEMPTS} "
                    "attempts (nothing was changed): the person is still writing. Ask the "
                    "client to disable their account, then retry"
                ) from None
    deleted, kept, keys = erased.deleted, erased.pseudonymised, erased.keys
    rows_deleted, rows_kept = sum(deleted.values()), sum(kept.values())
    say(f"database and files done: {rows_deleted} rows deleted, {rows_kept} kept with their "
        f"personal columns replaced, {len(keys)} files")  # fmt: skip
    withdrawn = _withdraw_answers(settings, request)
    say(f"earlier answers about the person withdrawn: {len(withdrawn)}")
    rebased = _rebase_backups(settings, request.tenant)
    completed_at = datetime.now(UTC)
    delay, why = lingering(settings)
    systems: list[dict[str, Any]] = [
        {"name": name, "status": "erased", "method": erased_there.verification,
         "deleted": erased_there.deleted, "pseudonymised": erased_there.pseudonymised}
        for name, erased_there in by_plugin.items()
    ]  # fmt: skip
    for name, system in scope.systems.items():
        if system.by_plugin:
            continue
        if system.lingers is not None:
            delay, expires = _lingers(settings, datamap.systems.get(name), name, system.lingers)
            systems.append({"name": name, "status": "lingering", "method": expires,
                            "until": (completed_at + delay).isoformat()})  # fmt: skip
        elif system.attested is not None:
            due = completed_at + system.attested.within
            asked = f"erasure requested from the {system.attested.role}"
            systems.append({"name": name, "status": "requested", "until": due.isoformat(),
                            "method": asked})  # fmt: skip
            _notify(settings, request, name, system.attested, due, tenant.name)
        else:
            systems.append({"name": name, "status": "holds nothing of a person",
                            "method": system.holds_nothing})  # fmt: skip
    certificate = archive_signed(settings, certificate_key(request), PersonErasureCertificate(
        request=ref, tenant=request.tenant,
        person=named, received_at=request.received_at,
        due_on=request.due_on.isoformat(), started_at=started_at,
        completed_at=completed_at,
        deadline_met=completed_at.date() <= request.due_on,
        database={"deleted": deleted, "pseudonymised": kept,
                     "replacement": "text by the request's pseudonym, other values by NULL"},
        files={"objects": len(keys), "generations_deleted": erased.generations,
               "bytes": erased.file_bytes},
        earlier_answers={"requests": withdrawn,
                            "method": "every object of each earlier access or portability "
                            "answer about the person deleted in every delivery store, every "
                            "generation; their links answer gone"},
        verification="in the erasure's REPEATABLE READ transaction, before it committed: "
        "the person's rows marked by key; no other row referencing one to be deleted; each "
        "statement changed exactly the marked rows; no row of the person left in any table, "
        "no personal value in a kept row; each file absent afterwards",
        triggers=erased.triggers,
        backups={"rebased": rebased,
                    "method": "a new backup after the erasure, restored and verified, then "
                    "every older backup of the tenant deleted in every location"
                    if rebased else "the tenant had no backup made by the pipeline"},
        lingering={"until": (completed_at + delay).isoformat(), "because": why}
        if delay else None,
        systems=systems,
        tool="tenant-offboarding", tool_version=version("tenant-offboarding"),
        performed_by=settings.operator_name,
    ))  # fmt: skip
    mark_answered(settings, ref)
    return PersonErasure(
        request=ref,
        tenant=request.tenant,
        deleted=deleted,
        pseudonymised=kept,
        files=len(keys),
        file_bytes=erased.file_bytes,
        backups_rebased=rebased,
        certificate_key=str(certificate and certificate_key(request)),
    )


def _notify(
    settings: Settings, request: PersonRequest, system: str, attested: Any, due: datetime,
    tenant_name: str,
) -> None:  # fmt: skip
    """Ask the role that erases a person in `system` to do it (the person by their key)."""
    procedure = attested.procedure.replace("{tenant}", request.tenant)
    message = compose(
        settings,
        to=attested.notify,
        subject=f"Erase a person of {tenant_name} in {system} by {due:%Y-%m-%d} ({request.ref})",
        body=(
            f"The client {tenant_name} ({request.tenant}) asked for the erasure of its person "
            f"{request.person} (request {request.ref}). The database and files are done; "
            f"{system} is yours, as the {attested.role}:\n\n  {procedure}\n\n"
            f"Due by {due:%Y-%m-%d}. Then confirm with:\n"
            f"  offboard request attest {request.ref} {system} --by <you> --action <what was "
            "done> --evidence <ticket>\n"
        ),
    )
    send(settings, message, outbox_name=f"request-{request.ref}-{system}")


def attest_person_system(
    settings: Settings, ref: str, system: str, *, name: str, action: str, evidence: str
) -> str:
    """The role of an attested system confirms it erased the person there: a signed record
    beside the certificate (who, as a pseudonym; what was done; where the evidence is)."""
    request = get_request(settings, ref)
    scope = load_datamap(settings.datamap).require_person_scope()
    attested = scope.systems.get(system)
    if request.kind != RequestKind.ERASURE or request.status != "answered":
        raise TenantError(
            f"request {ref} is not a carried-out erasure ({request.kind}, {request.status}): "
            "attest a system once the erasure's certificate is issued"
        )
    if attested is None or attested.attested is None:
        named = ", ".join(n for n, s in scope.systems.items() if s.attested) or "none"
        raise TenantError(
            f"{system!r} is no attested system of the data map's [person.systems] ({named})"
        )
    said = keep_statement(settings, request.tenant, "attestation", name=name)
    key = f"persons/{request.tenant}/{ref}/attested-{system}.json"
    archive_signed(settings, key, PersonSystemAttested(
        request=ref, tenant=request.tenant,
        system=system, role=attested.attested.role, statement=said,
        by=pseudonym(settings, CaseRef(tenant=request.tenant, case_id=ref), name),
        action=action, evidence=evidence,
    ))  # fmt: skip
    return key
