"""The digest of every row of a MariaDB system that is not the given tenants': equal before and
after a destruction, it proves the neighbours untouched (the audit mode)."""

from __future__ import annotations

import hashlib

from offboarding.locations.mariadb.catalogue import Catalogue, Connection
from offboarding.locations.mariadb.dialect import quote
from offboarding.locations.relational.scope import RelationalScope

__all__ = ["neighbours_digest"]


def neighbours_digest(
    conn: Connection, catalogue: Catalogue, scope: RelationalScope[str], skip: list[str]
) -> str:
    """Table by table in key order, every row none of `skip`'s tenants owns (a server-side
    cursor on `conn`: the rows stream)."""
    classification = scope.classification
    digest = hashlib.sha256()
    for table in catalogue.tables:
        if not table.primary_key or table.name in catalogue.hazards:
            continue
        where = "TRUE"
        if table.qualified in classification.owned:
            # a shared entity's view changes with the tenant's memberships: its own rows only
            mine = (
                scope.destroyed(table.qualified, "t")
                if table.qualified in classification.entities
                else scope.where(table.qualified, "t")
            )
            where = " AND ".join(
                f"NOT ({mine})".replace("%(tenant)s", f"%(t{n})s") for n in range(len(skip))
            )
        order = ", ".join(f"t.{quote(k)}" for k in table.primary_key)
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT * FROM {quote(table.name)} t WHERE {where} ORDER BY {order}",
                {f"t{n}": tenant for n, tenant in enumerate(skip)},
            )
            digest.update(table.qualified.encode())
            for row in cur:
                digest.update(repr(row).encode())
    return digest.hexdigest()
