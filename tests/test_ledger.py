"""The platform's tenants table is the platform's: read through the columns the data map
names, never given a column of ours. Cases live in the pipeline's own ledger; freezing is the
platform's hook, and the case checks its effect."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import ClassVar

import pytest

from offboarding.core.errors import ConfigurationError, DuplicateCaseError, TenantError
from offboarding.export import export as stages
from offboarding.registry import TenantRegistry
from tests.conftest import Platform

# The demo platform's own columns, the client's age recipient among them: none is ours.
PLATFORM_COLUMNS = {
    "id", "name", "region", "contact_email", "age_recipient", "plan_id", "created_at",
    "read_only",
}  # fmt: skip


def _map(platform: Platform, tenants: str) -> None:
    """Replace the data map's [tenants] table."""
    path = platform.settings.datamap
    assert path is not None
    text = path.read_text()
    start = text.index("[tenants]")
    path.write_text(text[:start] + tenants + "\n" + text[text.index("[systems.postgres]") :])


def test_the_case_lives_in_the_ledger_and_the_platform_table_gets_no_column(
    platform: Platform,
) -> None:
    case = platform.case("acme")
    stages.freeze(platform.settings, case)
    columns = platform.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'tenants' "
        "AND table_schema = 'public'"
    )
    assert {c[0] for c in columns} == PLATFORM_COLUMNS
    assert platform.query("SELECT read_only FROM tenants WHERE id = 'acme'") == [(True,)]
    ledger = platform.query(
        "SELECT status, offboarding_case, frozen_at IS NOT NULL FROM offboarding.ledger "
        "WHERE tenant = 'acme'"
    )
    assert ledger == [("frozen", case.case_id, True)]
    registry = TenantRegistry(platform.settings)
    assert registry.tenants(status="frozen") == ["acme"]
    assert "acme" not in registry.tenants(status="active")
    with pytest.raises(DuplicateCaseError):
        registry.freeze("acme", "acme-0123456789ab")
    # The ledger is the pipeline's: never classified as the tenant's data, never exported.
    inventory = stages.take_inventory(platform.settings, case)
    postgres = next(loc for loc in inventory.locations if loc.location == "postgres")
    assert "offboarding.ledger" in postgres.global_tables
    assert "offboarding.ledger" not in {t.qualified for t in inventory.tables}


def test_contact_details_are_due_three_years_after_the_termination_not_the_destruction(
    platform: Platform,
) -> None:
    """Clause 1.1.4 counts from the end of the relationship: the freeze at termination, even
    when destruction comes up to 90 days later; a 29 February ends on the 28th."""
    registry = TenantRegistry(platform.settings)
    registry.freeze("acme", "acme-0123456789ab")
    platform.query(
        "UPDATE offboarding.ledger SET frozen_at = '2028-02-29 23:30+00' WHERE tenant = 'acme'"
    )
    erase_by = registry.mark_destroyed("acme", datetime(2028, 5, 20, 8, 0, tzinfo=UTC))
    assert erase_by == date(2031, 2, 28)
    # A tenant the pipeline never froze (destroyed by an earlier release): from the destruction.
    assert registry.mark_destroyed("globex", datetime(2027, 1, 10, tzinfo=UTC)) == date(2030, 1, 10)
    assert platform.query(
        "SELECT contact_delete_after FROM offboarding.ledger WHERE tenant = 'acme'"
    ) == [(date(2031, 2, 28),)]


def test_a_freeze_hook_whose_check_fails_stops_the_case(platform: Platform) -> None:
    _map(
        platform,
        '[tenants]\ntable = "public.tenants"\n'
        'freeze = { sql = "SELECT %(tenant)s", check = "SELECT read_only FROM public.tenants '
        'WHERE id = %(tenant)s" }\n',
    )
    with pytest.raises(
        TenantError, match=r"its check returned False, not true.*\[tenants.freeze\]"
    ):
        stages.freeze(platform.settings, platform.case("acme"))


