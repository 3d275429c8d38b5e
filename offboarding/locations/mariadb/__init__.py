"""A MariaDB or MySQL database of the platform, with the PostgreSQL location's guarantees.

    catalogue  the server's own information_schema: every table, column, primary and foreign
               key (with its ON DELETE rule); the Arrow type of each declared type
    snapshot   the export: readers sharing one consistent snapshot, each table streamed in key
               order into Parquet (mysqlclient's server-side cursor: `make bench-mariadb`)
    engine     the relational core's engine: lists in temporary tables, DELETE ... RETURNING
    own        the tenant's own database (tenant_database_pattern): exported and dropped whole
    persons    one person: found, exported and erased in one transaction
    residue    the deleted rows' bytes in the files: canaries, the online rebuild, the scan

Classification is planning's, as for PostgreSQL. Fail closed: an unclassified table, a table
the pipeline cannot read by key (not InnoDB; system-versioned, so deleted rows stay in its
history; a key into another database) or of an unknown type stops the case until declared.
The tenant's rows, shared rows and their policy, the isolation proof and the batched delete
are the relational core's (offboarding/locations/relational/), in MariaDB's dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import MySQLdb
import MySQLdb.cursors

from offboarding.core.config import Settings
from offboarding.core.errors import (
    ConfigurationError,
    ServiceError,
)
from offboarding.core.names import qualified, split_qualified
from offboarding.core.records import (
    CaseRef,
    LocationInventory,
    TableItem,
)
from offboarding.datamap import MariaDBSystem, PersonDeclaration
from offboarding.datamap.systems import handlers
from offboarding.locations.base import (
    Canary,
    Capability,
    ExportProgress,
    LocationExport,
    LocationFacts,
    PersonErased,
    PersonExport,
    PersonItems,
    Plugin,
    Remaining,
    Removal,
    Residue,
    ResidueSite,
    Stage,
    quiet,
    require_system_declaration,
)
from offboarding.locations.mariadb import residue
from offboarding.locations.mariadb.catalogue import (
    Catalogue,
    Connection,
    arrow_type,
    classify,
    count,
    declared_report,
    read_catalogue,
    table_item,
    with_references,
)
from offboarding.locations.mariadb.dialect import MariaDBDialect
from offboarding.locations.mariadb.digest import neighbours_digest
from offboarding.locations.mariadb.engine import MariaDBEngine
from offboarding.locations.mariadb.named import drop_sequences, named_sequences, sequences_left
from offboarding.locations.mariadb.own import OwnDatabase
from offboarding.locations.mariadb.snapshot import Snapshot, Source, export_tables
from offboarding.locations.relational import RelationalScope, coverage, deletion, proof
from offboarding.locations.relational import named as tenant_named
from offboarding.planning import CatalogTable, Classification

__all__ = ["PLUGIN", "MariaDBLocation", "Snapshot", "arrow_type"]

# Imported here, after the names persons.py reads from this module (for types only).
from offboarding.locations.mariadb import persons

_Snapshot = Snapshot  # the name the tests knew it by


class MariaDBLocation:
    def __init__(self, settings: Settings, name: str, system: MariaDBSystem) -> None:
        self.settings = settings
        self.name = name
        self.system = system
        url = urlsplit(system.url)
        if url.scheme not in ("mysql", "mariadb") or not url.path.strip("/"):
            raise ConfigurationError(
                f"system {name!r}: url must be mysql://user:password@host:port/database "
                f"(got scheme {url.scheme!r}{'' if url.path.strip('/') else ', no database'})"
            )
        self.database = unquote(url.path.strip("/"))
        self._connect_args: dict[str, Any] = {
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 3306,
            "user": unquote(url.username or ""),
            "password": unquote(url.password or ""),
            "database": self.database,
            "charset": "utf8mb4",
            "connect_timeout": 10,
            "autocommit": False,
            "init_command": "SET time_zone = '+00:00', SESSION sql_mode = "
            "CONCAT(@@sql_mode, ',NO_ZERO_DATE,NO_ZERO_IN_DATE')",
        }

    # -- connections and the catalogue ---------------------------------------------------------

    @property
    def _address(self) -> str:
        return f"{self._connect_args['host']}:{self._connect_args['port']}/{self.database}"

    @contextmanager
    def _connect(self, **extra: Any) -> Iterator[Connection]:
        try:
            conn = cast(Connection, MySQLdb.connect(**{**self._connect_args, **extra}))
        except MySQLdb.Error as error:
            raise ServiceError(
                f"the data map's system {self.name!r} (MariaDB at {self._address}) did not "
                f"answer: {error.args[-1] if error.args else error}. Check its url and that the "
                "server is running"
            ) from None
        try:
            yield conn
        finally:
            conn.close()

    def _qualified(self, table: str) -> str:
        return qualified(self.name, table)

    def _catalogue(self, conn: Connection) -> Catalogue:
        return with_references(
            read_catalogue(conn, self.name, self.database), self.name, self.system
        )

    def _classify(
        self, catalogue: Catalogue, *, strict: bool = True
    ) -> tuple[Classification, list[str]]:
        return classify(catalogue, self.name, self.system, strict=strict)

    # -- which rows are the tenant's: the relational core's scope ---------------------------------

    def _scope(self, classification: Classification) -> RelationalScope[str]:
        shared = {self._qualified(t): policy for t, policy in self.system.shared_rows.items()}
        return RelationalScope(classification, MariaDBDialect(), shared)

    def _where(self, classification: Classification, table: str, alias: str) -> str:
        """The tenant's rows of `table` (as `alias`) exported, with %(tenant)s."""
        return self._scope(classification).where(table, alias)

    def _engine(self, conn: Connection, case: CaseRef, *, strict: bool = True) -> MariaDBEngine:
        catalogue = self._catalogue(conn)
        classification, _ = self._classify(catalogue, strict=strict)
        return MariaDBEngine(conn, self.name, catalogue, self._scope(classification), case.tenant)

    def _own(self, case: CaseRef) -> OwnDatabase | None:
        """The tenant's own database, where the data map's tenant_database_pattern gives one."""
        pattern = self.system.tenant_database_pattern
        return OwnDatabase(self.name, pattern, case.tenant) if pattern else None

    def reach(self) -> str:
        """The server's version, and what the inventory will need (the tables and columns the
        data map names, each declared reference with its orphans and rows reaching two
        tenants: offboarding/locations/relational/declared.py)."""
        with self._connect() as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                row = cur.fetchone()
            catalogue = self._catalogue(conn)
            classification, _ = self._classify(catalogue)
            checks = declared_report(conn, self._scope(classification), catalogue)
        return "; ".join([f"MariaDB {row[0] if row else '?'} at {self._address}", *checks])

    def describe(self) -> LocationFacts:
        return LocationFacts(
            media=f"MariaDB database {self.name} at {self._address}",
            method="clear",
            technique="list the tenant's rows by key and prove no other row references them; "
            "delete children first in batches, each deleted row's owner checked"
            + ("; drop the tenant's own database" if self.system.tenant_database_pattern else ""),
            verification_method="count of the tenant's rows in every tenant table, on a new "
            "connection",
        )

    def inventory(self, case: CaseRef, *, dry_run: bool = False) -> LocationInventory:
        with self._connect() as conn:
            catalogue = self._catalogue(conn)
            classification, unclassified = self._classify(catalogue, strict=not dry_run)
            scope = self._scope(classification)
            engine = MariaDBEngine(conn, self.name, catalogue, scope, case.tenant)
            shared = proof.shared_counts(engine)
            if not dry_run:
                proof.require_shared_policies(engine, case, shared)
            by_name = {t.qualified: t for t in catalogue.tables}
            items: list[TableItem] = []
            with conn.cursor() as cur:
                for name in classification.exported:
                    table = by_name[name]
                    rows = count(cur, table.name, scope.where(name, "t"), case.tenant)
                    average = catalogue.rows_estimate.get(table.name, (0, 0))[1]
                    items.append(self._item(classification, table, catalogue, rows, rows * average))
                counting = RelationalScope(classification.counting_excluded(), MariaDBDialect())
                omitted = coverage.left_out(
                    self.name,
                    classification,
                    lambda t: count(cur, by_name[t].name, counting.where(t, "t"), case.tenant),
                    {
                        self._qualified(t): s
                        for t, s in handlers(self.system.excluded_tables).items()
                    },
                    lambda t: (
                        count(cur, by_name[t].name, scope.where(t, "t"), case.tenant)
                        - count(cur, by_name[t].name, scope.destroyed(t, "t"), case.tenant)
                    ),
                )
            objects = named_sequences(catalogue, case.tenant, self.system)
            omitted += tenant_named.left_out(self.name, objects)
            if not dry_run:
                coverage.require_handled(case, f"[systems.{self.name}]", omitted)
                tenant_named.require_declared(case, f"systems.{self.name}", objects)
            own = self._own(case)
            if own is not None:
                own_catalogue, unreadable = own.catalogue(conn, strict=not dry_run)
                items += own.items(conn, own_catalogue)
                unclassified += unreadable
        policies = scope.shared
        warnings = [
            f"{table}: {n} row(s) reference both this tenant's rows and another tenant's; "
            + (
                f"configured to {policies[table]} them"
                if table in policies
                else f"the case stops until the data map's [systems.{self.name}] shared_rows "
                "says whether to leave, delete or export them"
            )
            for table, n in shared.items()
        ]
        return LocationInventory(
            location=self.name,
            items=sum(t.rows for t in items),
            bytes=sum(t.bytes_estimate for t in items),
            tables=items,
            global_tables=dict(classification.global_tables),
            excluded_tables=dict(classification.excluded),
            shared_rows=shared,
            unclassified=unclassified,
            warnings=warnings + coverage.warnings(omitted) + tenant_named.warnings(objects),
            left_out=omitted,
        )

    def _item(
        self,
        classification: Classification,
        table: CatalogTable,
        catalogue: Catalogue,
        rows: int,
        size: int,
    ) -> TableItem:
        return table_item(self.name, classification, table, catalogue, (rows, size))

    def export(
        self,
        case: CaseRef,
        inventory: LocationInventory,
        scratch: Path,
        progress: ExportProgress | None = None,
    ) -> LocationExport:
        """Every table of the inventory from one consistent snapshot, in key order, read by
        up to OFFBOARD_EXPORT_WORKERS connections that share it (`Snapshot`)."""
        return export_tables(
            self.name, self._connect, lambda conn: self._sources(conn, case), case.tenant,
            inventory, scratch, progress, self.settings.export.workers,
            self.settings.export.parquet_row_group_rows,
        )  # fmt: skip

    def _sources(self, conn: Connection, case: CaseRef) -> dict[str, Source]:
        """Per table the export may read: the table, its columns, which of its rows (`t`,
        with %(tenant)s) and, for the tenant's own database, that database."""
        catalogue = self._catalogue(conn)
        classification, _ = self._classify(catalogue)
        sources: dict[str, Source] = {
            t.qualified: (
                t,
                catalogue.columns.get(t.name, []),
                self._where(classification, t.qualified, "t"),
                None,
            )
            for t in catalogue.tables
            if t.qualified in classification.exported
        }
        own = self._own(case)
        if own is not None:
            mine, _ = own.catalogue(conn)
            for t in mine.tables:
                sources[t.qualified] = (t, mine.columns.get(t.name, []), "TRUE", own.name)
        return sources

    # -- one person (the data map's [person.systems.<name>] tables: persons.py) ---------------

    def find_person(self, tenant: str, person: str, declared: PersonDeclaration) -> PersonItems:
        return persons.find_person(
            self, tenant, person, require_system_declaration(declared, self.name)
        )

    def export_person(
        self, tenant: str, person: str, declared: PersonDeclaration, scratch: Path
    ) -> PersonExport:
        return persons.export_person(
            self, tenant, person, require_system_declaration(declared, self.name), scratch
        )

    def erase_person(
        self, tenant: str, person: str, declared: PersonDeclaration, replacement: str,
        *, person_kept: bool = False, say: Callable[[str], None] = quiet,
    ) -> PersonErased:  # fmt: skip
        return persons.erase_person(
            self, tenant, person, require_system_declaration(declared, self.name), replacement,
            person_kept=person_kept,
        )  # fmt: skip

    # -- destruction: the relational core's proof and batched delete ------------------------------

    def check_isolation(
        self, case: CaseRef, inventoried: Mapping[str, int] | None = None
    ) -> dict[str, str]:
        """The destroy's own checks, before any system is touched, deleting nothing: the
        tenant's rows no more than inventoried, none referenced from outside the tenant's
        scope. (The destroy repeats them on its own lists, right before deleting.)"""
        with self._connect() as conn:
            engine = self._engine(conn, case)
            proved = proof.prove(engine, case, inventoried, listed=False)
            own = self._own(case)
            if own is not None:  # rows added to it since the export stop the case here too
                counts = own.counts(conn, own.catalogue(conn)[0])
                proof.against_inventory(case, counts, {}, {}, inventoried)
            conn.rollback()
        return {table: f"{n} rows: {engine.policies[table]}" for table, n in proved.shared.items()}

    def destroy(self, case: CaseRef, inventoried: Mapping[str, int] | None = None) -> Removal:
        with self._connect() as conn:
            engine = self._engine(conn, case)
            proved = proof.prove(engine, case, inventoried)
            own = self._own(case)
            dropped = own.drop_checked(conn, case, inventoried) if own else {}
            batch = self.settings.destruction.delete_batch_rows
            deletion.delete_listed(engine, case, proved, batch)
            sequences = drop_sequences(
                conn, named_sequences(self._catalogue(conn), case.tenant, self.system)
            )
        details = {f"deleted {t}": str(n) for t, n in proved.deleted.items() if n}
        if sequences:
            details["dropped, named after the tenant"] = ", ".join(sequences)
        details.update({f"dropped {t}": str(n) for t, n in dropped.items()})
        return Removal(
            items_before=sum(d.rows for d in proved.doomed.values()) + sum(dropped.values()),
            bytes_before=sum(d.bytes for d in proved.doomed.values()),
            items_removed=sum(proved.deleted.values()) + sum(dropped.values()) + len(sequences),
            technique=self.describe().technique,
            isolation=proved.summary(engine.policies),
            details=details,
        )

    def verify(self, case: CaseRef) -> Remaining:
        with self._connect() as conn:
            catalogue = self._catalogue(conn)
            classification, _ = self._classify(catalogue, strict=False)
            scope = self._scope(classification)
            left: dict[str, int] = {}
            with conn.cursor() as cur:
                for name in classification.owned:
                    where = scope.destroyed(name, "t")
                    found = count(cur, split_qualified(name)[1], where, case.tenant)
                    if found:
                        left[name] = found
            own = self._own(case)
            if own is not None and own.exists(conn):
                left[own.name] = 1 + sum(
                    own.counts(conn, own.catalogue(conn, strict=False)[0]).values()
                )
            left.update(dict.fromkeys(sequences_left(catalogue, case.tenant, self.system), 1))
        return Remaining(
            items=sum(left.values()),
            verification=f"count of the tenant's rows in {len(classification.owned)} table(s)"
            + (f", and database {own.name}'s absence" if own is not None else "")
            + ": "
            + (", ".join(f"{t} {n}" for t, n in sorted(left.items())) or "none"),
        )

    def residue_sites(self) -> list[ResidueSite]:
        with self._connect() as conn:
            return residue.sites(conn, self.settings.destruction.compaction_interval)

    def canaries(self, case: CaseRef) -> list[Canary]:
        with self._connect() as conn:
            catalogue = self._catalogue(conn)
            classification, _ = self._classify(catalogue, strict=False)
            scope, tables = self._scope(classification), classification.exported
            return residue.sample_canaries(conn, catalogue, scope, tables, case.tenant)

    def compact(self, places: list[str]) -> list[str]:
        mine = [t for t in places if split_qualified(t)[0] == self.name]
        with self._connect() as conn:
            return residue.compact(conn, self._catalogue(conn), mine)

    def scan_residue(self, places: list[str], canaries: list[Canary]) -> dict[str, Residue]:
        with self._connect(autocommit=True) as conn:
            catalogue, folder = self._catalogue(conn), self.system.data_dir
            return residue.scan_all(conn, catalogue, self.database, folder, places, canaries)

    def neighbours_digest(self, case: CaseRef, excluded: frozenset[str] = frozenset()) -> str:
        """Every row not the tenant's (nor an excluded tenant's), table by table in key
        order: equal before and after destruction (digest.py)."""
        with self._connect(cursorclass=MySQLdb.cursors.SSCursor) as conn:
            catalogue = self._catalogue(conn)
            classification, _ = self._classify(catalogue, strict=False)
            return neighbours_digest(
                conn, catalogue, self._scope(classification), [case.tenant, *sorted(excluded)]
            )


PLUGIN = Plugin(
    kind="mariadb",
    config=MariaDBSystem,
    location=MariaDBLocation,
    capabilities=frozenset(
        {
            Capability.EXPORT,
            Capability.DESTROY,
            Capability.VERIFY,
            Capability.ISOLATION,
            Capability.PERSON_ACCESS,
            Capability.PERSON_ERASURE,
            Capability.RESIDUE,
        }
    ),
    stage=Stage.ROWS,
    export_rank=3,
    person_by="tables",
    summary="a MariaDB or MySQL database: classified from its catalogue, exported from one "
    "consistent snapshot, rows listed by key, isolation proved, deleted in batches",
)
