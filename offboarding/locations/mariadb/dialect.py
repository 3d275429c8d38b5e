"""MariaDB's pieces of the relational core's conditions: text with backquoted identifiers and
the tenant id bound as the named parameter %(tenant)s, compared exactly."""

from __future__ import annotations

from collections.abc import Iterable

from offboarding.core.names import split_qualified

__all__ = ["MariaDBDialect", "quote"]


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MariaDBDialect:
    """A table is `<system>.<table>` in the classification; in SQL, the connection's own
    database holds it, so only its name is written."""

    def text(self, text: str) -> str:
        return text

    def fill(self, template: str, **parts: str) -> str:
        return template.format(**parts)

    def join(self, parts: Iterable[str], separator: str) -> str:
        return separator.join(parts)

    def table(self, qualified: str) -> str:
        return quote(split_qualified(qualified)[1])

    def column(self, table: str, alias: str | None, column: str) -> str:
        return f"{alias or self.table(table)}.{quote(column)}"

    def alias(self, name: str) -> str:
        return name

    def is_tenant(self, column: str) -> str:
        # Exact: under the default case-insensitive collations `acme` = `ACME`. The plain
        # comparison lets the column's index find the rows; BINARY keeps only exact ones.
        return f"({column} = %(tenant)s AND BINARY {column} = %(tenant)s)"