def test_a_platform_with_its_own_tenants_table_and_columns(platform: Platform) -> None:
    key = uuid.uuid4()
    platform.query(
        "CREATE TABLE public.accounts (account_key uuid PRIMARY KEY, label text, geo text,"
        " dpo text, locked boolean NOT NULL DEFAULT false)"
    )
    platform.query(
        "INSERT INTO public.accounts VALUES (%s, 'Umbrella', 'europe-west9',"
        " 'dpo@umbrella.example', false)",
        key,
    )
    _map(
        platform,
        '[tenants]\ntable = "public.accounts"\nid = "account_key"\nname = "label"\n'
        'region = "geo"\ncontact = "dpo"\n'
        'freeze = { sql = "UPDATE public.accounts SET locked = true WHERE account_key::text = '
        '%(tenant)s", check = "SELECT locked FROM public.accounts WHERE account_key::text = '
        '%(tenant)s" }\n',
    )
    registry = TenantRegistry(platform.settings)
    record = registry.get(str(key))
    assert (record.name, record.region, record.contact_email, record.status) == (
        "Umbrella", "europe-west9", "dpo@umbrella.example", "active",
    )  # fmt: skip
    frozen = registry.freeze(str(key), f"{key}-0123456789ab")
    assert frozen.status == "frozen"
    assert platform.query("SELECT locked FROM accounts") == [(True,)]
    with pytest.raises(TenantError, match=r"not in the platform's tenants table public\.accounts"):
        registry.get(str(key).upper())  # ids are exact

    _map(platform, '[tenants]\ntable = "public.accounts"\nid = "account_key"\nname = "title"\n')
    with pytest.raises(ConfigurationError, match="has no column the data map's"):
        TenantRegistry(platform.settings).get(str(key))


class _PlatformApi(http.server.BaseHTTPRequestHandler):
    """The platform's API as a freeze hook sees it: POST freezes, GET answers the state."""

    frozen: ClassVar[set[str]] = set()
    broken: ClassVar[bool] = False
    calls: ClassVar[list[tuple[str, str, str | None]]] = []

    def do_POST(self) -> None:
        self.calls.append(("POST", self.path, self.headers.get("Authorization")))
        if self.broken:
            self.send_response(503)
        else:
            self.frozen.add(urllib.parse.unquote(self.path.split("/")[2]))
            self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path, self.headers.get("Authorization")))
        body = json.dumps(
            {"read_only": urllib.parse.unquote(self.path.split("/")[2]) in self.frozen}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def platform_api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PlatformApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _PlatformApi.frozen, _PlatformApi.broken, _PlatformApi.calls = set(), False, []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_freeze_hook_through_the_platforms_api_is_called_and_checked(
    platform: Platform, platform_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_TOKEN", "s3cret")
    _map(
        platform,
        '[tenants]\ntable = "public.tenants"\n'
        f'freeze = {{ url = "{platform_api}/tenants/{{tenant}}/freeze", '
        f'check_url = "{platform_api}/tenants/{{tenant}}", '
        'headers = { Authorization = "Bearer ${PLATFORM_TOKEN}" } }\n',
    )
    stages.freeze(platform.settings, platform.case("acme"))
    assert _PlatformApi.calls == [
        ("POST", "/tenants/acme/freeze", "Bearer s3cret"),
        ("GET", "/tenants/acme", "Bearer s3cret"),
    ]
    assert TenantRegistry(platform.settings).get("acme").status == "frozen"

    _PlatformApi.broken = True
    with pytest.raises(
        TenantError, match=r"POST to http://127\.0\.0\.1:\d+/tenants/globex/freeze answered 503"
    ):
        stages.freeze(platform.settings, platform.case("globex"))
    _PlatformApi.broken = False
    _PlatformApi.frozen.discard("globex")
    _map(
        platform,
        '[tenants]\ntable = "public.tenants"\n'
        f'freeze = {{ url = "{platform_api}/tenants/{{tenant}}/freeze", '
        f'check_url = "{platform_api}/tenants/{{tenant}}", check_field = "locked" }}\n',
    )
    with pytest.raises(TenantError, match="its check answered locked=None, not true"):
        stages.freeze(platform.settings, platform.case("initech"))


class _Redirecting(http.server.BaseHTTPRequestHandler):
    """A platform API that freezes, then answers its check with a redirect to another host
    (`target`)."""

    target: ClassVar[str] = ""

    def do_POST(self) -> None:
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", f"{self.target}{self.path}")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_freeze_hook_follows_no_redirect_so_its_credentials_stay_with_the_platform(
    platform: Platform, platform_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib followed the redirect and sent the hook's Authorization header to the host the
    answer named."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Redirecting.target = platform_api  # the "other host": it records what reaches it
    redirecting = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("PLATFORM_TOKEN", "s3cret")
    _map(
        platform,
        '[tenants]\ntable = "public.tenants"\n'
        f'freeze = {{ url = "{redirecting}/tenants/{{tenant}}/freeze", '
        f'check_url = "{redirecting}/tenants/{{tenant}}", '
        'headers = { Authorization = "Bearer ${PLATFORM_TOKEN}" } }\n',
    )
    try:
        with pytest.raises(TenantError, match=r"answered 302 .*a redirect: it is not followed"):
            stages.freeze(platform.settings, platform.case("acme"))
    finally:
        server.shutdown()
    assert _PlatformApi.calls == []  # nothing, credentials least of all, reached the other host
