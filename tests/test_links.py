"""Local download links: served while valid, 403 when forged, 410 when expired or destroyed;
the page listing a multi-part bundle; the acknowledgement page's form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from flows.adapter import PrefectRuns
from offboarding.core.config import Settings
from offboarding.core.errors import AcknowledgementRejected, NotWaitingError
from offboarding.core.records import CaseRef
from offboarding.delivery.links import _ACK_SALT, LinkSigner
from offboarding.delivery.receipts import downloads
from offboarding.people import pseudonym, statement
from offboarding.runs import AcknowledgementInput
from offboarding.stores import open_store
from offboarding.trail import AuditTrail
from offboarding.web import create_app
from tests.conftest import Platform
from tests.helpers import export_and_deliver

KEY = "bundles/acme/case-1/offboarding-case-1.zip"


@pytest.fixture
def settings(platform: Platform) -> Settings:
    """Links need the stores, the link secret and the ledger (receipts' pseudonyms, the
    acknowledgement's statement)."""
    return platform.settings


def test_a_link_serves_the_bundle_until_it_expires_or_the_bundle_is_gone(
    settings: Settings,
) -> None:
    store = open_store(settings.store_url("delivery"))
    store.put_bytes(KEY, b"PK bundle bytes")
    signer = LinkSigner.from_settings(settings)
    client = TestClient(create_app(settings, PrefectRuns()))

    def path(link: str) -> str:
        return link.removeprefix(settings.delivery.link_base_url)

    valid = signer.create(store.url, KEY, datetime.now(UTC) + timedelta(hours=1))
    response = client.get(path(valid))
    assert response.status_code == 200 and response.content == b"PK bundle bytes"
    assert "offboarding-case-1.zip" in response.headers["content-disposition"]

    forged = valid[:-8] + ("A" if valid[-8] != "A" else "B") + valid[-7:]
    assert client.get(path(forged)).status_code == 403

    expired = signer.create(store.url, KEY, datetime.now(UTC) - timedelta(seconds=1))
    assert client.get(path(expired)).status_code == 410

    store.delete(KEY)
    assert client.get(path(valid)).status_code == 410


def test_every_download_leaves_a_signed_receipt_without_the_address(
    settings: Settings,
) -> None:
    store = open_store(settings.store_url("delivery"))
    store.put_bytes(KEY, b"PK bundle bytes")
    link = LinkSigner.from_settings(settings).create(
        store.url, KEY, datetime.now(UTC) + timedelta(hours=1)
    )
    client = TestClient(create_app(settings, PrefectRuns()))
    case = CaseRef(tenant="acme", case_id="case-1")
    assert downloads(settings, case) == []
    for _ in range(2):
        response = client.get(link.removeprefix(settings.delivery.link_base_url))
        assert response.content == b"PK bundle bytes"
    receipts = downloads(settings, case)
    assert [(r.part, r.bytes, r.size, r.complete, r.via) for r in receipts] == [
        ("offboarding-case-1.zip", 15, 15, True, "stream")
    ] * 2
    assert receipts[0].client == receipts[1].client == pseudonym(settings, case, "testclient")
    archived = open_store(settings.store_url("archive"))
    bodies = [o for o in archived.list_objects("downloads/acme/case-1/")]
    assert len(bodies) == 4  # two receipts and their signatures
    for info in bodies:
        with archived.open_read(info.key) as handle:
            assert b"testclient" not in handle.read()


def test_a_link_signed_by_another_installation_is_refused(settings: Settings) -> None:
    store_url = settings.store_url("delivery")
    other = LinkSigner(b"another installation's secret....", settings.delivery.link_base_url)
    link = other.create(store_url, KEY, datetime.now(UTC) + timedelta(hours=1))
    client = TestClient(create_app(settings, PrefectRuns()))
    assert client.get(link.removeprefix(settings.delivery.link_base_url)).status_code == 403


def test_a_link_naming_a_store_outside_the_delivery_stores_is_gone(settings: Settings) -> None:
    """A genuine token can only reach the configured delivery stores, never another path."""
    settings = settings
    files = settings.store_url("files")  # holds tenants' originals: never served by links
    signer = LinkSigner.from_settings(settings)
    link = signer.create(files, "tenants/acme/avatars/1.bin", datetime.now(UTC) + timedelta(1))
    client = TestClient(create_app(settings, PrefectRuns()))
    assert client.get(link.removeprefix(settings.delivery.link_base_url)).status_code == 410


def test_a_multi_part_bundle_has_one_page_listing_every_part(settings: Settings) -> None:
    store = open_store(settings.store_url("delivery"))
    keys = [f"bundles/acme/case-1/offboarding-case-1.part-{n:03d}.zip" for n in (1, 2, 3)]
    for number, key in enumerate(keys):
        store.put_bytes(key, f"part {number}".encode())
    signer = LinkSigner.from_settings(settings)
    client = TestClient(create_app(settings, PrefectRuns()))
    index = signer.create_index(store.url, keys, datetime.now(UTC) + timedelta(hours=1))
    page = client.get(index.removeprefix(settings.delivery.link_base_url))
    assert page.status_code == 200
    links = [
        chunk.split('"', 1)[0].replace("&amp;", "&") for chunk in page.text.split('href="')[1:]
    ]
    assert len(links) == 3
    bodies = [
        client.get(link.removeprefix(settings.delivery.link_base_url)).content for link in links
    ]
    assert bodies == [b"part 0", b"part 1", b"part 2"]


def test_the_acknowledgement_page_shows_a_form_and_refuses_a_forged_or_expired_token(
    settings: Settings,
) -> None:
    signer = LinkSigner.from_settings(settings)
    client = TestClient(create_app(settings, PrefectRuns()))
    run_id, case_id = "00000000-0000-0000-0000-000000000001", "acme-0123456789ab"
    link = signer.create_ack(run_id, case_id, datetime.now(UTC) + timedelta(days=30))
    page = client.get(link.removeprefix(settings.delivery.link_base_url))
    assert page.status_code == 200
    assert 'name="name"' in page.text and "acme-0123456789ab" in page.text
    # A character in the middle of the signature: the last one of a base64 text carries
    # padding bits, and changing only those leaves the signature's bytes as they were.
    forged = link[:-8] + ("x" if link[-8] != "x" else "y") + link[-7:]
    assert client.get(forged.removeprefix(settings.delivery.link_base_url)).status_code == 403
    assert client.post(forged.removeprefix(settings.delivery.link_base_url)).status_code == 403
    # The token used to be valid for ever: whoever held an old, forwarded notice could use it.
    expired = signer.create_ack(run_id, case_id, datetime.now(UTC) - timedelta(seconds=1))
    for method in (client.get, client.post):
        assert method(expired.removeprefix(settings.delivery.link_base_url)).status_code == 410
    legacy_token = signer._serializer(_ACK_SALT).dumps({"run": run_id, "case": case_id})
    legacy = f"/ack/{legacy_token}"
    assert client.get(legacy).status_code == 410  # sent before tokens had an expiry


class RecordingRuns:
    """The orchestrator's `Runs` for the page's own rules: it holds the case's run suspended
    (or not), records the acknowledgements it is given, or refuses them as a server would
    (the real resume is tested end to end)."""

    def __init__(self, refuse: Exception | None = None, state: str = "PAUSED") -> None:
        self.refuse = refuse
        self.run_state = state
        self.resumed: list[tuple[str, AcknowledgementInput]] = []

    def state(self, run_id: str) -> str:
        return self.run_state

    def resume(self, run_id: str, acknowledgement: AcknowledgementInput) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.resumed.append((run_id, acknowledgement))


def _statements(platform: Platform) -> int:
    return int(str(platform.query("SELECT count(*) FROM offboarding.statements")[0][0]))


def _waiting_case(platform: Platform) -> tuple[CaseRef, str, str]:
    """A delivered case; its run id and the path of its acknowledgement page."""
    case = platform.case("acme")
    export_and_deliver(platform, case)
    delivered = AuditTrail.open(platform.settings, case).state().delivery
    assert delivered is not None
    link = LinkSigner.from_settings(platform.settings).create_ack(
        delivered.flow_run_id, case.case_id, datetime.now(UTC) + timedelta(days=30)
    )
    base = platform.settings.delivery.link_base_url
    return case, delivered.flow_run_id, link.removeprefix(base)


def test_the_acknowledgement_page_resumes_the_case_with_the_fields_and_explains_refusals(
    platform: Platform,
) -> None:
    settings = platform.settings
    _, run_id, path = _waiting_case(platform)
    runs = RecordingRuns()
    client = TestClient(create_app(settings, runs))  # type: ignore[arg-type]

    done = client.post(path, data={"name": " Acme DPO ", "days": "45", "note": "all there"})
    assert done.status_code == 200 and "recorded" in done.text
    ((resumed, given),) = runs.resumed
    assert resumed == run_id and given.days_until_destruction == 45
    # The orchestrator gets a reference; the name and the note stay in the ledger.
    said = statement(settings, given.statement or "", "acme", "acknowledgement")
    assert said.fields == {"name": "Acme DPO", "note": "all there"}
    for fields, says in (
        ({"name": "Acme DPO", "days": "91"}, "0 to 90"),  # clause 2.3.2
        ({"name": "Acme DPO", "days": "soon"}, "whole number"),
        ({"name": "", "days": "5"}, "name is needed"),
        ({"name": "Acme DPO", "note": "x" * 1001}, "too long"),
    ):
        refused = client.post(path, data=fields)
        assert refused.status_code == 422 and says in refused.text, fields
    assert len(runs.resumed) == 1  # nothing invalid reached the orchestrator

    before = _statements(platform)
    for error, says in (
        (NotWaitingError("resumed already"), "no longer waiting"),
        (AcknowledgementRejected("the server refused: days"), "the server refused"),
    ):
        client = TestClient(create_app(settings, RecordingRuns(refuse=error)))  # type: ignore[arg-type]
        answer = client.post(path, data={"name": "Acme DPO"})
        assert answer.status_code == 422 and says in answer.text
    assert _statements(platform) == before  # a refused acknowledgement keeps no words


def test_nothing_is_kept_for_a_case_that_no_longer_waits_and_large_forms_are_refused(
    platform: Platform,
) -> None:
    """Five POSTs to a case no longer waiting used to leave five statements, each with a name
    and a note (after the contacts were forgotten too)."""
    settings = platform.settings
    _, _, path = _waiting_case(platform)
    before = _statements(platform)
    resumed = RecordingRuns(state="COMPLETED")
    client = TestClient(create_app(settings, resumed))  # type: ignore[arg-type]
    for _ in range(5):
        answer = client.post(path, data={"name": "Someone", "note": "a name, again"})
        assert answer.status_code == 422 and "no longer waiting" in answer.text
    assert _statements(platform) == before and resumed.resumed == []
    client = TestClient(create_app(settings, RecordingRuns()))  # type: ignore[arg-type]
    huge = client.post(path, data={"name": "Someone", "note": "x" * 20_000})
    assert huge.status_code == 413 and _statements(platform) == before


def test_fewer_days_than_the_grace_need_every_part_downloaded_and_a_second_confirmation(
    platform: Platform,
) -> None:
    """0 days used to be accepted from whoever held the notice, before anything was
    downloaded."""
    settings = platform.settings
    case, _, path = _waiting_case(platform)
    runs = RecordingRuns()
    client = TestClient(create_app(settings, runs))  # type: ignore[arg-type]
    standard = client.post(path, data={"name": "Acme DPO", "days": "0"})
    assert standard.status_code == 200 and "standard 30 days apply" in standard.text
    assert runs.resumed[-1][1].days_until_destruction is None  # the grace, not 0

    state = AuditTrail.open(settings, case).state()
    assert state.delivery is not None
    store = open_store(state.delivery.store_url)
    signer = LinkSigner.from_settings(settings)
    for part in state.delivery.parts:  # the client downloads every part in full
        link = signer.create(store.url, part.key, datetime.now(UTC) + timedelta(hours=1))
        assert client.get(link.removeprefix(settings.delivery.link_base_url)).status_code == 200
    asked = client.post(path, data={"name": "Acme DPO", "days": "0"})
    assert asked.status_code == 200 and 'name="confirm_early"' in asked.text
    assert len(runs.resumed) == 1  # not yet: a second, explicit confirmation first
    confirmed = client.post(path, data={"name": "Acme DPO", "days": "0", "confirm_early": "yes"})
    assert confirmed.status_code == 200 and "recorded" in confirmed.text
    assert runs.resumed[-1][1].days_until_destruction == 0
