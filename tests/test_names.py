"""Names from the platform are data (issue 26, item 4): one text form of a table's name that is
never split at a dot, and one sanitiser between any name and a path or a bundle entry."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from offboarding.core.errors import ConfigurationError, IntegrityError, UnclassifiedDataError
from offboarding.core.names import inside, qualified, safe_segment, split_qualified, table_folder
from offboarding.locations.postgres import PostgresLocation
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver

# What PostgreSQL accepts in a quoted identifier of a UTF-8 database: any character but NUL.
NAME = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
)


@given(st.lists(NAME, min_size=2, max_size=3))
def test_a_qualified_name_splits_back_into_exactly_its_parts(parts: list[str]) -> None:
    assert split_qualified(qualified(*parts), len(parts)) == tuple(parts)


def test_plain_names_keep_their_familiar_form_and_dotted_ones_are_quoted() -> None:
    assert qualified("public", "posts") == "public.posts"
    assert qualified("public", "Posts") == "public.Posts"
    assert qualified("tenant_acme.eu", "notes") == '"tenant_acme.eu".notes'
    assert qualified("tenant_acme", "eu.notes") == 'tenant_acme."eu.notes"'
    assert qualified("s", 'say "hi"') == 's."say ""hi"""'
    parts = ("public", "documents", "object_key")
    assert split_qualified("public.documents.object_key", 3) == parts
    for wrong in ("posts", "a.b.c", '"open.b', 'a."b"c', "a.", ".b", 'a"b.c'):
        with pytest.raises(ConfigurationError, match="double-quoting any part"):
            split_qualified(wrong)


@given(NAME)
def test_a_segment_made_of_any_name_never_climbs_nor_separates(name: str) -> None:
    segment = safe_segment(name)
    assert segment not in ("", ".", "..")
    assert not {"/", "\\", ":"} & set(segment)
    assert len(segment.encode()) <= 200


@given(st.lists(st.tuples(NAME, NAME), min_size=1, max_size=8, unique=True))
def test_table_folders_stay_inside_and_are_distinct_even_ignoring_case(
    tables: list[tuple[str, str]],
) -> None:
    twins = [(schema.swapcase(), name.swapcase()) for schema, name in tables]
    names = sorted({qualified(*t) for t in tables + twins})
    folders = [table_folder(n) for n in names]
    assert len({f.casefold() for f in folders}) == len(names)
    for folder in folders:
        segments = folder.split("/")
        assert segments[0] == "tables" and segments[-1] == "" and len(segments) == 3
        assert segments[1] not in ("", ".", "..") and "\\" not in segments[1]


def test_a_path_that_would_climb_out_of_its_root_is_refused(tmp_path: Path) -> None:
    assert inside(tmp_path, "tables/public.posts/part-00000.parquet").is_relative_to(tmp_path)
    for climbing in ("../x", "tables/../../x", "/etc/passwd", "", "a//b", "./a"):
        with pytest.raises(IntegrityError, match="would leave"):
            inside(tmp_path, climbing)


def test_a_table_named_to_climb_out_of_the_bundle_stays_inside_it(platform: Platform) -> None:
    """A table named `../../../../escaped` used to become a zip entry with `..` segments (a
    zip-slip for the client), and its Parquet was written outside the scratch area."""
    platform.query(
        'CREATE TABLE public."../../../../escaped" (id int PRIMARY KEY, tenant_id text NOT NULL '
        "REFERENCES tenants (id), body text); "
        'CREATE INDEX ON public."../../../../escaped" (tenant_id); '
        "INSERT INTO public.\"../../../../escaped\" VALUES (1, 'acme', 'ours'), "
        "(2, 'globex', 'theirs')"
    )
    case = platform.case("acme")
    _, _, bundle = export_and_deliver(platform, case)
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
    assert all(".." not in n.split("/") and not n.startswith("/") for n in names)
    (escaped,) = [n for n in names if "escaped" in n]
    assert escaped.count("/") == 2 and escaped.startswith("tables/public.")  # one folder
    destroy_everything(platform, case)
    assert platform.query('SELECT tenant_id FROM public."../../../../escaped"') == [("globex",)]


def test_a_dotted_tenant_id_keeps_its_own_schema_and_its_neighbour_keeps_its_own(
    platform: Platform, tmp_path: Path
) -> None:
    """`tenant_acme.eu` used to be read as schema `tenant_acme`: its table was given to acme,
    acme's inventory failed, and acme.eu's export missed its whole schema."""
    platform.query(
        "INSERT INTO tenants (id, name, region, contact_email) "
        "VALUES ('acme.eu', 'Acme Europe', 'europe-west1', 'dpo@acme-eu.example');"
        'CREATE SCHEMA "tenant_acme.eu";'
        'CREATE TABLE "tenant_acme.eu".notes (id int PRIMARY KEY, body text);'
        "INSERT INTO \"tenant_acme.eu\".notes VALUES (1, 'eu note'), (2, 'second')"
    )
    location = PostgresLocation(platform.settings)
    acme = location.inventory(platform.case("acme"))
    assert {t.qualified for t in acme.tables} >= {"tenant_acme.custom_fields"}
    assert not [t for t in acme.tables if "eu" in t.qualified]
    case = platform.case("acme.eu")
    eu = location.inventory(case)
    assert {t.qualified: t.rows for t in eu.tables if t.scope == "schema"} == {
        '"tenant_acme.eu".notes': 2
    }
    acme_before = platform.fingerprint("acme")
    _, _, bundle = export_and_deliver(platform, case)
    with zipfile.ZipFile(bundle) as archive:
        (entry,) = [n for n in archive.namelist() if "notes" in n]
        archive.extract(entry, tmp_path)
    assert pq.read_table(tmp_path / entry).column("body").to_pylist() == ["eu note", "second"]
    destroy_everything(platform, case)
    assert platform.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_acme.eu'") == [
        (0,)
    ]
    assert platform.fingerprint("acme") == acme_before


def test_a_table_whose_name_holds_a_percent_sign_stops_the_case_until_declared(
    platform: Platform,
) -> None:
    """psycopg reads every % beside a parameter as a placeholder, in a quoted identifier too
    (psycopg/psycopg2#825): no statement naming such a table can be run with a parameter."""
    platform.query(
        'CREATE TABLE public."rates_50%" (id int PRIMARY KEY, tenant_id text NOT NULL '
        "REFERENCES tenants (id))"
    )
    with pytest.raises(UnclassifiedDataError, match=r"public\.rates_50% \(a % in its"):
        PostgresLocation(platform.settings).inventory(platform.case("acme"))
    declared = platform.settings.replace(
        excluded_tables={"public.rates_50%": "exchange rates, the platform's, no tenant data"}
    )
    PostgresLocation(declared).inventory(platform.case("acme"))  # settled
