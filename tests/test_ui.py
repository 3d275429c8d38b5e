"""The operator's local stack (`make serve`): `prefect deploy --all` from prefect.yaml, a process
worker, the contract-terminated event from `offboard terminate`; then a browser check of the
Prefect UI in headless Chromium: the suspended case and its summary artifact, with screenshots
(`OFFBOARD_SAVE_SCREENSHOTS=1` also writes them to docs/images/ for the support guide)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from offboarding.dev.demo.run import wait_for_state
from offboarding.dev.local import LocalStack
from offboarding.dev.services import free_port

pytestmark = pytest.mark.slow

DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(home=tmp_path_factory.mktemp("serve"), port=free_port(),
                       links_port=free_port())  # fmt: skip
    with ExitStack() as exits:
        local.start(exits, say=lambda _: None)
        assert local.server is not None
        with temporary_settings(
            updates={PREFECT_API_URL: local.server.api_url, PREFECT_API_AUTH_STRING: local.auth}
        ):
            yield local


def page_shows(driver: Any, url: str, texts: list[str], timeout: float = 60) -> str:
    driver.get(url)
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = driver.find_element("tag name", "body").text
        if all(text in body for text in texts):
            time.sleep(1)  # let the page settle before the screenshot
            return str(body)
        time.sleep(0.5)
    raise AssertionError(f"{url} did not show {texts}; it shows:\n{body[:2000]}")


def _body(driver: Any) -> str:
    """The page's text; empty while the browser is between two pages."""
    from selenium.common.exceptions import WebDriverException

    try:
        return str(driver.find_element("tag name", "body").text)
    except WebDriverException:
        return ""


