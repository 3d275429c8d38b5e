"""The relational core's engine on one MariaDB session (offboarding/locations/relational/).

What is MariaDB's own here:
- the lists: a session temporary table per table, numbered by AUTO_INCREMENT in key order,
  and a second copy of it, since MariaDB cannot open one temporary table twice in a
  statement (a reply thread's check reads both the replies' and the parents' list);
- reply threads: their references within the table are unlinked (set to NULL) before the
  table's first batch, since InnoDB checks a key row by row within one statement;
- the delete: `DELETE ... RETURNING` the owner columns, each returned row checked here, in
  Python, against the tenant's id (exactly: BINARY, not the column's collation) or against
  the listed keys of the parents it references, before the batch commits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import MySQLdb

from offboarding.locations.mariadb.catalogue import Catalogue, Connection
from offboarding.locations.mariadb.dialect import MariaDBDialect, quote
from offboarding.locations.relational.engine import (
    IsolationProof,
    KeyRefusal,
    Listed,
    Plan,
    Window,
)
from offboarding.locations.relational.scope import RelationalScope
from offboarding.planning import CatalogTable, ForeignKey

__all__ = ["MariaDBEngine"]


# MariaDB's refusal names the referencing table and its key: "... a foreign key constraint
# fails (`db`.`child`, CONSTRAINT `name` FOREIGN KEY ...".
_CONSTRAINT = re.compile(r"\(`[^`]*`\.`([^`]*)`, CONSTRAINT `([^`]*)`")


class MariaDBEngine:
    kind = "mariadb"
    formerly = ""
    # A table's storage engine decides whether its keys are enforced at all (InnoDB's are,
    # others' are not), and threads are unlinked before their delete: the proof before
    # deleting checks every key here.
    refuses = False
    indexed = False  # MariaDB plans its statements itself

    def __init__(
        self,
        conn: Connection,
        system: str,
        catalogue: Catalogue,
        scope: RelationalScope[str],
        tenant: str,
    ) -> None:
        self.conn = conn
        self.system = system
        self.setting = f"[systems.{system}]"
        self.catalogue = catalogue
        self.scope = scope
        self.tenant = tenant
        self.tables: Sequence[CatalogTable] = catalogue.tables
        self.policies: Mapping[str, str] = scope.shared
        self._dialect = MariaDBDialect()
        self._by_name = {t.qualified: t for t in catalogue.tables}
        self._parent_keys: dict[tuple[str, str], set[tuple[Any, ...]]] = {}

    @property
    def dialect(self) -> MariaDBDialect:
        return self._dialect

    def fetch(self, query: str, plan: Plan = "indexes") -> tuple[Any, ...]:
        with self.conn.cursor() as cur:
            cur.execute(query, {"tenant": self.tenant})
            row = cur.fetchone()
        assert row is not None, "an aggregate returns one row"
        return tuple(row)

    def commit(self) -> None:
        self.conn.commit()

    def execute(self, statement: str) -> int:
        with self.conn.cursor() as cur:
            cur.execute(statement, {"tenant": self.tenant})
            changed = int(cur.rowcount)
        self.conn.commit()
        return changed

    @contextmanager
    def batch(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def list_rows(self, table: CatalogTable, number: int) -> Listed:
        temp = f"offboarding_doomed_{number}"
        again = f"{temp}_again"
        keys = table.primary_key
        width = len(keys)
        names = ", ".join(f"k{n}" for n in range(width))
        with self.conn.cursor() as cur:
            for name in (temp, again):
                cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {name}")
            cur.execute(
                f"CREATE TEMPORARY TABLE {temp} (ord BIGINT AUTO_INCREMENT PRIMARY KEY, "
                f"KEY ({names})) "
                f"SELECT {', '.join(f't.{quote(k)} AS k{n}' for n, k in enumerate(keys))} "
                f"FROM {quote(table.name)} t WHERE {self.scope.destroyed(table.qualified, 't')} "
                f"ORDER BY {', '.join(f't.{quote(k)}' for k in keys)}",
                {"tenant": self.tenant},
            )
            cur.execute(f"CREATE TEMPORARY TABLE {again} LIKE {temp}")
            cur.execute(f"INSERT INTO {again} SELECT * FROM {temp}")
            cur.execute(f"SELECT COUNT(*) FROM {temp}")
            row = cur.fetchone()
        rows = int(row[0]) if row else 0
        average = self.catalogue.rows_estimate.get(table.name, (0, 0))[1]
        return Listed(table.qualified, temp, keys, rows, rows * average, again=again)

    def _window(self, listed: Listed, window: Window) -> str:
        keys = ", ".join(quote(k) for k in listed.keys)
        names = ", ".join(f"d.k{n}" for n in range(len(listed.keys)))
        return (
            f"({keys}) IN (SELECT {names} FROM {listed.temp} d "
            f"WHERE d.ord > {int(window.low)} AND d.ord <= {int(window.high)})"
        )

    def after_deleting(self, listed: Listed) -> None:
        pass  # InnoDB's purge removes the deleted rows' versions by itself

    def before_deleting(self, listed: Listed) -> None:
        """A thread within the table: its listed rows' references to each other unlinked."""
        table = self._by_name[listed.table]
        keys = ", ".join(quote(k) for k in listed.keys)
        names = ", ".join(f"k{n}" for n in range(len(listed.keys)))
        with self.conn.cursor() as cur:
            for fk in table.foreign_keys:
                # (a declared reference binds nothing in the database: nothing to unlink)
                if fk.references == table.qualified and not fk.declared:
                    assignments = ", ".join(f"{quote(c)} = NULL" for c in fk.columns)
                    cur.execute(
                        f"UPDATE {quote(table.name)} SET {assignments} "
                        f"WHERE ({keys}) IN (SELECT {names} FROM {listed.temp})"
                    )
        self.conn.commit()

    def lock(self, listed: Listed, window: Window) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT 1 FROM {quote(self._by_name[listed.table].name)} "
                f"WHERE {self._window(listed, window)} FOR UPDATE"
            )
            cur.fetchall()

    def delete(self, listed: Listed, window: Window, proof: IsolationProof) -> tuple[int, int]:
        table = self._by_name[listed.table]
        classification = self.scope.classification
        tenant_scoped = table.qualified in classification.tenant_scoped
        links = classification.derived.get(table.qualified, ())
        entity = classification.entities.get(table.qualified)
        owners = (
            [classification.owner_column(table.qualified)]
            if tenant_scoped
            else list(entity.key)
            if entity
            else list(dict.fromkeys(c for fk in links for c in fk.involved))
        )
        with self.conn.cursor() as cur:
            linked = 0
            if entity:  # its memberships went before it: one still linking it is another's
                cur.execute(
                    f"SELECT COUNT(*) FROM {quote(table.name)} "
                    f"WHERE {self._window(listed, window)} AND NOT "
                    f"{self.scope.entity_free(table.qualified, quote(table.name))}"
                )
                found = cur.fetchone()
                linked = int(found[0]) if found else 0
            try:
                cur.execute(
                    f"DELETE FROM {quote(table.name)} WHERE {self._window(listed, window)} "
                    f"RETURNING {', '.join(quote(c) for c in owners)}"
                )
            except MySQLdb.IntegrityError as error:  # the batch rolls it back
                detail = str(error.args[-1])
                named = _CONSTRAINT.search(detail)
                raise KeyRefusal(
                    named.group(2) if named else "a foreign key",
                    named.group(1) if named else "another table",
                    detail,
                ) from error
            returned = cur.fetchall()
        if entity:
            return len(returned), linked
        stray = sum(
            1
            for row in returned
            if not self._owned(
                table.qualified, dict(zip(owners, row, strict=True)), tenant_scoped, links, proof
            )
        )
        return len(returned), stray

    def _owned(
        self,
        table: str,
        values: dict[str, Any],
        tenant_scoped: bool,
        links: tuple[ForeignKey, ...],
        proof: IsolationProof,
    ) -> bool:
        """The deleted row is the tenant's: its tenant column holds exactly the tenant's id,
        or every key it sets is a listed parent's, and one is (one is enough for a shared row
        the data map's shared_rows deletes with the tenant)."""
        if tenant_scoped:
            return bool(values[self.scope.classification.owner_column(table)] == self.tenant)
        reached = elsewhere = False
        for fk in links:
            key = tuple(values[c] for c in fk.columns)
            if not _points(fk, values):
                continue
            if key in self._listed_values(fk, proof):
                reached = True
            else:
                elsewhere = True
        # A shared row (it reaches another tenant's too) goes only where the data map says so.
        return reached and (not elsewhere or self.policies.get(table) == "delete")

    def _listed_values(self, fk: ForeignKey, proof: IsolationProof) -> set[tuple[Any, ...]]:
        """The values of `fk`'s referenced columns over its parent's listed rows (the parents
        are deleted after their children: still there to read)."""
        cached = self._parent_keys.get((fk.references, fk.name))
        if cached is not None:
            return cached
        parent = proof.doomed[fk.references]
        names = ", ".join(f"d.k{n}" for n in range(len(parent.keys)))
        keys = ", ".join(f"p.{quote(k)}" for k in parent.keys)
        with self.conn.cursor() as cur:
            cur.execute(
                f"SELECT {', '.join(f'p.{quote(c)}' for c in fk.referenced_columns)} "
                f"FROM {parent.second} d JOIN {quote(self._by_name[fk.references].name)} p "
                f"ON ({keys}) = ({names})"
            )
            values = {tuple(row) for row in cur.fetchall()}
        self._parent_keys[(fk.references, fk.name)] = values
        return values


def _points(fk: ForeignKey, values: dict[str, Any]) -> bool:
    """The row's key `fk` is set (the scope's `is_set`, on values read back)."""

    def same(found: Any, value: str | int) -> bool:
        # As the listing's SQL compared them: under the column's (by default case-insensitive)
        # collation, and an integer with the text of a number.
        text = found.decode() if isinstance(found, bytes) else found
        if isinstance(text, str):
            return text.casefold() == str(value).casefold()
        return bool(text == value)

    key = [values[c] for c in fk.columns]
    return (
        all(v is not None for v in key)
        and not any(same(v, none) for v in key for none in fk.none)
        and all(same(values[c], value) for c, value in fk.when)
    )
