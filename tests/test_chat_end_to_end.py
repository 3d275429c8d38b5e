"""`offboard demo --platform chat`, end to end through a real Prefect server: the chat platform
(no foreign key; its data map declares every reference) offboarded as the main demo is, its
bundle matching the product's own joins, nothing of the team left by those joins, the other
teams unchanged, and the certificate naming what it left out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from offboarding.dev.demo.chat_run import run_chat_case
from offboarding.dev.demo.run import run_demo

pytestmark = pytest.mark.slow


def test_the_chat_platform_is_offboarded_end_to_end(tmp_path: Path) -> None:
    saved = dict(os.environ)
    try:
        result = run_demo(
            tmp_path / "chat", platform="chat", run_case=run_chat_case, say=lambda _: None
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result.ok, result.errors
    assert result.remaining == {} and result.neighbours_unchanged is True
    assert result.certificate_verified is True
    assert result.systems == {"postgres": "verified", "files": "verified"}
    # The compact deployment ran: the team's canaries are gone from the tables' pages.
    pages = result.residue["heap, TOAST and index pages"]
    assert pages.startswith("0 of ") and pages.endswith("purged"), result.residue
    assert result.certificate is not None
    certificate = json.loads(Path(result.certificate).read_text())
    left = {e["name"]: e["kind"] for e in certificate["left_out"]}
    assert left["chat.roles"] == "global table" and left["chat.systems"] == "global table"