def screenshot(driver: Any, tmp_path: Path, name: str) -> None:
    target = tmp_path / f"{name}.png"
    driver.save_screenshot(str(target))
    assert target.stat().st_size > 10_000
    if os.environ.get("OFFBOARD_SAVE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(exist_ok=True)
        shutil.copy(target, DOCS_IMAGES / f"{name}.png")


def test_a_terminated_contract_opens_a_case_support_staff_can_see_in_the_ui(
    stack: LocalStack, browser: Any, tmp_path: Path
) -> None:
    assert stack.server is not None
    env = {**stack.env()}
    cli = subprocess.run(
        [sys.executable, "-m", "offboarding.cli", "terminate", "demo-tenant", "--reason", "ended"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr

    run = None
    deadline = time.monotonic() + 90
    with get_client(sync_client=True) as client:
        while run is None:
            assert time.monotonic() < deadline, "the event opened no case"
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["offboard"]))
            )
            run = next((r for r in runs if r.parameters.get("tenant") == "demo-tenant"), None)
            time.sleep(1)
        deployments = sorted(d.name for d in client.read_deployments())
        limits = {
            name: client.read_global_concurrency_limit_by_name(name).limit
            for name in ("offboarding-exports", "offboarding-destructions")
        }
    assert limits == {"offboarding-exports": 2, "offboarding-destructions": 2}
    assert deployments == sorted(
        ["offboard", "destroy", "case-watch", "backup", "deadline-watch", "reissue-link",
         "legal-hold", "approve", "postpone-destruction", "verify-destruction", "person-request",
         "retention", "retention-rule", "forget-contacts", "compact"]
    )  # fmt: skip
    assert stack.worker is not None
    waiting = wait_for_state(run.id, {"PAUSED"}, timeout=240, runner=stack.worker)
    case_id = next((stack.home / "outbox").glob("demo-tenant-*-delivery-*.eml")).name.split(
        "-delivery-"
    )[0]

    ui = stack.server.ui_url
    # Prefect's API refuses a call without the credentials; the UI asks for them first.
    call = urllib.request.Request(  # noqa: S310 - our own server on loopback
        f"{stack.server.api_url}/deployments/filter", data=b"{}",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(call)  # noqa: S310 - our own server on loopback
    assert refused.value.code == 401
    page_shows(browser, f"{ui}/dashboard", ["Login"])
    screenshot(browser, tmp_path, "ui-login")
    browser.execute_script(
        "localStorage.setItem('prefect-password', btoa(arguments[0]))", stack.auth
    )  # what the login form keeps once the password is typed
    page_shows(browser, f"{ui}/deployments", ["offboard", "legal-hold", "approve"])
    screenshot(browser, tmp_path, "ui-deployments")
    page_shows(browser, f"{ui}/runs/flow-run/{waiting.id}", ["offboard-demo-tenant", "Suspended"])
    screenshot(browser, tmp_path, "ui-suspended-case")
    with get_client(sync_client=True) as client:
        summary = next(a for a in client.read_artifacts() if a.key == f"case-{case_id}")
    page_shows(
        browser,
        f"{ui}/artifacts/artifact/{summary.id}",
        ["waiting for the client's acknowledgement", "links valid until"],
    )
    screenshot(browser, tmp_path, "ui-case-summary")


def _completed(stack: LocalStack, deployment: str, parameters: dict[str, Any]) -> FlowRun:
    run = run_deployment(deployment, parameters=parameters, timeout=0, as_subflow=False)
    assert isinstance(run, FlowRun)
    done = wait_for_state(run.id, {"COMPLETED"}, timeout=240, runner=stack.worker)
    assert isinstance(done, FlowRun)
    return done


def _artifact(prefix: str) -> Any:
    with get_client(sync_client=True) as client:
        return next(a for a in client.read_artifacts() if (a.key or "").startswith(prefix))


def _statement(stack: LocalStack, *args: str) -> str:
    kept = subprocess.run(
        [sys.executable, "-m", "offboarding.cli", "statement", *args],
        env=stack.env(), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return kept.stdout.strip()


def test_person_requests_and_retention_rules_in_the_ui(
    stack: LocalStack, browser: Any, tmp_path: Path
) -> None:
    """What the support guide shows: a person request's form and its answer, an erasure, a
    direct request forwarded, a retention rule set and its daily run."""
    assert stack.server is not None
    ui = stack.server.ui_url
    with psycopg.connect(stack.pg.dsn) as conn:
        people = [
            str(r[0])
            for r in conn.execute(
                "SELECT u.id FROM users u WHERE u.tenant_id = 'acme' AND EXISTS (SELECT 1 FROM "
                "comments c WHERE c.author_id = u.id) AND EXISTS (SELECT 1 FROM documents d "
                "WHERE d.uploaded_by = u.id) ORDER BY u.id LIMIT 2"
            )
        ]
    with get_client(sync_client=True) as client:
        deployment = next(d for d in client.read_deployments() if d.name == "person-request")
    page_shows(browser, f"{ui}/deployments/deployment/{deployment.id}/run",
               ["person", "kind", "statement"])  # fmt: skip
    screenshot(browser, tmp_path, "ui-person-request-form")

    access = _completed(stack, "person-request/person-request",
                        {"tenant": "acme", "kind": "access", "person": people[0]})  # fmt: skip
    answer = _artifact("answer-pr-")
    page_shows(browser, f"{ui}/artifacts/artifact/{answer.id}",
               ["public.users", "links sent to the client's contact"])  # fmt: skip
    screenshot(browser, tmp_path, "ui-person-access")
    assert access.parameters["person"] == people[0]

    # The client's console sends the event; the deployment's trigger records and answers it.
    sent = subprocess.run(
        [sys.executable, "-m", "offboarding.cli", "request", "emit", "acme", people[0],
         "--kind", "portability"],
        env=stack.env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    deadline = time.monotonic() + 120
    triggered = None
    while triggered is None:
        assert time.monotonic() < deadline, "the person-request event started no run"
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["person-request"]))
            )
        triggered = next((r for r in runs if r.parameters.get("kind") == "portability"), None)
        time.sleep(1)
    wait_for_state(triggered.id, {"COMPLETED"}, timeout=240, runner=stack.worker)
    assert triggered.parameters == {"tenant": "acme", "kind": "portability", "person": people[0]}

    _completed(stack, "person-request/person-request",
               {"tenant": "acme", "kind": "erasure", "person": people[1]})  # fmt: skip
    erasure = _artifact("erasure-pr-")
    page_shows(browser, f"{ui}/artifacts/artifact/{erasure.id}",
               ["public.comments", "certificate persons/acme/"])  # fmt: skip
    screenshot(browser, tmp_path, "ui-person-erasure")

    said = _statement(stack, "acme", "request", "--name", "Zoë Requester", "--contact",
                      "zoe@example.org", "--text", "Please erase my account")  # fmt: skip
    direct = _completed(stack, "person-request/person-request",
                        {"tenant": "acme", "kind": "erasure", "statement": said})  # fmt: skip
    page_shows(browser, f"{ui}/runs/flow-run/{direct.id}", ["forwarded to the client's contact"])
    screenshot(browser, tmp_path, "ui-person-direct")

    asked = _statement(stack, "acme", "rule", "--name", "Acme's DPO")
    _completed(stack, "retention-rule/retention-rule", {
        "tenant": "acme", "action": "set", "statement": asked, "table": "public.chat_messages",
        "age_column": "sent_at", "period": "1 year"})  # fmt: skip
    run = _completed(stack, "retention/retention", {"tenants": ["acme"]})
    assert run.state is not None and run.state.is_completed()
    retention = _artifact("retention-")
    page_shows(browser, f"{ui}/artifacts/artifact/{retention.id}",
               ["public.chat_messages", "Retention run"])  # fmt: skip
    screenshot(browser, tmp_path, "ui-retention-run")


def test_support_staff_approve_a_lifted_hold_on_their_page_without_a_shell(
    stack: LocalStack, browser: Any, tmp_path: Path
) -> None:
    """The statement and approval page of the link endpoint, behind the same credentials."""
    page = f"http://127.0.0.1:{stack.links_port}/staff/"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(page)
    assert refused.value.code == 401
    for argv in (["hold", "demo-tenant", "--reason", "regulator's letter", "--by", "Dana Legal"],
                 ["release", "demo-tenant", "--by", "Dana Legal"]):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "offboarding.cli", *argv],
            env=stack.env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    request = done.stdout.split("request ", 1)[1].split(".", 1)[0]
    token = base64.b64encode(stack.auth.encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )
    page_shows(browser, page, ["Record what someone said", request, "lift-hold"])
    screenshot(browser, tmp_path, "staff-page")
    row = browser.find_element("xpath", f"//tr[td/code[text()='{request}']]")
    row.find_element("name", "name").send_keys("Sam Support")
    row.find_element("tag name", "button").click()
    deadline = time.monotonic() + 60
    while "approved and carried out" not in _body(browser):
        assert time.monotonic() < deadline, _body(browser)
        time.sleep(0.5)
    screenshot(browser, tmp_path, "staff-approved")
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
