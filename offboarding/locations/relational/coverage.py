"""What a relational system leaves out of the bundle, said: its excluded and global tables, each
with the data map's reason, and the tenant's rows in each excluded table that holds some.

An excluded table holding the tenant's rows is a copy the bundle does not carry and the
destruction does not remove. The case goes on only where the data map names the system whose
export and destruction cover that copy (`handled_by`: a plug-in, or an attested step);
otherwise it stops before anything is exported, so no bundle claims more than it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from offboarding.core.errors import UnclassifiedDataError
from offboarding.core.records import CaseRef, LeftOut
from offboarding.planning import Classification

__all__ = ["left_out", "require_handled", "warnings"]


def left_out(
    system: str,
    classification: Classification,
    count: Callable[[str], int],
    handled_by: Mapping[str, str],
    kept: Callable[[str], int] | None = None,
) -> list[LeftOut]:
    """Every excluded and global table of the system, and its shared entities' rows a
    destruction keeps; `count(table)` gives the tenant's rows of an excluded table that holds
    tenants' rows (counted as if it were not excluded), `kept(table)` the rows of the tenant's
    view of a shared entity that stay (all of them, or those another tenant links too)."""
    found = [
        LeftOut(
            name=name,
            kind="excluded table",
            system=system,
            why=why,
            tenant_rows=count(name) if name in classification.excluded_holding else None,
            handled_by=handled_by.get(name),
        )
        for name, why in sorted(classification.excluded.items())
    ]
    found += [
        LeftOut(
            name=name,
            kind="shared entity",
            system=system,
            why=(
                "destroyed where no other tenant links them; these are linked by others too"
                if entity.erased
                else "kept; those no other tenant links with their personal columns "
                f"({', '.join(entity.personal)}) replaced"
                if entity.pseudonymised
                else "exported as the tenant's view; never destroyed"
            )
            + f" (through {entity.through}): {entity.why}",
            tenant_rows=kept(name) if kept else None,
        )
        for name, entity in sorted(classification.entities.items())
    ]
    found += [
        LeftOut(name=name, kind="global table", system=system, why=why)
        for name, why in sorted(classification.global_tables.items())
    ]
    return found


def require_handled(case: CaseRef, setting: str, tables: list[LeftOut]) -> None:
    """Stop where an excluded table holds the tenant's rows and no system covers them."""
    unhandled = [
        t for t in tables if t.kind == "excluded table" and t.tenant_rows and not t.handled_by
    ]
    if unhandled:
        first = unhandled[0]
        listed = ", ".join(f"{t.name} ({t.tenant_rows} rows)" for t in unhandled)
        raise UnclassifiedDataError(
            f"excluded table(s) {listed} hold rows of tenant {case.tenant!r}: the bundle would "
            "not carry them and the destruction would not remove them. Nothing is exported "
            "until the data map says where each copy goes: "
            f'{setting} excluded_tables = {{ "{first.name}" = {{ why = "{first.why}", '
            'handled_by = "<system>" }} naming the data map\'s system (a plug-in, or an '
            "attested step a role performs) that exports and destroys them; or stop "
            "excluding the table"
        )


def warnings(tables: list[LeftOut]) -> list[str]:
    """A dry run's warning for each excluded table holding the tenant's rows that no system
    covers (a case stops on it)."""
    return [
        f"{t.name}: excluded, but holds {t.tenant_rows} row(s) of the tenant that nothing "
        "exports or destroys; a case stops until excluded_tables names its handled_by system"
        for t in tables
        if t.kind == "excluded table" and t.tenant_rows and not t.handled_by
    ]
