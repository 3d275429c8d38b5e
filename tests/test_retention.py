"""The client's retention rules on the demo platform: a run deletes exactly the tenant's rows
past the period (counted with plain SQL), the files they named go with them, other tenants and
newer rows stay; a rule that could touch another tenant is refused; each run is signed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime

import pytest

from offboarding.core.errors import TenantError
from offboarding.core.signing import load_key_list
from offboarding.evidence.archive import verify_archive
from offboarding.persons.records import read_signed
from offboarding.persons.retention import list_rules, retire_rule, run_rules, set_rule
from offboarding.stores import open_store
from tests.conftest import Platform


def _ids(platform: Platform, query: str, *params: object) -> set[int]:
    return {int(str(r[0])) for r in platform.query(query, *params)}


def _middle(platform: Platform, table: str, column: str) -> datetime:
    """A time with acme's rows of `table` on both sides (the demo dates them a day apart)."""
    row = platform.query(
        f"SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY {column}) FROM {table} "
        "WHERE tenant_id = 'acme'"
    )
    value = row[0][0]
    assert isinstance(value, datetime)
    return value


def test_a_retention_rule_deletes_exactly_the_rows_past_its_period(platform: Platform) -> None:
    settings = platform.settings
    now = _middle(platform, "chat_messages", "sent_at")
    past = (
        "SELECT id FROM chat_messages WHERE tenant_id = 'acme' AND sent_at < %s - interval '1 day'"
    )
    expected = _ids(platform, past, now)
    acme = _ids(platform, "SELECT id FROM chat_messages WHERE tenant_id = 'acme'")
    assert expected and expected != acme
    globex = platform.fingerprint("globex")
    rule = set_rule(settings, "acme", "public.chat_messages", "sent_at", "1 day", name="DPO")
    assert rule.period == "1 day" and rule.retired_at is None

    (run,) = run_rules(settings, now=now)
    (result,) = run.results
    assert (result.deleted, result.refused) == (len(expected), "")
    assert (
        _ids(platform, "SELECT id FROM chat_messages WHERE tenant_id = 'acme'") == acme - expected
    )
    assert platform.fingerprint("globex") == globex
    record = read_signed(settings, run.record_key)
    assert (
        record["rules"][0]["deleted"] == len(expected) and record["rules"][0]["period"] == "1 day"
    )
    # A second run finds nothing more; the rule shows when it last ran.
    (again,) = run_rules(settings, now=now)
    assert again.results[0].deleted == 0
    (listed,) = list_rules(settings, "acme")
    assert listed.last_deleted == 0 and listed.last_run_at is not None
    report = verify_archive(
        open_store(settings.store_url("archive")), load_key_list(settings.keys_dir)
    )
    assert report.retention_runs == 3  # two runs and the rule's setting
    retire_rule(settings, "acme", rule.ref, name="DPO")
    assert run_rules(settings, now=now) == []


def test_the_files_named_by_deleted_rows_go_with_them(platform: Platform) -> None:
    settings = platform.settings
    now = _middle(platform, "documents", "uploaded_at")
    rows = platform.query(
        "SELECT object_key, uploaded_at < %s - interval '1 day' FROM documents "
        "WHERE tenant_id = 'acme'", now)  # fmt: skip
    old = [str(k) for k, is_old in rows if is_old]
    new = [str(k) for k, is_old in rows if not is_old]
    assert old and new and all(platform.files.exists(k) for k in old + new)
    set_rule(settings, "acme", "public.documents", "uploaded_at", "1 day", files="object_key",
             name="DPO")  # fmt: skip
    (run,) = run_rules(settings, now=now)
    assert (run.results[0].deleted, run.results[0].files) == (len(old), len(old))
    assert not any(platform.files.exists(k) for k in old)
    assert all(platform.files.exists(k) for k in new)


def test_a_rule_that_could_touch_another_tenant_is_refused(platform: Platform) -> None:
    settings = platform.settings
    refused = {
        ("public.tenants", "created_at"): "the platform's tenants table",
        ("public.plans", "id"): "holds no rows of one tenant",
        ("tenant_globex.custom_fields", "updated_at"): "in tenant 'globex'",
        ("public.nowhere", "at"): "not a table of the platform database",
        ("public.chat_messages", "body"): "not a date or timestamp column",
    }
    for (table, column), message in refused.items():
        with pytest.raises(TenantError, match=message):
            set_rule(settings, "acme", table, column, "1 year", name="DPO")
    with pytest.raises(TenantError, match="is not an interval"):
        set_rule(settings, "acme", "public.chat_messages", "sent_at", "soon", name="DPO")
    with pytest.raises(TenantError, match="not a positive interval"):
        set_rule(settings, "acme", "public.chat_messages", "sent_at", "-1 day", name="DPO")
    assert list_rules(settings) == []


