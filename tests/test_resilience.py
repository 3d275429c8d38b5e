"""Transient storage failures: with a third of all storage calls failing (a flaky bucket), a
whole case still exports, delivers and is destroyed; with every call failing, the step stops
with a clear error that says to retry, and nothing is half-recorded."""

from __future__ import annotations

import pytest

from offboarding.core.errors import StoreUnavailableError
from offboarding.core.signing import Signer, load_public_key
from offboarding.evidence.archive import verify_archive
from offboarding.stores import open_store
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_flaky_store_is_retried_and_the_case_completes(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setenv("OFFBOARD_STORE_FAILURE_RATE", "0.3")
    monkeypatch.setenv("OFFBOARD_STORE_FAILURE_SEED", str(seed))
    monkeypatch.setenv("OFFBOARD_STORE_RETRY_ATTEMPTS", "12")
    monkeypatch.setenv("OFFBOARD_STORE_RETRY_WAIT", "0.001")  # the backoff's shape, not its time
    neighbours = platform.fingerprint("globex")
    case = platform.case("acme")
    export_and_deliver(platform, case)
    destroy_everything(platform, case)
    monkeypatch.delenv("OFFBOARD_STORE_FAILURE_RATE")

    left = platform.fingerprint("acme")
    assert left["files"]["count"] == 0  # type: ignore[index]
    assert platform.fingerprint("globex") == neighbours
    public_key = load_public_key(Signer.load_or_create(platform.settings.keys_dir).public_pem)
    report = verify_archive(open_store(platform.settings.store_url("archive")), public_key)
    assert report.certificates == 1


def test_a_store_that_keeps_failing_stops_the_step_with_a_clear_error(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFBOARD_STORE_FAILURE_RATE", "1")
    monkeypatch.setenv("OFFBOARD_STORE_RETRY_ATTEMPTS", "3")
    monkeypatch.setenv("OFFBOARD_STORE_RETRY_WAIT", "0.001")
    case = platform.case("acme")
    with pytest.raises(StoreUnavailableError, match=r"failed 3 times.*retry the step"):
        export_and_deliver(platform, case)
