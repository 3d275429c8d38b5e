"""Pure planning rules: classification, deletion order, the 90-day schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offboarding.core.errors import ConfigurationError, DeadlineError, UnclassifiedDataError
from offboarding.planning import (
    CatalogTable,
    ForeignKey,
    classify_tables,
    deletion_order,
    missing_indexes,
    reached_through_indexes,
)
from offboarding.planning import destruction_schedule as schedule


def table(name: str, columns: tuple[str, ...], *fks: tuple[str, str]) -> CatalogTable:
    return CatalogTable(
        schema="public",
        name=name,
        columns=columns,
        primary_key=("id",),
        foreign_keys=tuple(ForeignKey((col,), f"public.{ref}", ("id",)) for col, ref in fks),
    )


CATALOG = [
    table("tenants", ("id",)),
    table("plans", ("id",)),
    table("posts", ("id", "tenant_id")),
    table("comments", ("id", "post_id"), ("post_id", "posts")),
    table("reactions", ("id", "comment_id", "parent_id"), ("comment_id", "comments"),
          ("parent_id", "reactions")),
]  # fmt: skip


def classify(tables: list[CatalogTable], **overrides: object) -> object:
    options: dict[str, object] = {
        "tenant_column": "tenant_id",
        "registry": "public.tenants",
        "global_tables": {"public.plans": "catalogue"},
        "excluded": {},
    }
    options.update(overrides)
    return classify_tables(tables, **options)  # type: ignore[arg-type]


def test_derived_tables_are_found_through_chains_of_any_depth() -> None:
    result = classify(CATALOG)
    assert result.tenant_scoped == ("public.posts",)  # type: ignore[attr-defined]
    assert set(result.derived) == {"public.comments", "public.reactions"}  # type: ignore[attr-defined]
    # the self-reference is not a route to the tenant
    assert [fk.references for fk in result.derived["public.reactions"]] == ["public.comments"]  # type: ignore[attr-defined]


def test_an_unclassified_table_names_itself_and_the_fix() -> None:
    with pytest.raises(UnclassifiedDataError) as raised:
        classify([*CATALOG, table("feature_flags", ("id", "name"))]).require_complete()  # type: ignore[attr-defined]
    assert "public.feature_flags" in str(raised.value)
    assert "OFFBOARD_GLOBAL_TABLES" in str(raised.value)


def test_tables_in_a_tenant_schema_belong_to_that_tenant() -> None:
    own = CatalogTable(schema="tenant_acme-corp", name="custom", columns=("id",), primary_key=())
    result = classify([*CATALOG, own])
    assert result.schema_tables == {"tenant_acme-corp.custom": "acme-corp"}  # type: ignore[attr-defined]
    assert result.schema_tables_of("acme") == ()  # type: ignore[attr-defined]


def test_a_schema_pattern_without_the_tenant_placeholder_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="exactly once"):
        classify(CATALOG, tenant_schema_pattern="tenants")


def test_a_global_table_that_does_not_exist_is_refused() -> None:
    with pytest.raises(UnclassifiedDataError, match="does not exist"):
        classify(CATALOG, global_tables={"public.plans": "x", "public.gone": "typo"})


def test_children_are_deleted_before_parents() -> None:
    order = deletion_order(
        {"posts": set(), "comments": {"posts"}, "reactions": {"comments", "reactions"}}
    )
    assert order == ["reactions", "comments", "posts"]


def test_a_cycle_between_tables_is_refused() -> None:
    with pytest.raises(UnclassifiedDataError, match="cycle"):
        deletion_order({"a": {"b"}, "b": {"a"}})


@given(st.integers(min_value=1, max_value=12).flatmap(
    lambda n: st.lists(st.lists(st.integers(0, n - 1), max_size=4), min_size=n, max_size=n)
))  # fmt: skip
def test_deletion_order_respects_every_foreign_key(parents_by_index: list[list[int]]) -> None:
    # Only edges to lower indexes: an acyclic graph, as the database would have.
    graph = {f"t{i}": {f"t{p}" for p in ps if p < i} for i, ps in enumerate(parents_by_index)}
    order = deletion_order(graph)
    assert sorted(order) == sorted(graph)
    position = {name: i for i, name in enumerate(order)}
    for child, parents in graph.items():
        assert all(position[child] < position[parent] for parent in parents)


ACK = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_destruction_is_scheduled_after_the_grace_and_due_within_90_days() -> None:
    plan = schedule(ACK, timedelta(days=30))
    assert plan.scheduled_for == ACK + timedelta(days=30)
    assert plan.deadline == ACK + timedelta(days=90)


def test_a_grace_beyond_90_days_is_refused() -> None:
    with pytest.raises(DeadlineError, match="90-day"):
        schedule(ACK, timedelta(days=91))


def test_a_naive_acknowledgement_time_is_refused() -> None:
    with pytest.raises(DeadlineError, match="time zone"):
        schedule(ACK.replace(tzinfo=None), timedelta(days=1))


def test_destruction_starts_early_enough_for_copies_that_linger_and_keeps_a_margin() -> None:
    asked_90 = schedule(ACK, timedelta(days=90))
    assert asked_90.scheduled_for == ACK + timedelta(days=88)  # never at the deadline itself
    kms = schedule(ACK, timedelta(days=80), lead_time=timedelta(days=30))  # key destroy delay
    assert kms.scheduled_for == ACK + timedelta(days=58)
    assert kms.deadline == ACK + timedelta(days=90)
    assert schedule(ACK, timedelta(days=10), lead_time=timedelta(days=7)).scheduled_for == (
        ACK + timedelta(days=10)
    )
    with pytest.raises(DeadlineError, match="no time"):
        schedule(ACK, timedelta(days=1), lead_time=timedelta(days=89))


def test_columns_that_select_tenant_rows_without_an_index_are_named() -> None:
    tenants = CatalogTable("public", "tenants", ("id",), ("id",))
    posts = CatalogTable(
        "public", "posts", ("id", "tenant_id"), ("id",),
        (ForeignKey(("tenant_id",), "public.tenants", ("id",)),),
    )  # fmt: skip
    comments = CatalogTable(
        "public", "comments", ("id", "post_id", "parent_id"), ("id",),
        (ForeignKey(("post_id",), "public.posts", ("id",)),
         ForeignKey(("parent_id",), "public.comments", ("id",))),
    )  # fmt: skip
    tables = [tenants, posts, comments]
    classification = classify_tables(
        tables, tenant_column="tenant_id", registry="public.tenants", global_tables={}, excluded={}
    )
    bare = missing_indexes(classification, tables, {"public.posts": [("id",)]})
    assert {(m.table, m.columns) for m in bare} == {
        ("public.posts", ("tenant_id",)),
        ("public.comments", ("post_id",)),
        ("public.comments", ("parent_id",)),  # the reply thread, deleted leaves first
    }
    indexed = {
        "public.posts": [("tenant_id", "id")],  # leads with the column: serves it
        "public.comments": [("parent_id",), ("id", "post_id")],  # post_id not leading: no
    }
    assert [(m.table, m.columns) for m in missing_indexes(classification, tables, indexed)] == [
        ("public.comments", ("post_id",))
    ]
    assert not reached_through_indexes(classification, tables, indexed)
    indexed["public.comments"].append(("post_id",))
    assert reached_through_indexes(classification, tables, indexed)
    # A key into a tenant's table from a table that is not the tenant's (an audit log): its
    # referential check runs on every delete, so it too needs its index.
    audit = CatalogTable(
        "public", "audit", ("id", "post_id"), ("id",),
        (ForeignKey(("post_id",), "public.posts", ("id",)),),
    )  # fmt: skip
    everything = [*tables, audit]
    with_audit = classify_tables(
        everything, tenant_column="tenant_id", registry="public.tenants",
        global_tables={"public.audit": "platform audit log"}, excluded={},
    )  # fmt: skip
    assert not reached_through_indexes(with_audit, everything, indexed)
    assert reached_through_indexes(
        with_audit, everything, {**indexed, "public.audit": [("post_id",)]}
    )


def test_a_key_to_the_tenants_table_names_the_owner_column_unless_the_tenant_column_does() -> None:
    tables = [
        table("tenants", ("id",)),
        table("channels", ("id", "team"), ("team", "tenants")),
        table("transfers", ("id", "tenant_id", "to_tenant"), ("to_tenant", "tenants")),
    ]
    result = classify_tables(
        tables, tenant_column="tenant_id", registry="public.tenants", global_tables={}, excluded={}
    )
    assert result.tenant_scoped == ("public.channels", "public.transfers")
    assert result.owner_column("public.channels") == "team"
    assert result.owner_column("public.transfers") == "tenant_id"  # its own column wins