def test_rows_others_reference_stop_the_rule_for_the_run(platform: Platform) -> None:
    settings = platform.settings
    now = _middle(platform, "chat_messages", "sent_at")
    platform.query(
        "CREATE TABLE public.pins (id bigint PRIMARY KEY, tenant_id text NOT NULL REFERENCES "
        "tenants (id), message_id bigint REFERENCES chat_messages (id) ON DELETE CASCADE)"
    )
    oldest = platform.query("SELECT min(id) FROM chat_messages WHERE tenant_id = 'acme'")
    platform.query("INSERT INTO pins VALUES (1, 'acme', %s)", oldest[0][0])
    before = platform.fingerprint("acme")
    set_rule(settings, "acme", "public.chat_messages", "sent_at", "1 day", name="DPO")
    (run,) = run_rules(settings, now=now)
    assert run.results[0].deleted == 0
    assert "1 row(s) of public.pins" in run.results[0].refused
    assert platform.fingerprint("acme") == before
    assert read_signed(settings, run.record_key)["rules"][0]["refused"]


def test_offboard_retention_sets_lists_and_runs_rules(platform: Platform) -> None:
    env = {
        **os.environ,
        "OFFBOARD_HOME": str(platform.settings.home),
        "OFFBOARD_DATABASE_URL": platform.dsn,
        "OFFBOARD_DATAMAP": str(platform.settings.datamap),
    }

    def offboard(*args: str, code: int = 0) -> str:
        done = subprocess.run([sys.executable, "-m", "offboarding.cli", *args], env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == code, done.stderr
        return done.stdout + done.stderr

    made = offboard("retention", "set", "acme", "public.survey_answers", "--age-column",
                    "submitted_on", "--period", "10 years", "--by", "DPO")  # fmt: skip
    ref = made.split(":")[0]
    assert ref.startswith("rr-") and "10 years" in made
    assert "not run yet" in offboard("retention", "list", "acme")
    assert "0 row(s) deleted, 0 rule(s) refused" in offboard("retention", "run", "acme")
    assert "last run" in offboard("retention", "list")
    assert "tenants table" in offboard("retention", "set", "acme", "public.tenants",
                                       "--age-column", "created_at", "--period", "1 year",
                                       "--by", "DPO", code=2)  # fmt: skip
    assert "retired" in offboard("retention", "retire", "acme", ref, "--by", "DPO")


def test_a_tenant_retires_only_its_own_rules(platform: Platform) -> None:
    """retire_rule took any rule's reference: globex's person (its statement, its form) could
    retire acme's rule."""
    settings = platform.settings
    rule = set_rule(settings, "acme", "public.chat_messages", "sent_at", "1 year", name="DPO")
    with pytest.raises(TenantError, match="tenant 'globex' has no active retention rule"):
        retire_rule(settings, "globex", rule.ref, name="Globex admin")
    (still,) = list_rules(settings, "acme", active=True)
    assert still.ref == rule.ref


def test_a_tenant_the_platform_deleted_does_not_stop_the_others_rules(platform: Platform) -> None:
    """registry.get raised for the first tenant gone from the tenants table, and every tenant
    after it in the daily run kept its expired rows."""
    settings = platform.settings
    now = _middle(platform, "chat_messages", "sent_at")
    platform.query(
        "INSERT INTO tenants (id, name, region, contact_email) "
        "VALUES ('aaa', 'Gone Soon', 'europe-west1', 'dpo@aaa.example')"
    )
    set_rule(settings, "aaa", "public.chat_messages", "sent_at", "1 day", name="DPO")
    set_rule(settings, "acme", "public.chat_messages", "sent_at", "1 day", name="DPO")
    platform.query("DELETE FROM tenants WHERE id = 'aaa'")
    gone, acme = run_rules(settings, now=now)
    assert gone.tenant == "aaa" and gone.failed and "not in the platform's tenants" in gone.skipped
    assert acme.tenant == "acme" and acme.results[0].deleted > 0


def test_a_refusal_that_quotes_an_object_key_keeps_it_in_the_ledger_only(
    platform: Platform,
) -> None:
    """The exception's text went into the signed record (write-once), Prefect's log and its
    artifact: here it quoted a file name."""
    settings = platform.settings
    now = _middle(platform, "documents", "uploaded_at")
    key = "tenants/acme/../minutes-of-jane-doe.pdf"
    platform.query(
        "UPDATE documents SET object_key = %s WHERE id = (SELECT min(id) FROM documents "
        "WHERE tenant_id = 'acme')", key,
    )  # fmt: skip
    set_rule(settings, "acme", "public.documents", "uploaded_at", "1 day", files="object_key",
             name="DPO")  # fmt: skip
    said: list[str] = []
    (run,) = run_rules(settings, now=now, say=said.append)
    (result,) = run.results
    assert result.deleted == 0 and "offboard retention list acme" in result.refused
    record = read_signed(settings, run.record_key)
    assert "jane" not in repr(record) and "jane" not in repr(said)
    (rule,) = list_rules(settings, "acme")
    assert rule.last_refusal is not None and "minutes-of-jane-doe.pdf" in rule.last_refusal
