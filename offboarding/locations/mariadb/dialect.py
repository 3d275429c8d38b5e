"""MariaDB's pieces of the relational core's conditions: text with backquoted identifiers and
the tenant id bound as the named parameter %(tenant)s, compared exactly."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from offboarding.core.names import split_qualified

__all__ = ["MariaDBDialect", "quote"]

_PLAIN = re.compile(r"[A-Za-z0-9_ .:-]*")


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
        return quote(name)

    def value(self, value: str | int) -> str:
        if isinstance(value, int):
            return str(int(value))
        if _PLAIN.fullmatch(value):
            return f"'{value}'"
        # Anything else as bytes in hexadecimal: no quote, backslash or % (mysqlclient's
        # placeholders) can reach the statement, whatever the server's sql_mode.
        return f"_utf8mb4 X'{value.encode().hex()}'"

    def pseudonym(self, key: str) -> str:
        return f"CONCAT('erased-', MD5(CONCAT_WS(',', {key.strip('()')})))"

    def is_tenant(self, column: str) -> str:
        # Exact: under the default case-insensitive collations `acme` = `ACME`. The plain
        # comparison lets the column's index find the rows; BINARY keeps only exact ones.
        return f"({column} = %(tenant)s AND BINARY {column} = %(tenant)s)"

    def number(self, value: int) -> str:
        return str(int(value))

    def distinct(self, left: str, right: str) -> str:
        return f"NOT ({left} <=> {right})"

    def owners(self, column: str | None) -> str:
        # As bytes: DISTINCT under a case-insensitive collation would fold another tenant's
        # `ACME` into this one's `acme`.
        return f"GROUP_CONCAT(DISTINCT BINARY {column})" if column else "NULL"

    def owner_values(self, value: Any) -> tuple[str, ...]:
        text = value.decode() if isinstance(value, bytes) else str(value or "")
        return tuple(sorted({o for o in text.split(",") if o}))
