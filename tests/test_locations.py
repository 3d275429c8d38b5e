"""One conformance suite every registered data location passes: it describes itself, inventories
in a dry run, destroys only its tenant's data (a prefix neighbour keeps everything), verifies to
zero independently, and destroys again without harm."""

from __future__ import annotations

from pathlib import Path
from tempfile import mkdtemp

import pytest

from offboarding.backup.backup import take_backup
from offboarding.core.records import CaseRef
from offboarding.datamap import load_datamap
from offboarding.dev.demo.platform import write_datamap
from offboarding.locations import destruction_order, export_order, get_location, registered
from offboarding.locations.base import DataLocation, LocationFacts
from tests.conftest import Platform
from tests.helpers import export_and_deliver

# What must be there before destruction, for each location, after a backup and a delivery.
HOLDS_DATA = {"bundles", "files", "postgres", "cache", "backups", "keys"}
# Every location of the demo platform's data map (the tests' platform declares it whole).
DEMO_ORDER = tuple(
    e.name for e in registered(load_datamap(write_datamap(Path(mkdtemp()) / "d.toml", "redis://x")))
)


def test_the_demo_platform_declares_every_kind_of_location(platform: Platform) -> None:
    assert destruction_order(platform.settings) == DEMO_ORDER
    assert DEMO_ORDER == (
        "bundles",
        "files",
        "postgres",
        "cache",
        "backups",
        "keys",
        "scratch",
        "orchestrator",
    )


@pytest.mark.parametrize("name", DEMO_ORDER)
def test_a_location_destroys_its_tenant_only_and_verifies_it_independently(
    platform: Platform, name: str
) -> None:
    settings = platform.settings
    for tenant in ("acme", "acme-corp"):  # acme-corp: the prefix neighbour
        take_backup(settings, tenant)
    case = platform.case("acme")
    export_and_deliver(platform, case)
    conforms(get_location(name, settings), case, holds_data=name in HOLDS_DATA)


def conforms(
    location: DataLocation,
    case: CaseRef,
    *,
    holds_data: bool,
    shared_copies: bool = False,
    neighbour_tenant: str = "acme-corp",
    estimated: bool = False,
) -> None:
    """The conformance contract, on a location holding `case`'s data (delivered): it describes
    itself, inventories in a dry run, removes every copy (or dates what must linger), verifies
    to zero independently, destroys again harmlessly, and the neighbour (acme-corp: a prefix
    of acme's id) keeps everything, unless the location's copies hold every tenant at once
    (backup sets). `estimated`: its sizes come from the server's table statistics, which a
    deletion elsewhere in the table changes (MariaDB's average row length)."""
    neighbour = CaseRef(tenant=neighbour_tenant, case_id=f"{neighbour_tenant}-000000000000")
    facts = location.describe()
    assert isinstance(facts, LocationFacts) and facts.method in ("clear", "purge")
    assert facts.media and facts.technique and facts.verification_method
    assert case.tenant not in facts.media  # the description names places, never a tenant

    dry = location.inventory(case, dry_run=True)
    assert dry.location == location.name
    if holds_data:
        assert dry.items > 0, f"{location.name} holds nothing of acme: the test would prove nothing"
    neighbour_before = location.inventory(neighbour, dry_run=True)

    removal = location.destroy(case)
    assert removal.technique and removal.method == facts.method
    remaining = location.verify(case)
    assert remaining.items == 0
    if removal.items_removed < removal.items_before:  # only copies that go by a date
        assert facts.lingering and remaining.pending_until is not None
    else:
        assert removal.items_removed == removal.items_before >= (1 if holds_data else 0)
    again = location.destroy(case)
    assert again.items_removed == 0 and location.verify(case).items == 0

    if not shared_copies:
        neighbour_after = location.inventory(neighbour, dry_run=True)
        assert neighbour_after.items == neighbour_before.items
        assert {t.qualified: t.rows for t in neighbour_after.tables} == {
            t.qualified: t.rows for t in neighbour_before.tables
        }
        if not estimated:
            assert neighbour_after.bytes == neighbour_before.bytes
            assert neighbour_after.tables == neighbour_before.tables


def test_the_export_reads_the_registered_sources_database_first(platform: Platform) -> None:
    assert export_order(platform.settings) == ("postgres", "files")


def test_an_unknown_location_names_the_known_ones_and_how_to_add_one(platform: Platform) -> None:
    from offboarding.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="this platform's are bundles, files") as error:
        get_location("search", platform.settings)
    assert "data map (OFFBOARD_DATAMAP)" in str(error.value)


def test_each_plug_in_is_registered_once_with_the_data_maps_model_of_its_kind() -> None:
    from offboarding.datamap import PLUGIN_SYSTEMS
    from offboarding.locations import PLUGINS

    assert [p.config for p in PLUGINS] == sorted(
        PLUGIN_SYSTEMS, key=[p.config for p in PLUGINS].index
    )
    assert {p.config for p in PLUGINS} == set(PLUGIN_SYSTEMS)
    assert len({p.kind for p in PLUGINS}) == len(PLUGINS)


def test_a_registration_declares_exactly_what_its_class_can_do() -> None:
    from offboarding.datamap import RedisSystem
    from offboarding.locations import Capability, Plugin, Stage
    from offboarding.locations.cache import RedisLocation
    from offboarding.locations.mariadb import MariaDBLocation

    with pytest.raises(TypeError, match="declares 'isolation check', but RedisLocation has no"):
        Plugin(kind="redis", config=RedisSystem, location=RedisLocation, summary="",
               capabilities=frozenset({Capability.ISOLATION}), stage=Stage.COPIES)  # fmt: skip
    with pytest.raises(TypeError, match="implements isolation check, person access, person"):
        Plugin(kind="redis", config=RedisSystem, location=MariaDBLocation, summary="",
               capabilities=frozenset(), stage=Stage.ROWS)  # fmt: skip
    with pytest.raises(TypeError, match='must have plugin: Literal\\["search"\\]'):
        Plugin(kind="search", config=RedisSystem, location=RedisLocation, summary="",
               capabilities=frozenset(), stage=Stage.COPIES)  # fmt: skip
