"""The relational core: what every SQL plug-in does the same way, written once, with each
database's SQL supplied by its dialect (as Fides keeps query generation apart from execution).

scope   which rows of a table are the tenant's (tenant column, foreign keys at any depth, the
        tenant's own schema, the registry), which are shared with another tenant, and the
        shared-rows policy: the condition, built through a `Dialect`

PostgreSQL (offboarding/locations/postgres/) and MariaDB (offboarding/locations/mariadb/)
supply the dialects. The catalogue's model and the classification are planning.py's, shared
already; the listing, the proof and the batched delete follow the scope here (issue 27).
"""

from offboarding.locations.relational.scope import Dialect, RelationalScope, SharedRows

__all__ = ["Dialect", "RelationalScope", "SharedRows"]
