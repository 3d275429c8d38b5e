"""The tenants registry: who the tenant is (the platform's own tenants table, read through the
columns the data map names) and where its case stands (the pipeline's own ledger).

The platform's table is read, never written: the pipeline keeps status, holds and dates in
`offboarding.ledger`, a table of its own schema in the same database, created on first use.
Freezing is the platform's: the data map's freeze hook makes the tenant read-only, and its
check must then say so. The ledger row outlives the tenant's data: it keeps what the audit
record needs, and the date after which the contact details must go (clause 1.1.4: three
years after the end).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from offboarding.core.config import Settings, validate_tenant_id
from offboarding.core.errors import (
    ConfigurationError,
    DuplicateCaseError,
    LegalHoldError,
    ServiceError,
    TenantError,
)
from offboarding.core.names import split_qualified
from offboarding.datamap import HttpFreezeHook, TenantsTable, datamap_of

__all__ = ["LEDGER_SCHEMA", "TenantRecord", "TenantRegistry", "registry_table"]

CONTACT_RETENTION_YEARS = 3
LEDGER_SCHEMA = "offboarding"
_LEDGER = sql.Identifier(LEDGER_SCHEMA, "ledger")
_LEDGER_DDL = sql.SQL(
    "CREATE SCHEMA IF NOT EXISTS {schema}; "
    "CREATE TABLE IF NOT EXISTS {ledger} ("
    " tenant text PRIMARY KEY,"
    " status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'destroyed')),"
    " legal_hold boolean NOT NULL DEFAULT false,"
    " legal_hold_reason text,"
    " frozen_at timestamptz,"
    " offboarding_case text,"
    " destroyed_at timestamptz,"
    " contact_delete_after date);"
    # When the contacts went (added in 0.3: an older ledger gains the column).
    "ALTER TABLE {ledger} ADD COLUMN IF NOT EXISTS contacts_forgotten_at timestamptz;"
    # What people said (names, notes, reasons), under an opaque reference that the orchestrator
    # and the archive carry instead, and each case's pseudonym key (offboarding/people.py):
    # both go with the contact details, three years after the end (clause 1.1.4).
    "CREATE TABLE IF NOT EXISTS {statements} ("
    " ref text PRIMARY KEY,"
    " tenant text NOT NULL,"
    " kind text NOT NULL,"
    " fields jsonb NOT NULL,"
    " recorded_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE IF NOT EXISTS {case_keys} ("
    " case_id text PRIMARY KEY,"
    " tenant text NOT NULL,"
    " key bytea NOT NULL,"
    " created_at timestamptz NOT NULL DEFAULT now());"
    # Forgetting a tenant's people costs what the tenant has, not what the platform has.
    "CREATE INDEX IF NOT EXISTS statements_tenant ON {statements} (tenant);"
    "CREATE INDEX IF NOT EXISTS case_keys_tenant ON {case_keys} (tenant);"
    # Requests about one person (clause 2.2.7), with their deadline (offboarding/persons).
    "CREATE TABLE IF NOT EXISTS {person_requests} ("
    " ref text PRIMARY KEY,"
    " tenant text NOT NULL,"
    " person text,"
    " kind text NOT NULL CHECK (kind IN ('access', 'portability', 'erasure', 'rectification',"
    "  'restriction')),"
    " origin text NOT NULL CHECK (origin IN ('client', 'direct')),"
    " statement text,"
    " received_at timestamptz NOT NULL,"
    " due_on date NOT NULL,"
    " extended_by text,"
    " status text NOT NULL CHECK (status IN ('open', 'forwarded', 'answered')),"
    " forwarded_at timestamptz,"
    " answered_at timestamptz);"
    "CREATE INDEX IF NOT EXISTS person_requests_tenant ON {person_requests} (tenant, status);"
    # The client's retention periods (clause 2.2.2), run daily (offboarding/persons/retention).
    "CREATE TABLE IF NOT EXISTS {retention_rules} ("
    " ref text PRIMARY KEY,"
    " tenant text NOT NULL,"
    " target text NOT NULL,"
    " age_column text NOT NULL,"
    " period interval NOT NULL CHECK (period > interval '0'),"
    " files text,"
    " statement text,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " retired_at timestamptz,"
    " last_run_at timestamptz,"
    " last_deleted bigint);"
    # Why the last run could not apply a rule, in full: it may quote the platform's object
    # keys, so it stays here; records, logs and artifacts say only that it is here (0.4).
    "ALTER TABLE {retention_rules} ADD COLUMN IF NOT EXISTS last_refusal text;"
    # Four eyes (offboarding/scheduling/approvals.py): an action that shortens or lifts a
    # protection waits here for a second person.
    "CREATE TABLE IF NOT EXISTS {approvals} ("
    " ref text PRIMARY KEY,"
    " tenant text NOT NULL,"
    " case_id text,"
    " action text NOT NULL CHECK (action IN ('early-destruction', 'lift-hold', 'lift-hold-now',"
    "  'postpone-to-limit')),"
    " params jsonb NOT NULL DEFAULT '{{}}',"
    " requested_statement text NOT NULL,"
    " requested_at timestamptz NOT NULL DEFAULT now(),"
    " approved_statement text,"
    " approved_at timestamptz,"
    " status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', "
    "  'withdrawn')));"
    "CREATE INDEX IF NOT EXISTS approvals_pending ON {approvals} (tenant) WHERE status = 'pending';"
    "CREATE INDEX IF NOT EXISTS retention_rules_tenant ON {retention_rules} (tenant)"
).format(
    schema=sql.Identifier(LEDGER_SCHEMA), ledger=_LEDGER,
    statements=sql.Identifier(LEDGER_SCHEMA, "statements"),
    case_keys=sql.Identifier(LEDGER_SCHEMA, "case_keys"),
    person_requests=sql.Identifier(LEDGER_SCHEMA, "person_requests"),
    retention_rules=sql.Identifier(LEDGER_SCHEMA, "retention_rules"),
    approvals=sql.Identifier(LEDGER_SCHEMA, "approvals"),
)  # fmt: skip
_ready: set[str] = set()  # databases whose ledger exists (per process)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the error it is here: following it would send the hook's
    headers (its credentials) to whatever host the answer names."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


_FREEZE_OPENER = urllib.request.build_opener(_NoRedirects())


def _call_freeze_api(hook: HttpFreezeHook, tenant: str) -> None:
    """The platform's freeze call, then its check: the answer's field must be true. Redirects
    are not followed."""
    encoded = urllib.parse.quote(tenant, safe="")

    def call(method: str, template: str) -> bytes:
        url = template.replace("{tenant}", encoded)
        where = urllib.parse.urlsplit(url)
        # http(s) only: the data map's pattern refuses any other scheme.
        request = urllib.request.Request(url, method=method, headers=hook.headers)  # noqa: S310
        if method != "GET":
            request.data = b""
        try:
            with _FREEZE_OPENER.open(request, timeout=hook.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            moved = (
                " (a redirect: it is not followed, so the hook's headers never reach another "
                "host; put the final address in the data map)"
                if 300 <= error.code < 400
                else ""
            )
            raise TenantError(
                f"the freeze hook's {method} to {where.scheme}://{where.netloc}{where.path} "
                f"answered {error.code} {error.reason}{moved}: tenant {tenant!r} is not frozen. "
                "Check [tenants.freeze] in the data map (url, headers) and the platform's API"
            ) from None
        except (urllib.error.URLError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise ServiceError(
                f"the freeze hook's {method} to {where.scheme}://{where.netloc} failed: "
                f"{reason}. Check the platform's API address in [tenants.freeze]"
            ) from None

    call(hook.method, hook.url)
    try:
        answer = json.loads(call("GET", hook.check_url))
    except json.JSONDecodeError:
        answer = None
    value = answer.get(hook.check_field) if isinstance(answer, dict) else None
    if value is not True:
        raise TenantError(
            f"the freeze hook ran for tenant {tenant!r}, but its check answered "
            f"{hook.check_field}={value!r}, not true: the platform may still accept the "
            "tenant's writes. Fix [tenants.freeze] in the data map (check_url, check_field)"
        )


def registry_table(settings: Settings) -> str:
    """schema.table of the platform's tenants: the data map's, else OFFBOARD_REGISTRY_TABLE."""
    return datamap_of(settings).tenants.table or settings.platform.registry_table


@dataclass(frozen=True)
class TenantRecord:
    id: str
    name: str
    region: str
    status: str
    legal_hold: bool
    legal_hold_reason: str | None
    contact_email: str | None
    frozen_at: datetime | None
    offboarding_case: str | None = None
    age_recipient: str | None = None  # the client's public key: bundles are encrypted to it

    @property
    def contact_domain(self) -> str:
        """The only part of the contact address that may appear in logs."""
        return (self.contact_email or "").rpartition("@")[2] or "(none)"

    def require_contact(self) -> str:
        """The client's contact address: a case cannot deliver without one."""
        if not self.contact_email or "@" not in self.contact_email:
            raise TenantError(
                f"tenant {self.id!r} has no contact e-mail in the tenants registry: add the "
                "client's contact (contact_email), then retry the case; nothing was sent"
            )
        return self.contact_email


