"""The certificate as a person reads it: a real case destroyed and compacted, its page rendered
by `offboard audit certificate` from the signed archive, read back as HTML (verdict first, a
timeline whose labels neither overlap nor leave the picture, one row per system, no blank
cell), shown in a real browser (nothing wider than the window), and as PDF pages turned into
images by PDFium (A4, the verdict's words on the first page, ink on every page). With
OFFBOARD_SAVE_SCREENSHOTS=1, the pictures go to docs/images for the auditors' guide."""

from __future__ import annotations

import html.parser
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pypdfium2
import pytest

from offboarding.core.errors import IntegrityError
from offboarding.core.signing import Signer, load_key_list
from offboarding.destruction.compaction import addendum_key, compact_destroyed
from offboarding.evidence.archive import compacted_page_key, verify_archive
from offboarding.evidence.readable import Mark, timeline_svg
from offboarding.evidence.report_v1 import render_v1
from offboarding.stores import open_store
from tests.conftest import Platform
from tests.helpers import destroy_everything, export_and_deliver
from tests.test_ui import DOCS_IMAGES

_SVG = "{http://www.w3.org/2000/svg}"


class _Cells(html.parser.HTMLParser):
    """The page's table cells and headings, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.headings: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("td", "h2"):
            self._in = tag
            (self.cells if tag == "td" else self.headings).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "td":
            self.cells[-1] += data
        elif self._in == "h2":
            self.headings[-1] += data


def _labels(svg: str) -> list[tuple[float, float, float, str]]:
    """Each label's row (y), its left and right ends (by the renderer's width per character,
    which DejaVu Sans at 10 px stays within), and its text."""
    root = ET.fromstring(svg)  # noqa: S314 - the page this test rendered
    found = []
    for text in root.iter(f"{_SVG}text"):
        words = text.text or ""
        middle, half = float(text.get("x", 0)), 6.2 * len(words) / 2
        found.append((float(text.get("y", 0)), middle - half, middle + half, words))
    return found


def _save(source: Path, name: str) -> None:
    if os.environ.get("OFFBOARD_SAVE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(exist_ok=True)
        shutil.copy(source, DOCS_IMAGES / name)


def test_the_timeline_keeps_every_label_apart_and_inside_the_picture() -> None:
    """Many dates in a few days (a fast case) and one far away: no label on another."""
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    marks = [Mark(start + timedelta(hours=5 * n), f"step {n}") for n in range(9)]
    marks.append(Mark(start + timedelta(days=90), "Deadline", "deadline"))
    svg = timeline_svg(marks)
    height = float(svg.split('viewBox="0 0 720 ', 1)[1].split('"', 1)[0])
    labels = _labels(svg)
    assert len(labels) == 10
    for y, left, right, _ in labels:
        assert left >= 0 and right <= 720 and 0 < y < height
    for n, (y, left, right, words) in enumerate(labels):
        for other_y, other_left, other_right, other in labels[n + 1 :]:
            if y == other_y:
                assert right <= other_left or other_right <= left, (words, other)


@pytest.mark.slow
def test_a_destroyed_cases_certificate_reads_as_a_page_and_prints_as_pdf(
    platform: Platform, browser: Any, tmp_path: Path
) -> None:
    settings = platform.settings
    case = platform.case("acme")
    export_and_deliver(platform, case)
    destroy_everything(platform, case)
    assert compact_destroyed(settings).closed == {case.case_id: addendum_key(case)}
    archive = open_store(settings.store_url("archive"))
    root = Path(archive.url.removeprefix("file://"))
    with archive.open_read(f"certificates/acme/{case.case_id}.json") as handle:
        certificate = json.loads(handle.read())

    page_path, pdf_path = tmp_path / "certificate.html", tmp_path / "certificate.pdf"
    done = subprocess.run(
        [sys.executable, "-m", "offboarding.cli", "audit", "certificate", case.case_id,
         str(root), "--html", str(page_path), "--pdf", str(pdf_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"OK: certificates/acme/{case.case_id}.residue.json signed by" in done.stdout
    page = page_path.read_text()
    # The same page the compaction archived beside the certificate, and audit verify agrees.
    with archive.open_read(compacted_page_key(addendum_key(case))) as handle:
        assert handle.read().decode() == page
    report = verify_archive(archive, load_key_list(settings.keys_dir))
    assert report.reports == 2 and report.addenda == 1
    # A page an earlier version archived (every field in a table) still checks against its
    # certificate; the same page with a fact changed does not.
    first = root / "reports" / "acme" / f"{case.case_id}.html"
    signer = Signer.load_or_create(settings.keys_dir)
    for body, holds in ((render_v1(certificate), True),
                        (render_v1({**certificate, "inventory_rows": 1}), False)):  # fmt: skip
        first.write_text(body)
        (root / "reports" / "acme" / f"{case.case_id}.html.sig").write_bytes(
            signer.sign(body.encode())
        )
        if holds:
            verify_archive(archive, load_key_list(settings.keys_dir))
        else:
            with pytest.raises(IntegrityError, match="does not show the certificate"):
                verify_archive(archive, load_key_list(settings.keys_dir))

    # The verdict first, with the date, the deadline and the key.
    verdict = page[page.index('<div class="verdict') : page.index("</div>")]
    assert page.index('<div class="verdict') < page.index("<svg") < page.index("<table")
    assert "within the contract's deadline" in verdict and certificate["signing_key"] in verdict
    assert "0 of" in verdict and "canaries" in verdict
    cells = _Cells()
    cells.feed(page)
    assert cells.headings[:2] == ["Timeline", "Every system, one row each"]
    assert "Not covered, and why" in cells.headings and "Physical residue" in cells.headings
    assert all(cell.strip() for cell in cells.cells), "a blank cell"
    systems = _Cells()
    start = page.index("<h2>Every system")
    systems.feed(page[start : page.index("<h2>", start + 4)])
    for name in [s["name"] for s in certificate["systems"]]:
        assert systems.cells.count(name) == 1, name
    assert "openssl pkeyutl -verify" in page and "offboard audit verify" in page
    svg = page[page.index("<svg") : page.index("</svg>") + 6]
    words = [label[3] for label in _labels(svg)]
    for label in ("Termination", "Delivery", "Logical deletion", "Pages purged", "Deadline"):
        assert any(w.startswith(label) for w in words), (label, words)
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")

    # In a browser: nothing wider than a narrow window, the timeline drawn.
    browser.set_window_size(820, 1000)
    browser.get(page_path.as_uri())
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 820
    drawn = browser.execute_script(
        "const b = document.querySelector('svg').getBoundingClientRect(); "
        "return [b.width, b.height]"
    )
    assert drawn[0] > 500 and drawn[1] > 40
    browser.set_window_size(1000, 2400)
    shot = tmp_path / "certificate-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000
    _save(shot, "certificate-page.png")

    # As PDF: A4 pages, the verdict's words on the first, each page with ink on it.
    pdf = pypdfium2.PdfDocument(str(pdf_path))
    assert 1 <= len(pdf) <= 4
    width, height = pdf[0].get_size()
    assert (round(width), round(height)) == (595, 842)
    first = pdf[0].get_textpage().get_text_range()
    assert "Certificate of destruction" in first and "within the contract" in first
    for number in range(len(pdf)):
        image = pdf[number].render(scale=1.5).to_pil()
        dark = sum(1 for value in image.convert("L").getdata() if value < 128)
        assert dark > 2_000, f"page {number + 1} is blank"
        target = tmp_path / f"certificate-pdf-{number + 1}.png"
        image.save(target)
        if number == 0:
            _save(target, "certificate-pdf-1.png")
    pdf.close()
