"""The client's retention periods (clause 2.2.2: data is kept only for the period the client
fixes), as rules run every day with a signed record of each run.

A rule names one table of the tenant's, the column dating each row, and a period (PostgreSQL's
interval, so "1 year" and "6 months" keep the calendar), and optionally a column naming an
object of the files store that goes with its row. A run deletes the tenant's rows dated before
now minus the period, nobody else's:

- the rule is checked against the catalogue when it is set and again at every run: the table
  must hold this tenant's rows (its column, a foreign key to them, or its own schema) and no
  row of it may belong to two tenants at once; the tenants table, global tables and another
  tenant's schema are refused;
- the rows are marked (primary keys) and locked, and a row outside them that references one,
  as committed once the lock holds new ones off, stops the rule for this run (a cascade would
  delete it, a set-null change it): nothing is deleted and the record says why;
- the DELETE's condition is the tenant's rows AND the age condition; it must remove exactly
  the marked rows, all of them gone afterwards, or the transaction is abandoned;
- the objects the deleted rows named, under the tenant's prefix, go with them, every
  generation, before the commit.

Each run's record (`retention/<tenant>/<run>.json`, signed) names the rules, their cutoff and
the counts. A rule set or retired is recorded too (`retention/<tenant>/rules/<ref>-<what>.json`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import ConfigurationError, TenantError
from offboarding.core.records import CaseRef
from offboarding.people import keep_statement, pseudonym
from offboarding.persons.records import archive_signed
from offboarding.persons.systems import rules_home
from offboarding.registry import TenantRegistry
from offboarding.trail.records import RetentionRuleRecorded, RetentionRunRecorded, RuleRun

__all__ = [
    "RetentionRule",
    "RuleResult",
    "TenantRun",
    "list_rules",
    "retire_rule",
    "run_rules",
    "set_rule",
]

_COLUMNS = (
    "ref, tenant, target, age_column, period::text AS period, files, statement, created_at, "
    "retired_at, last_run_at, last_deleted, last_refusal"
)


@dataclass(frozen=True)
class RetentionRule:
    ref: str
    tenant: str
    target: str  # schema.table
    age_column: str
    period: str  # PostgreSQL's text form of the interval, e.g. "1 year"
    files: str | None
    statement: str | None
    created_at: datetime
    retired_at: datetime | None
    last_run_at: datetime | None
    last_deleted: int | None
    last_refusal: str | None = None  # the ledger's full reason; never in records or logs


@dataclass(frozen=True)
class RuleResult:
    rule: str
    target: str
    cutoff: datetime
    deleted: int
    files: int
    refused: str = ""  # why this run deleted nothing although rows were past the period
    details: str = ""  # the full reason, kept in the ledger only (it may quote object keys)


@dataclass(frozen=True)
class TenantRun:
    tenant: str
    run: str
    results: list[RuleResult] = field(default_factory=list)
    record_key: str = ""
    skipped: str = ""  # why the tenant's rules did not run (e.g. it is being offboarded)
    failed: bool = False  # skipped for a reason someone must settle


def _row(row: dict[str, Any]) -> RetentionRule:
    return RetentionRule(**row)


def set_rule(
    settings: Settings,
    tenant: str,
    target: str,
    age_column: str,
    period: str,
    *,
    name: str,
    files: str | None = None,
    note: str = "",
) -> RetentionRule:
    """Record a rule the client set (who set it is a statement); refused when it could touch
    another tenant's rows or its period is no positive interval."""
    tenant = validate_tenant_id(tenant)
    TenantRegistry(settings).get(tenant)
    registry = TenantRegistry(settings)
    with registry.connect() as conn:
        try:
            with conn.transaction():
                row = conn.execute(
                    "SELECT %s::interval > interval '0' AS positive, %s::interval::text AS text",
                    (period, period),
                ).fetchone()
        except psycopg.DataError:
            raise TenantError(
                f"period {period!r} is not an interval: write e.g. '1 year', '6 months', '90 days'"
            ) from None
        if row is None or not row["positive"]:
            raise TenantError(f"period {period!r} is not a positive interval")
    rules_home(settings).check_retention_rule(tenant, target, age_column, files)
    said = keep_statement(settings, tenant, "rule", name=name, note=note)
    ref = f"rr-{secrets.token_hex(8)}"
    with registry.connect() as conn:
        rule = conn.execute(
            "INSERT INTO offboarding.retention_rules (ref, tenant, target, age_column, period, "
            f"files, statement) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (ref, tenant, target, age_column, period, files, said),
        ).fetchone()
    assert rule is not None
    _record_rule(settings, _row(rule), "set", name)
    return _row(rule)


def _record_rule(settings: Settings, rule: RetentionRule, what: str, name: str) -> None:
    archive_signed(settings, f"retention/{rule.tenant}/rules/{rule.ref}-{what}.json",
        RetentionRuleRecorded(
            record=f"retention-rule-{what}", rule=rule.ref, tenant=rule.tenant,
            table=rule.target, age_column=rule.age_column, period=rule.period,
            files=rule.files, statement=rule.statement,
            by=pseudonym(settings, CaseRef(tenant=rule.tenant, case_id=rule.ref), name),
        ),
    )  # fmt: skip


