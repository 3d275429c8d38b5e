"""Support staff's page (issue 26, item 2): statements and approvals without a shell, behind
the same credentials as the Prefect server; the second person of four eyes approves here."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from offboarding.core.config import Settings
from offboarding.people import keep_statement, statement
from offboarding.runs import AcknowledgementInput
from offboarding.scheduling.approvals import pending_approvals
from offboarding.scheduling.scheduling import schedule_destruction
from offboarding.trail import AuditTrail
from offboarding.web import create_app
from tests.conftest import Platform
from tests.helpers import ScheduledRuns, export_and_deliver

AUTH = "offboard:correct-horse-battery"
HOST = "testserver"


class StaffRuns(ScheduledRuns):
    """Scheduling's runs, plus the waiting offboard run a staff acknowledgement resumes."""

    def __init__(self) -> None:
        super().__init__()
        self.resumed: list[tuple[str, AcknowledgementInput]] = []

    def resume(self, run_id: str, acknowledgement: AcknowledgementInput) -> None:
        self.resumed.append((run_id, acknowledgement))


def _client(settings: Settings, runs: Any, **headers: str) -> TestClient:
    token = base64.b64encode(AUTH.encode()).decode()
    client = TestClient(create_app(settings.replace(staff_auth=AUTH), runs))
    client.headers.update({"Authorization": f"Basic {token}", "Origin": f"http://{HOST}",
                           **headers})  # fmt: skip
    return client


def test_the_staff_page_is_off_without_credentials_and_refuses_strangers(
    platform: Platform,
) -> None:
    settings = platform.settings
    assert TestClient(create_app(settings, StaffRuns())).get("/staff/").status_code == 404
    bare = TestClient(create_app(settings.replace(staff_auth=AUTH), StaffRuns()))
    answer = bare.get("/staff/")
    assert answer.status_code == 401 and "Basic" in answer.headers["www-authenticate"]
    wrong = base64.b64encode(b"offboard:guess").decode()
    assert bare.get("/staff/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    client = _client(settings, StaffRuns())
    assert client.get("/staff/").status_code == 200
    # A form posted from another site, by a browser that holds the credentials: refused.
    fields = {"tenant": "acme", "kind": "hold", "name": "X", "reason": "r"}
    for origin in ("https://evil.example", ""):
        posted = client.post("/staff/statement", data=fields, headers={"Origin": origin})
        assert posted.status_code == 403


def test_a_statement_is_kept_and_its_reference_shown(platform: Platform) -> None:
    settings = platform.settings
    client = _client(settings, StaffRuns())
    kept = client.post(
        "/staff/statement",
        data={"tenant": "acme", "kind": "hold", "name": "Dana Legal", "reason": "order 12/345"},
    )
    assert kept.status_code == 200
    found = re.search(r'id="reference">(st-[0-9a-f]{32})<', kept.text)
    assert found is not None
    said = statement(settings, found.group(1), "acme", "hold")
    assert said.fields == {"name": "Dana Legal", "reason": "order 12/345"}
    refused = client.post("/staff/statement", data={"tenant": "acme", "kind": "gossip"})
    assert refused.status_code == 422


def test_an_acknowledgement_recorded_here_resumes_the_waiting_case(platform: Platform) -> None:
    settings, runs = platform.settings, StaffRuns()
    case = platform.case("acme")
    export_and_deliver(platform, case)
    runs.states[AuditTrail.open(settings, case).state().delivery.flow_run_id] = "PAUSED"  # type: ignore[union-attr]
    client = _client(settings, runs)
    answer = client.post("/staff/statement", data={
        "tenant": "acme", "kind": "acknowledgement", "name": "Staff for Acme",
        "case": case.case_id, "days": "45",
    })  # fmt: skip
    assert answer.status_code == 200 and "resumed" in answer.text
    ((_, given),) = runs.resumed
    assert given.days_until_destruction == 45 and given.statement
    other = client.post("/staff/statement", data={
        "tenant": "globex", "kind": "acknowledgement", "name": "S", "case": case.case_id,
    })  # fmt: skip
    assert other.status_code == 422 and "is not of tenant &#x27;globex&#x27;" in other.text


@pytest.mark.parametrize("signed_in_by_proxy", [False, True])
def test_a_second_person_approves_here_and_the_asker_cannot(
    platform: Platform, signed_in_by_proxy: bool
) -> None:
    settings, runs = platform.settings, StaffRuns()
    case = platform.case("acme")
    export_and_deliver(platform, case)
    said = keep_statement(settings, "acme", "acknowledgement", name="Camille Client")
    ack = AcknowledgementInput(statement=said, days_until_destruction=1)
    schedule_destruction(settings, runs, case, ack)
    (asked,) = pending_approvals(settings, "acme")
    if signed_in_by_proxy:  # the SSO proxy says who acts: the form's name is not asked
        settings = settings.replace(staff_user_header="X-Forwarded-Email")

    def as_person(name: str) -> TestClient:
        header = {"X-Forwarded-Email": name} if signed_in_by_proxy else {}
        return _client(settings, runs, **header)

    page = as_person("Camille Client").get("/staff/")
    assert asked.ref in page.text and "early-destruction" in page.text
    assert ('name="name"' in page.text) is not signed_in_by_proxy
    before = platform.query("SELECT count(*) FROM offboarding.statements")
    same = as_person("Camille Client").post(
        "/staff/approve", data={"request": asked.ref, "name": "Camille Client"}
    )
    assert same.status_code == 422 and "cannot approve it" in same.text
    assert platform.query("SELECT count(*) FROM offboarding.statements") == before
    done = as_person("Sam Support").post(
        "/staff/approve", data={"request": asked.ref, "name": "Sam Support"}
    )
    assert done.status_code == 200 and "approved and carried out" in done.text
    assert pending_approvals(settings, "acme") == []
