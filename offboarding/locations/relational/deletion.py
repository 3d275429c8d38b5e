"""Step 3 of a relational destruction, for any SQL database: the listed rows deleted, children
first, in bounded batches.

Tables go in the one deletion order (planning.deletion_order: a table before every table it
references). Each table's list is cut into `ord` windows of `batch_rows`; the rows of
reference cycles go last and together. A batch is one transaction:
- where some key of the database would cascade into, or null, a row referencing the table
  (ON DELETE CASCADE / SET NULL / SET DEFAULT), the window's rows are locked and the proof's
  reference check is run again for them, so a row written since the proof stops the batch
  instead of being changed silently;
- where a reference the data map declares points into the table (the database does nothing
  for it: a row written since the proof would be orphaned silently), the same check runs for
  the window, without locking it. A declared reference takes no lock in the database, so a
  writer can still slip a row in between that check and the batch's commit: the tenant's
  freeze, and other tenants having no business naming its rows, are what close that gap;
- through a key ON DELETE NO ACTION / RESTRICT, the database refuses the delete of a row still
  referenced: the batch is rolled back, and the rows written since the proof that reference
  it are found and named (an incident where they are another tenant's);
- the delete returns the deleted rows' owner columns, and a row that is not the tenant's
  rolls the batch back and stops the case as an incident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from offboarding.core.errors import (
    ConfigurationError,
    DestructionIncompleteError,
    IsolationBreachError,
    UnclassifiedDataError,
)
from offboarding.core.faults import crash_point
from offboarding.core.records import CaseRef
from offboarding.locations.relational.engine import (
    CHANGES_REFERENCING,
    Engine,
    IsolationProof,
    KeyRefusal,
    Listed,
    Reference,
    Window,
)
from offboarding.locations.relational.proof import find_references
from offboarding.planning import CatalogTable, deletion_order

__all__ = ["delete_listed", "late_reference", "windows"]

# How a table's batches are guarded (`_hazard`): "locked", "checked", or "" (the database).
Hazard = Literal["locked", "checked", ""]


def windows(listed: Listed, batch_rows: int) -> list[Window]:
    """The list's batches: `ord` ranges of `batch_rows`, the cycles' rows in one last batch."""
    size = max(1, batch_rows)
    ordered = listed.rows - listed.cyclic
    batches = [
        Window(listed.table, low, min(low + size, ordered)) for low in range(0, ordered, size)
    ]
    if listed.cyclic:
        batches.append(Window(listed.table, ordered, listed.rows))
    return batches


def late_reference(engine: Engine[Any], case: CaseRef, blocked: list[Reference]) -> None:
    """A row written since the proof references the batch's rows through a key that would
    change it: the batch is rolled back (an incident where the row names another tenant)."""
    lines = "; ".join(r.describe() for r in blocked)
    message = (
        f"system {engine.system!r}: rows written since the check reference tenant "
        f"{case.tenant!r}'s rows: {lines}. That batch was rolled back, nothing of it deleted; "
        "settle those rows, then rerun the destruction"
    )
    others = sorted({t for r in blocked for t in r.tenants if t != case.tenant})
    if others:
        raise IsolationBreachError(
            message,
            facts={
                "nature": "rows of other tenants began referencing the offboarded tenant's rows "
                "during its destruction; deleting would have changed them (rolled back)",
                "affected_tenants": others,
                "categories": sorted({r.table for r in blocked}),
                "approximate_records": sum(r.rows for r in blocked),
                "approximate_people": None,
            },
        )
    raise DestructionIncompleteError(message)


def _stray(engine: Engine[Any], case: CaseRef, table: str, stray: int) -> None:
    raise IsolationBreachError(
        f"system {engine.system!r}: a delete of {table} returned {stray} row(s) that are not "
        f"tenant {case.tenant!r}'s; the statement was rolled back and destruction stopped. "
        "Find what re-used the tenant's keys since the freeze",
        facts={
            "nature": "a row listed for deletion no longer belonged to the offboarded tenant "
            "when it was deleted (rolled back)",
            "affected_tenants": [],
            "categories": [table],
            "approximate_records": stray,
            "approximate_people": None,
        },
    )


def _refused(
    engine: Engine[Any], case: CaseRef, proof: IsolationProof, window: Window, refusal: KeyRefusal
) -> None:
    """The database refused the batch (rolled back): the rows written since the proof that
    reference its rows, found and named (an incident where they are another tenant's)."""
    with engine.batch():
        _, references = find_references(engine, proof.doomed, window)
    blocked = [r for r in references if not r.allowed]
    if blocked:
        late_reference(engine, case, blocked)
    raise DestructionIncompleteError(
        f"system {engine.system!r}: deleting tenant {case.tenant!r}'s rows of {window.table} "
        f"was refused by {refusal.constraint} on {refusal.table} ({refusal.detail}): a row "
        "outside the tenant's scope references them. That batch was rolled back; settle that "
        "row, then rerun the destruction: its check names the rows"
    ) from refusal


def _detached(proof: IsolationProof, references: list[Reference]) -> None:
    """What a batch's check finds left in place, as the data map allows, through a declared
    reference (rows of excluded tables another system covers): the proof before deleting left
    those keys to the batches, so their rows are added up here, for the certificate."""
    for found in references:
        if not found.allowed or found.on_delete != "x":
            continue
        same = [n for n, r in enumerate(proof.detached) if r.constraint == found.constraint]
        if not same:
            proof.detached.append(found)
            continue
        known = proof.detached[same[0]]
        proof.detached[same[0]] = replace(
            known,
            rows=known.rows + found.rows,
            tenants=tuple(sorted({*known.tenants, *found.tenants})),
        )


def _delete_table(
    engine: Engine[Any],
    case: CaseRef,
    proof: IsolationProof,
    listed: Listed,
    batch_rows: int,
    hazard: Hazard,
) -> int:
    engine.before_deleting(listed)
    deleted = 0
    for window in windows(listed, batch_rows):
        try:
            with engine.batch():
                if hazard:
                    if hazard == "locked":
                        engine.lock(listed, window)
                    _, references = find_references(engine, proof.doomed, window, leave="refused")
                    blocked = [r for r in references if not r.allowed]
                    if blocked:
                        late_reference(engine, case, blocked)
                    _detached(proof, references)
                count, stray = engine.delete(listed, window, proof)
                if stray:
                    _stray(engine, case, listed.table, stray)
        except KeyRefusal as refusal:
            _refused(engine, case, proof, window, refusal)
        crash_point(f"{engine.kind}:batch-deleted")
        deleted += count
    return deleted


def _order(by_name: Mapping[str, CatalogTable], proof: IsolationProof) -> list[str]:
    """Children before parents; where declared references close a cycle (the database binds
    none of them), by its foreign keys alone."""

    def parents(declared: bool) -> dict[str, set[str]]:
        return {
            name: {
                fk.references
                for fk in by_name[name].foreign_keys
                if fk.references in proof.doomed and (declared or not fk.declared)
            }
            for name in proof.doomed
        }

    try:
        return deletion_order(parents(declared=True))
    except UnclassifiedDataError:
        return deletion_order(parents(declared=False))


def pseudonymise(engine: Engine[Any], table: str) -> int:
    """A shared entity's rows that no other tenant links, kept with their personal columns
    replaced, while the tenant's memberships still say which they are (before any delete; the
    same pseudonyms at every attempt)."""
    scope, d = engine.scope, engine.dialect
    entity = scope.classification.entities[table]
    key = d.fill("({k})", k=d.join([d.column(table, None, k) for k in entity.key], ", "))
    assignments = d.join(
        [
            d.fill("{c} = {v}", c=d.alias(c), v=scope.dialect.pseudonym(key))
            for c in entity.personal
        ],
        ", ",
    )
    statement = d.fill(
        "UPDATE {t} SET {a} WHERE {w}", t=d.table(table), a=assignments, w=scope.unshared(table)
    )
    try:
        return engine.execute(statement)
    except Exception as error:  # the database's own refusal, said with the fix
        raise ConfigurationError(
            f"system {engine.system!r}: the personal columns of shared entity {table} "
            f"({', '.join(entity.personal)}) could not be replaced: "
            f"{str(error).strip().splitlines()[0]}. They must be text columns (a pseudonym is "
            "'erased-' and a digest of the row's key)"
        ) from None


def delete_listed(
    engine: Engine[Any], case: CaseRef, proof: IsolationProof, batch_rows: int
) -> dict[str, int]:
    """Every listed table, children first, in batches; rows deleted per table (also recorded
    in `proof.deleted`)."""
    by_name = {t.qualified: t for t in engine.tables}
    for entity in engine.scope.classification.pseudonymised:
        proof.pseudonymised[entity] = pseudonymise(engine, entity)
    for table in _order(by_name, proof):
        proof.deleted[table] = _delete_table(
            engine, case, proof, proof.doomed[table], batch_rows, _hazard(engine, table)
        )
        engine.after_deleting(proof.doomed[table])
    return proof.deleted


def _hazard(engine: Engine[Any], table: str) -> Hazard:
    """How a batch of `table` is guarded against rows written since the proof that reference
    its rows. Through a key the database would change them by (CASCADE, SET NULL, SET
    DEFAULT): the window's rows locked first, so such a writer waits for the batch (its own
    key check then finds them gone), and checked again. Through a reference the data map
    declares: checked again, without a lock (the database takes none for it: the freeze is
    what holds its writers). Otherwise the database refuses the delete itself (`_refused`)."""
    keys = [fk for t in engine.tables for fk in t.foreign_keys if fk.references == table]
    if any(fk.on_delete in CHANGES_REFERENCING and not fk.declared for fk in keys):
        return "locked"
    if any(fk.declared for fk in keys):
        return "checked"
    return ""
