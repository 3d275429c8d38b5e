"""The tenant's own database on a MariaDB server (the data map's `tenant_database_pattern`, as
PostgreSQL's `tenant_schema_pattern`): every table in it is the tenant's, exported whole from
the export's snapshot, compared with the frozen inventory, and dropped whole before the
tenant's rows in the shared database are deleted (nothing of it can then block them).

A key from the shared database into it stops the case at the inventory (the shared
catalogue's "foreign key into database ..."). Its tables must be InnoDB (the export reads them
in the shared snapshot) and nameable in a statement (no %).
"""

from __future__ import annotations

from collections.abc import Mapping

from offboarding.core.errors import ConfigurationError, UnclassifiedDataError
from offboarding.core.records import CaseRef, TableItem
from offboarding.locations.base import foreign_key_schemas
from offboarding.locations.mariadb.catalogue import (
    Catalogue,
    Connection,
    column_schema,
    read_catalogue,
)
from offboarding.locations.mariadb.dialect import quote
from offboarding.locations.relational import proof

__all__ = ["OwnDatabase"]

_ENGINE = "InnoDB"
_LONGEST = 64  # MariaDB's limit on a database's name


class OwnDatabase:
    def __init__(self, system: str, pattern: str, tenant: str) -> None:
        self.system = system
        self.name = pattern.format(tenant=tenant)
        if "." in self.name or "/" in self.name or "\\" in self.name or len(self.name) > _LONGEST:
            raise ConfigurationError(
                f"system {system!r}: tenant_database_pattern {pattern!r} gives {self.name!r} for "
                f"tenant {tenant!r}, which MariaDB cannot name a database (no '.', '/' or '\\', "
                f"at most {_LONGEST} characters): change the pattern"
            )

    def source(self, table: str) -> str:
        """The table, as a statement names it from any database."""
        return f"{quote(self.name)}.{quote(table)}"

    def exists(self, conn: Connection) -> bool:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                (self.name,),
            )
            row = cur.fetchone()
        return bool(row and row[0])

    def catalogue(self, conn: Connection, *, strict: bool = True) -> tuple[Catalogue, list[str]]:
        """Its tables (named `<database>.<table>`), and those the export cannot read in the
        shared snapshot; strict, those stop the case."""
        if not self.exists(conn):
            return Catalogue([], {}, {}), []
        catalogue = read_catalogue(conn, self.system, self.name, schema=self.name)
        unreadable = [
            f"{t.qualified} ({why})"
            for t in catalogue.tables
            if (why := self._unreadable(catalogue, t.name))
        ]
        if strict and unreadable:
            raise UnclassifiedDataError(
                f"system {self.system!r}: the tenant's own database holds {', '.join(unreadable)}"
                ": the export cannot read them in its consistent snapshot. Convert them to "
                "InnoDB (or rename them), then retry"
            )
        return catalogue, unreadable

    def _unreadable(self, catalogue: Catalogue, table: str) -> str:
        engine = catalogue.engines.get(table, "")
        if "%" in table or any("%" in c.name for c in catalogue.columns.get(table, [])):
            return "a % in its own or a column's name: no statement can name it"
        if engine != _ENGINE and not engine.startswith("SYSTEM VERSIONED"):
            return f"engine {engine}: no transactions, no consistent snapshot"
        return ""

    def counts(self, conn: Connection, catalogue: Catalogue) -> dict[str, int]:
        """Rows per table, by count (the inventory's and the destruction's comparison)."""
        found = {}
        with conn.cursor() as cur:
            for table in catalogue.tables:
                cur.execute(f"SELECT COUNT(*) FROM {self.source(table.name)}")
                row = cur.fetchone()
                found[table.qualified] = int(row[0]) if row else 0
        return found

    def items(self, conn: Connection, catalogue: Catalogue) -> list[TableItem]:
        counts = self.counts(conn, catalogue)
        return [
            TableItem(
                schema_name=self.name,
                table=table.name,
                scope="schema",
                rows=counts[table.qualified],
                bytes_estimate=counts[table.qualified]
                * catalogue.rows_estimate.get(table.name, (0, 0))[1],
                columns=[column_schema(c) for c in catalogue.columns.get(table.name, [])],
                primary_key=list(table.primary_key),
                foreign_keys=foreign_key_schemas(table),
            )
            for table in catalogue.tables
        ]

    def drop(self, conn: Connection) -> None:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote(self.name)}")
        conn.commit()

    def drop_checked(
        self, conn: Connection, case: CaseRef, inventoried: Mapping[str, int] | None
    ) -> dict[str, int]:
        """Compared with the frozen inventory, then dropped whole (first: nothing of it can
        then block the deletion in the shared database). Rows per table."""
        catalogue, _ = self.catalogue(conn)
        counts = self.counts(conn, catalogue)
        proof.against_inventory(case, counts, {}, {}, inventoried)
        self.drop(conn)
        return counts
