"""The relational core: what every SQL plug-in does the same way, written once, with each
database's SQL supplied by its dialect (as Fides keeps query generation apart from execution)
and run by its engine (one folder per database, as dlt keeps one per destination).

scope      which rows of a table are the tenant's (tenant column, foreign keys at any depth,
           the tenant's own schema, the registry), which are shared with another tenant, and
           the shared-rows policy: conditions built through a `Dialect`
engine     the lists, batches, references and proof, and what a database supplies: its
           dialect's pieces of a statement and an `Engine`, the session that runs them
proof      steps 1 and 2 of a destruction: the tenant's rows listed by key, no more than the
           frozen inventory, and referenced by no row outside the lists
deletion   step 3: children first, in bounded batches, each batch re-checked under its locks
           where a key would cascade, each deleted row's owner checked

The catalogue's model and the classification are planning.py's, shared by every database.
PostgreSQL (offboarding/locations/postgres/) and MariaDB (offboarding/locations/mariadb/)
supply the dialects and engines.
"""

from offboarding.locations.relational.engine import Engine, IsolationProof, Listed, Reference
from offboarding.locations.relational.scope import Dialect, RelationalScope, SharedRows

__all__ = [
    "Dialect",
    "Engine",
    "IsolationProof",
    "Listed",
    "Reference",
    "RelationalScope",
    "SharedRows",
]