def retire_rule(settings: Settings, tenant: str, ref: str, *, name: str) -> RetentionRule:
    """Retire one of `tenant`'s rules (who asked is that tenant's person): another tenant's
    rule is not found."""
    with TenantRegistry(settings).connect() as conn:
        row = conn.execute(
            "UPDATE offboarding.retention_rules SET retired_at = now() WHERE ref = %s AND "
            f"tenant = %s AND retired_at IS NULL RETURNING {_COLUMNS}",
            (ref, validate_tenant_id(tenant)),
        ).fetchone()
    if row is None:
        raise TenantError(
            f"tenant {tenant!r} has no active retention rule {ref!r}: `offboard retention list "
            f"{tenant}` lists its rules"
        )
    rule = _row(row)
    _record_rule(settings, rule, "retired", name)
    return rule


def list_rules(
    settings: Settings, tenant: str | None = None, *, active: bool = False
) -> list[RetentionRule]:
    where = ["TRUE"]
    params: list[Any] = []
    if tenant:
        where.append("tenant = %s")
        params.append(tenant)
    if active:
        where.append("retired_at IS NULL")
    with TenantRegistry(settings).connect() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM offboarding.retention_rules WHERE {' AND '.join(where)} "
            "ORDER BY tenant, created_at, ref",
            params,
        ).fetchall()
    return [_row(r) for r in rows]


def run_rules(
    settings: Settings,
    tenants: list[str] | None = None,
    *,
    now: datetime | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> list[TenantRun]:
    """Every active rule (of `tenants`, or of every tenant), each in its own transaction; one
    signed record per tenant and run. A tenant being offboarded is skipped: its destruction
    removes everything."""
    now = now or datetime.now(UTC)
    rules = [r for r in list_rules(settings, active=True) if not tenants or r.tenant in tenants]
    by_tenant: dict[str, list[RetentionRule]] = {}
    for rule in rules:
        by_tenant.setdefault(rule.tenant, []).append(rule)
    runs: list[TenantRun] = []
    registry = TenantRegistry(settings)
    for tenant, tenant_rules in by_tenant.items():
        run = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        try:
            status = registry.get(tenant).status
        except TenantError:  # the platform deleted the tenant: the others' rules still run
            runs.append(TenantRun(tenant, run, failed=True, skipped=(
                "the tenant is not in the platform's tenants table any more, so its rules did "
                f"not run: retire them (`offboard retention retire {tenant} rr-…`) or restore "
                "the tenant"
            )))  # fmt: skip
            continue
        if status != "active":
            runs.append(TenantRun(tenant, run, skipped=f"the tenant is {status}"))
            continue
        results = []
        for rule in tenant_rules:
            try:
                outcome = rules_home(settings).run_retention_rule(
                    tenant, rule.ref, rule.target, rule.age_column, rule.period, rule.files, now
                )
                result = RuleResult(
                    rule.ref, rule.target, outcome.cutoff, outcome.deleted, outcome.files,
                    refused=outcome.refused,
                )  # fmt: skip
            except (TenantError, ConfigurationError) as error:  # the catalogue or rows changed
                # Its text may quote the platform's object keys (file names): the ledger keeps
                # it; the signed record, the log and the artifact only point there.
                result = RuleResult(
                    rule.ref, rule.target, now, 0, 0, details=str(error),
                    refused=f"the rule could not run ({type(error).__name__}); why is in the "
                    f"ledger: `offboard retention list {tenant}`",
                )  # fmt: skip
            refused = f" (refused: {result.refused})" if result.refused else ""
            say(f"{tenant} {rule.ref} {rule.target}: {result.deleted} row(s) past "
                f"{rule.period} deleted{refused}")  # fmt: skip
            results.append(result)
        key = f"retention/{tenant}/{run}.json"
        archive_signed(settings, key, RetentionRunRecorded(
            tenant=tenant, run=run, now=now,
            rules=[RuleRun(rule=r.rule, table=r.target, cutoff=r.cutoff, deleted=r.deleted,
                           files=r.files, refused=r.refused or None,
                           period=next(x.period for x in tenant_rules if x.ref == r.rule),
                           age_column=next(x.age_column for x in tenant_rules
                                           if x.ref == r.rule))
                   for r in results],
            proof="per rule, in one transaction: the rows past the cutoff marked by primary "
            "key; no row outside them referencing one; the DELETE on the tenant's own rows "
            "and the age condition removed exactly the marked rows, none left; the objects "
            "they named deleted, every generation, before the commit",
        ))  # fmt: skip
        with registry.connect() as conn:
            for result in results:
                conn.execute(
                    "UPDATE offboarding.retention_rules SET last_run_at = %s, last_deleted = %s, "
                    "last_refusal = %s WHERE ref = %s",
                    (now, result.deleted, result.details or result.refused or None, result.rule),
                )
        runs.append(TenantRun(tenant, run, results, key))
    return runs
