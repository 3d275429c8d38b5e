"""The data map: every system of the platform that holds tenant data, and how each is handled.

One TOML file (OFFBOARD_DATAMAP; JSON Schema in schemas/datamap.json) names each system and
binds it either to a location plug-in, whose destruction the pipeline performs and verifies,
or to an attested step, which a named role performs and confirms through a Prefect form. A
system declared with neither is *unbound*: `offboard datamap check` reports it, and a case
stops at its inventory until it is bound. Without a data map, the platform is the one
database and the one files store of the settings (the first release's behaviour).

    [systems.postgres]
    description = "The platform's database"
    plugin = "postgres"

    [systems.cache]
    description = "Page and session cache"
    plugin = "redis"
    url = "${CACHE_URL}"                 # ${VAR}: read from the environment (secrets stay there)
    patterns = ["t:{tenant}:*"]

    [systems.search]
    description = "Full-text search (managed OpenSearch)"
    attested = { role = "search administrator", procedure = "delete index t-{tenant}" }

Values may name environment variables as ${VAR}, so connection strings with passwords stay
out of the file.
"""

from offboarding.datamap.loading import datamap_of, load_datamap, parse_datamap
from offboarding.datamap.model import DEFAULT_DATAMAP, DataMap, system_entries
from offboarding.datamap.people import (
    ContactsScope,
    ContactSystem,
    PersonDeclaration,
    PersonScope,
    PersonSystem,
    PersonTable,
)
from offboarding.datamap.shape import PlatformShape, ShapeVariableDeprecated, platform_shape
from offboarding.datamap.systems import (
    PLUGIN_SYSTEMS,
    Attestation,
    AttestedSystem,
    BoundSystem,
    FilesSystem,
    MariaDBSystem,
    PgBackRestSystem,
    PluginSystem,
    PostgresSystem,
    RedisSystem,
    System,
    UnboundSystem,
)
from offboarding.datamap.tenants import FreezeHook, HttpFreezeHook, TenantsTable

__all__ = [
    "DEFAULT_DATAMAP",
    "PLUGIN_SYSTEMS",
    "Attestation",
    "AttestedSystem",
    "BoundSystem",
    "ContactSystem",
    "ContactsScope",
    "DataMap",
    "FilesSystem",
    "FreezeHook",
    "HttpFreezeHook",
    "MariaDBSystem",
    "PersonDeclaration",
    "PersonScope",
    "PersonSystem",
    "PersonTable",
    "PgBackRestSystem",
    "PlatformShape",
    "PluginSystem",
    "PostgresSystem",
    "RedisSystem",
    "ShapeVariableDeprecated",
    "System",
    "TenantsTable",
    "UnboundSystem",
    "datamap_of",
    "load_datamap",
    "parse_datamap",
    "platform_shape",
    "system_entries",
]