def _ledger_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AS found", (f"{LEDGER_SCHEMA}.ledger",)
    ).fetchone()
    return bool(row and (row["found"] if isinstance(row, dict) else row[0]))


class TenantRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mapping: TenantsTable = datamap_of(settings).tenants
        schema, name = split_qualified(registry_table(settings))
        self.table = sql.Identifier(schema, name)

    def connect(self, *, create: bool = True) -> psycopg.Connection[dict[str, Any]]:
        """A connection to the pipeline's ledger database (OFFBOARD_LEDGER_URL, by default the
        platform's), its ledger created there first unless `create` is false (reading writes
        nothing)."""
        dsn = self.settings.require_ledger()
        conn = psycopg.connect(dsn, row_factory=dict_row)
        if create and dsn not in _ready:
            with conn.transaction():  # one creator at a time, whatever runs at once
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('offboarding.ledger'))")
                conn.execute(_LEDGER_DDL)
            _ready.add(dsn)
        return conn

    def _platform(self) -> psycopg.Connection[dict[str, Any]]:
        """A connection to the platform's database, where its tenants table is."""
        return psycopg.connect(self.settings.require_database(), row_factory=dict_row)

    def _column(self, name: str | None, alias: str) -> sql.Composable:
        value = (
            sql.SQL("t.{}::text").format(sql.Identifier(name)) if name else sql.SQL("NULL::text")
        )
        return sql.SQL("{} AS {}").format(value, sql.Identifier(alias))

    def _rows(self, tenant: str | None) -> list[dict[str, Any]]:
        """The tenants table's rows (one tenant's, or all), through the data map's columns."""
        m = self.mapping
        where = (
            sql.SQL("t.{}::text = %s").format(sql.Identifier(m.id))
            if tenant is not None
            else sql.SQL("TRUE")
        )
        query = sql.SQL(
            "SELECT {id}, {name}, {region}, {contact}, {recipient} FROM {table} t WHERE {where}"
        ).format(
            id=self._column(m.id, "id"), name=self._column(m.name, "name"),
            region=self._column(m.region, "region"),
            contact=self._column(m.contact, "contact_email"),
            recipient=self._column(m.recipient, "age_recipient"), table=self.table, where=where,
        )  # fmt: skip
        try:
            with self._platform() as conn:
                return conn.execute(query, (tenant,) if tenant is not None else None).fetchall()
        except psycopg.errors.UndefinedColumn as error:
            raise ConfigurationError(
                f"the tenants table {registry_table(self.settings)} has no column the data map's "
                f"[tenants] names ({str(error).splitlines()[0]}): fix the column names there"
            ) from None

    def _ledger(self, tenant: str | None) -> dict[str, dict[str, Any]]:
        """The ledger's entries (one tenant's, or all), by tenant; none before the first case
        (the ledger is not created by reading)."""
        with self.connect(create=False) as conn:
            if not _ledger_exists(conn):
                return {}
            rows = conn.execute(
                sql.SQL(
                    "SELECT tenant, status, legal_hold, legal_hold_reason, frozen_at, "
                    "offboarding_case FROM {} WHERE %(t)s::text IS NULL OR tenant = %(t)s"
                ).format(_LEDGER),
                {"t": tenant},
            ).fetchall()
        return {str(r["tenant"]): r for r in rows}

    def get(self, tenant: str) -> TenantRecord:
        validate_tenant_id(tenant)
        rows = self._rows(tenant)
        if not rows:
            raise TenantError(
                f"tenant {tenant!r} is not in the platform's tenants table "
                f"{registry_table(self.settings)}: check the id (ids are exact, 'acme' is not "
                "'acme-corp' nor 'ACME')"
            )
        row, entry = rows[0], self._ledger(tenant).get(tenant, {})
        return TenantRecord(
            id=row["id"], name=row["name"] or row["id"], region=row["region"] or "",
            status=entry.get("status") or "active", legal_hold=bool(entry.get("legal_hold")),
            legal_hold_reason=entry.get("legal_hold_reason"),
            contact_email=row["contact_email"], frozen_at=entry.get("frozen_at"),
            offboarding_case=entry.get("offboarding_case"),
            age_recipient=(row["age_recipient"] or "").strip() or None,
        )  # fmt: skip

    def tenants(self, status: str | None = None) -> list[str]:
        """Tenant ids, optionally only those with `status` ('active', 'frozen', 'destroyed')."""
        ledger = self._ledger(None)
        ids = sorted(str(row["id"]) for row in self._rows(None))
        return [
            t
            for t in ids
            if status is None or (ledger.get(t, {}).get("status") or "active") == status
        ]

    def freeze(self, tenant: str, case_id: str) -> TenantRecord:
        """Open the tenant's case in the ledger and make it read-only through the data map's
        freeze hook: idempotent for that case, refused for a second one (two events never
        open two cases) and once destroyed. One statement decides the case, so two cases
        starting at once cannot both win."""
        record = self.get(tenant)
        if record.status == "destroyed":
            raise TenantError(
                f"tenant {tenant!r} was already offboarded and destroyed: nothing to export"
            )
        with self.connect() as conn:
            row = conn.execute(
                sql.SQL(
                    "INSERT INTO {l} AS l (tenant, status, frozen_at, offboarding_case) "
                    "VALUES (%s, 'frozen', now(), %s) ON CONFLICT (tenant) DO UPDATE SET "
                    "status = 'frozen', frozen_at = coalesce(l.frozen_at, now()), "
                    "offboarding_case = coalesce(l.offboarding_case, excluded.offboarding_case) "
                    "RETURNING offboarding_case"
                ).format(l=_LEDGER),
                (tenant, case_id),
            ).fetchone()
        owner = row["offboarding_case"] if row else None
        if owner != case_id:
            raise DuplicateCaseError(
                f"tenant {tenant!r} already has offboarding case {owner}: no second case is "
                "opened. Follow that case in the Prefect UI",
                existing_case=str(owner),
            )
        self._run_freeze_hook(tenant)
        return self.get(tenant)

    def _run_freeze_hook(self, tenant: str) -> None:
        hook = self.mapping.freeze
        if hook is None:
            return
        if isinstance(hook, HttpFreezeHook):
            _call_freeze_api(hook, tenant)
            return
        with self._platform() as conn:
            conn.execute(hook.sql.encode(), {"tenant": tenant})  # the operator's own statement
            conn.commit()
            row = conn.execute(hook.check.encode(), {"tenant": tenant}).fetchone()
        answer = next(iter(row.values())) if row else None
        if answer is not True:
            raise TenantError(
                f"the freeze hook ran for tenant {tenant!r}, but its check returned "
                f"{answer!r}, not true: the platform may "
                "still accept the tenant's writes. Fix [tenants.freeze] in the data map (sql "
                "must make the tenant read-only, check must then return true)"
            )

    def require_no_hold(self, tenant: str) -> None:
        record = self.get(tenant)
        if record.legal_hold:
            raise LegalHoldError(
                f"tenant {tenant!r} is on legal hold ({record.legal_hold_reason or 'no reason'}): "
                "destruction refused. Lift the hold, then run destruction again before the "
                "deadline"
            )

    def set_hold(self, tenant: str, held: bool, reason: str | None = None) -> None:
        self.get(tenant)
        with self.connect() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} AS l (tenant, legal_hold, legal_hold_reason) "
                    "VALUES (%s, %s, %s) ON CONFLICT (tenant) DO UPDATE SET "
                    "legal_hold = excluded.legal_hold, "
                    "legal_hold_reason = excluded.legal_hold_reason"
                ).format(_LEDGER),
                (tenant, held, reason if held else None),
            )

    def mark_destroyed(self, tenant: str, at: datetime) -> date:
        """Record the destruction; return the date the contact details must be erased by:
        three years after the relationship ended (clause 1.1.4), which is the termination
        (the freeze), not the destruction up to 90 days later."""
        with self.connect() as conn:
            row = conn.execute(
                sql.SQL(
                    "INSERT INTO {} AS l (tenant, status, destroyed_at, contact_delete_after) "
                    "VALUES (%(tenant)s, 'destroyed', %(at)s, ((%(at)s AT TIME ZONE 'UTC')::date "
                    "+ make_interval(years => %(years)s))::date) "
                    "ON CONFLICT (tenant) DO UPDATE SET "
                    "status = 'destroyed', destroyed_at = excluded.destroyed_at, "
                    "contact_delete_after = ((coalesce(l.frozen_at, excluded.destroyed_at) "
                    "AT TIME ZONE 'UTC')::date + make_interval(years => %(years)s))::date "
                    "RETURNING contact_delete_after"
                ).format(_LEDGER),
                {"tenant": tenant, "at": at.astimezone(UTC),
                 "years": CONTACT_RETENTION_YEARS},
            ).fetchone()  # fmt: skip
        assert row is not None
        erase_contact_by: date = row["contact_delete_after"]
        return erase_contact_by
