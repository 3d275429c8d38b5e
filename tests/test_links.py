"""Local download links: served while valid, 403 when forged, 410 when expired or destroyed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from offboarding.links import LinkSigner, create_app
from offboarding.store import open_store
from tests.conftest import Platform


def test_a_link_serves_the_bundle_until_it_expires_or_the_bundle_is_gone(
    platform: Platform,
) -> None:
    settings = platform.settings
    store = open_store(settings.store_url("delivery"))
    store.put_bytes("bundles/acme/case-1/offboarding-case-1.zip", b"PK bundle bytes")
    signer = LinkSigner.from_settings(settings)
    client = TestClient(create_app(settings))

    def path(link: str) -> str:
        return link.removeprefix(settings.link_base_url)

    valid = signer.create(
        "bundles/acme/case-1/offboarding-case-1.zip", datetime.now(UTC) + timedelta(hours=1)
    )
    response = client.get(path(valid))
    assert response.status_code == 200 and response.content == b"PK bundle bytes"
    assert "offboarding-case-1.zip" in response.headers["content-disposition"]

    forged = valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")
    assert client.get(path(forged)).status_code == 403

    expired = signer.create(
        "bundles/acme/case-1/offboarding-case-1.zip", datetime.now(UTC) - timedelta(seconds=1)
    )
    assert client.get(path(expired)).status_code == 410

    store.delete("bundles/acme/case-1/offboarding-case-1.zip")
    assert client.get(path(valid)).status_code == 410


def test_a_link_signed_by_another_installation_is_refused(platform: Platform) -> None:
    other = LinkSigner(b"another installation's secret....", platform.settings.link_base_url)
    link = other.create("bundles/acme/x.zip", datetime.now(UTC) + timedelta(hours=1))
    client = TestClient(create_app(platform.settings))
    assert client.get(link.removeprefix(platform.settings.link_base_url)).status_code == 403
