"""Objects named after a tenant in MariaDB (relational/named.py says which and why): the
database's SEQUENCE objects, which a product may create per account for its numbering. (Users
and roles are the server's, outside any one database: not searched.)"""

from __future__ import annotations

from offboarding.datamap import MariaDBSystem
from offboarding.locations.mariadb.catalogue import Catalogue, Connection
from offboarding.locations.mariadb.dialect import quote
from offboarding.locations.relational.named import NamedObject, match_named, to_drop

__all__ = ["drop_sequences", "named_sequences", "sequences_left"]


def named_sequences(catalogue: Catalogue, tenant: str, system: MariaDBSystem) -> list[NamedObject]:
    candidates = [("sequence", name, name) for name in catalogue.sequences]
    return match_named(candidates, tenant, list(system.tenant_objects))


def drop_sequences(conn: Connection, found: list[NamedObject]) -> list[str]:
    """Drop each sequence the data map says to drop; the names dropped."""
    dropped = []
    with conn.cursor() as cur:
        for obj in to_drop(found):
            cur.execute(f"DROP SEQUENCE IF EXISTS {quote(obj.name)}")
            dropped.append(obj.describe())
    conn.commit()
    return dropped


def sequences_left(catalogue: Catalogue, tenant: str, system: MariaDBSystem) -> list[str]:
    """The sequences the data map says to drop that are still there."""
    return [o.describe() for o in to_drop(named_sequences(catalogue, tenant, system))]
