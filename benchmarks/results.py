"""benchmarks/RESULTS.md holds the report of every benchmark command, each under its own
headings. A command replaces its own sections and keeps the others', so running one benchmark
again never drops or duplicates another's results."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _sections(text: str) -> list[str]:
    sections: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith(("# ", "## ")) or not sections:
            sections.append("")
        sections[-1] += line
    return sections


def record(report: str, headings: tuple[str, ...], path: Path = RESULTS) -> None:
    """Write `report` in place of the sections whose heading starts with one of `headings`
    (a report that starts with the file's title goes first; any other at the end)."""
    old = path.read_text() if path.exists() else ""
    kept = [s.strip("\n") for s in _sections(old) if s.strip() and not s.startswith(headings)]
    report = report.strip("\n")
    ordered = [report, *kept] if report.startswith("# ") else [*kept, report]
    path.write_text("\n\n".join(ordered) + "\n")
