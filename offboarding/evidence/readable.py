"""The certificate as a person reads it: a client's DPO, an auditor filing it years later.

The verdict first (every copy destroyed by a date, within the deadline or not, and the key
that signed it), then a timeline of the case drawn as inline SVG on the server (no script, no
network: the page is one file that prints the same anywhere), one row per system, what the
pipeline did not cover and why, and the commands that check it offline. The page is
generated from the signed JSON alone (and, once the compaction has run, its signed addendum),
so `offboard audit verify` can render it again and compare: the JSON stays authoritative.

`render_pdf` turns the same page into PDF with WeasyPrint, because auditors file PDFs.
"""

from __future__ import annotations

import html
import itertools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["MARK", "render_html", "render_pdf", "timeline_svg"]

MARK = '<meta name="generator" content="tenant-offboarding certificate page/2">'

_STYLE = """
@page { size: A4; margin: 16mm 14mm; }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10.5pt; color: #1b1b1b;
       max-width: 48em; margin: 2em auto; line-height: 1.4; }
h1 { font-size: 17pt; margin: 0 0 .2em; } h2 { font-size: 12.5pt; margin: 1.4em 0 .4em; }
.sub { color: #555; margin: 0 0 1em; }
.verdict { border: 2px solid #2e7d32; background: #f1f8f1; padding: .8em 1em; }
.verdict.late { border-color: #b71c1c; background: #fdf0f0; }
.verdict p { margin: .3em 0; } .verdict .main { font-size: 12pt; font-weight: bold; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; margin: .3em 0; }
th, td { border-bottom: 1px solid #ccc; padding: 4px 6px; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f3f3f3; font-weight: 600; }
.status { font-weight: 600; } .verified, .purged { color: #2e7d32; } .unverified { color: #b71c1c; }
.attested { color: #1565c0; } .lingering { color: #ad6800; }
pre { background: #f6f6f6; padding: .6em; font-size: 8.5pt; white-space: pre-wrap;
      overflow-wrap: anywhere; }
svg { width: 100%; height: auto; } .small { font-size: 9pt; color: #555; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _when(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _day(value: str | datetime | None) -> str:
    moment = _when(value)
    return f"{moment:%d %b %Y}" if moment else "not datable"


def _stamp(value: str | datetime | None) -> str:
    moment = _when(value)
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""


@dataclass(frozen=True)
class Mark:
    """One point of the timeline."""

    at: datetime
    label: str
    kind: str = "step"  # step, copy (a lingering copy gone), purge, deadline


def _marks(certificate: dict[str, Any], addendum: dict[str, Any] | None) -> list[Mark]:
    c = certificate
    steps = [
        ("terminated_at", "Termination"),
        ("delivered_at", "Delivery"),
        ("bundle_first_downloaded_at", "First download"),
        (
            "acknowledged_at",
            "Acknowledged" if c.get("acknowledgement") == "acknowledged" else "Deemed delivered",
        ),
        ("completed_at", "Logical deletion"),
    ]
    marks = [Mark(at, label) for key, label in steps if (at := _when(c.get(key)))]
    lingering: dict[datetime, list[str]] = {}
    for location in c.get("locations", []):
        if until := _when(location.get("pending_until")):
            lingering.setdefault(until, []).append(location["location"])
    for system in c.get("systems", []):
        if system.get("status") == "lingering" and (until := _when(system.get("until"))):
            lingering.setdefault(until, []).append(system["name"])
    for until, named in sorted(lingering.items()):
        names = list(dict.fromkeys(named))  # a system and its location: one name
        shown = ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")
        marks.append(Mark(until, f"{shown} gone", "copy"))
    if addendum:
        marks.append(Mark(_when(addendum["compacted_at"]) or marks[-1].at, "Pages purged", "purge"))
    elif purge := _when(c.get("physically_purged_by")):
        marks.append(Mark(purge, "Pages purged by", "purge"))
    marks.append(Mark(_when(c["deadline"]) or marks[-1].at, "Deadline", "deadline"))
    return sorted(marks, key=lambda m: m.at)


_CHAR = 6.2  # DejaVu Sans at 10 px: its widest common letters, so a label's box holds it


def _positions(marks: list[Mark], left: float, right: float) -> list[float]:
    """Where each mark sits: in date order, each gap drawn by its logarithm (an hour and three
    months both stay readable on one line; the labels carry the dates)."""
    steps = [0.0]
    for before, after in itertools.pairwise(marks):
        hours = (after.at - before.at).total_seconds() / 3600
        steps.append(steps[-1] + (0.0 if hours <= 0 else 1 + math.log1p(hours)))
    scale = (right - left) / (steps[-1] or 1)
    return [left + step * scale for step in steps]


def timeline_svg(marks: list[Mark], width: int = 720) -> str:
    """The case's dates on one axis, in order (gaps drawn by their logarithm): each label on
    the first free row above or below its point, the span within the deadline shaded; plain
    SVG, its text selectable and printable."""
    if not marks:
        return ""
    left, right, row = 16.0, width - 16.0, 15
    points = _positions(marks, left, right)
    placed: list[tuple[Mark, float, float, int, str]] = []
    ends: dict[int, float] = {}  # row (negative: below) -> where its last label ends
    order = [r for n in range(1, 9) for r in (n, -n)]
    for number, (mark, point) in enumerate(zip(marks, points, strict=True)):
        text = f"{mark.label} · {mark.at:%d %b}"
        wide = _CHAR * len(text)
        at = min(max(point, left + wide / 2), right - wide / 2)
        rows = order if number % 2 == 0 else [-r for r in order]
        level = next((r for r in rows if ends.get(r, -1e9) < at - wide / 2 - 4), rows[-1])
        ends[level] = at + wide / 2
        placed.append((mark, point, at, level, text))
    above = max([level for *_, level, _ in placed if level > 0], default=0)
    below = -min([level for *_, level, _ in placed if level < 0], default=0)
    axis = 12 + row * above
    height = axis + 14 + row * below
    deadline = next((p for m, p in zip(marks, points, strict=True) if m.kind == "deadline"), right)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="Timeline of the case" font-family="DejaVu Sans, Arial, sans-serif" '
        'font-size="10">',
        f'<rect x="{left}" y="{axis - 5}" width="{deadline - left:.1f}" height="10" '
        'fill="#e3f1e4"/>',
        f'<line x1="{left}" y1="{axis}" x2="{right}" y2="{axis}" stroke="#444"/>',
    ]
    colours = {"step": "#1b1b1b", "copy": "#ad6800", "purge": "#2e7d32", "deadline": "#b71c1c"}
    labels = []
    for mark, point, at, level, text in placed:
        y = axis - 8 - row * (level - 1) if level > 0 else axis + 16 + row * (-level - 1)
        colour = colours[mark.kind]
        parts += [
            f'<line x1="{point:.1f}" y1="{axis}" x2="{at:.1f}" y2="{y - 4}" stroke="{colour}" '
            'stroke-width="0.5"/>',
            f'<circle cx="{point:.1f}" cy="{axis}" r="4" fill="{colour}"/>',
        ]
        wide = _CHAR * len(text)
        # Each label on a white ground: a leader line of another passes behind it, not over it.
        labels += [
            f'<rect x="{at - wide / 2 - 2:.1f}" y="{y - 9}" width="{wide + 4:.1f}" height="12" '
            'fill="#ffffff"/>',
            f'<text x="{at:.1f}" y="{y}" text-anchor="middle" fill="{colour}">{_e(text)}</text>',
        ]
    parts += [*labels, "</svg>"]
    return "".join(parts)


def _verdict(c: dict[str, Any], addendum: dict[str, Any] | None) -> str:
    met = bool(c.get("deadline_met"))
    gone, deadline = _when(c["all_copies_gone_by"]), _when(c["deadline"])
    spare = (deadline - gone).days if gone and deadline else 0
    main = (
        f"Every copy of tenant {_e(c['tenant'])}'s data held by the operator was destroyed by "
        f"{_day(gone)}, within the contract's deadline of {_day(deadline)} ({spare} days to "
        "spare)."
        if met
        else f"The last copy of tenant {_e(c['tenant'])}'s data was destroyed on {_day(gone)}: "
        f"AFTER the contract's deadline of {_day(deadline)}."
    )
    if addendum:
        held = [p for p in addendum["places"] if p["status"] == "purged"]
        physical = (
            f"The deleted records' bytes were purged from the files on "
            f"{_day(addendum['compacted_at'])}: "
            + "; ".join(
                f"{_e(p['system'])} {_e(p['place'])}: {p['found']} of {p['canaries']} "
                f"canaries in {p['files']} files"
                for p in held
                if p["files"]
            )
            + "."
            + "".join(
                f" Not provable by canaries: {_e(p['system'])} {_e(p['place'])} ({_e(p['until'])})."
                for p in addendum["places"]
                if p["status"] == "unverified"
            )
        )
    elif c.get("physical_residue"):
        physical = (
            f"Logically deleted on {_day(c['completed_at'])}; the deleted records' bytes stay "
            "in the database files until the scheduled compaction rewrites them, by "
            f"{_day(c.get('physically_purged_by'))} (see Physical residue)."
        )
    else:
        physical = ""
    return (
        f'<div class="verdict{"" if met else " late"}"><p class="main">{main}</p>'
        + (f"<p>{physical}</p>" if physical else "")
        + f"<p>Signed with the operator's Ed25519 key <code>{_e(c['signing_key'])}</code> on "
        f"{_stamp(c['completed_at'])}.</p></div>"
    )


_NIST = {"clear": "NIST clear", "purge": "NIST purge",
         "delete": "logical deletion (a NIST clear once its files are rewritten)"}  # fmt: skip


def _systems(c: dict[str, Any]) -> str:
    rows = []
    named = {s["name"] for s in c.get("systems", [])}
    nist = {loc["location"]: _NIST.get(loc["method"], "") for loc in c.get("locations", [])}
    for s in c.get("systems", []):
        when = s.get("attested_at") or s.get("until") or c["completed_at"]
        who = f" by {_e(s['role'])}" if s.get("role") else ""
        how = (f"{nist[s['name']]}: " if nist.get(s["name"]) else "") + _e(s.get("method"))
        rows.append((s["name"], s["status"], how + who, _day(when)))
    for loc in c.get("locations", []):
        if loc["location"] in named:
            continue
        status = "lingering" if loc.get("pending_until") else "verified"
        how = f"{_NIST.get(loc['method'], _e(loc['method']))}: {_e(loc['technique'])}; " + (
            f"{loc['remaining']} left"
        )
        rows.append(
            (loc["location"], status, how, _day(loc.get("pending_until") or loc["verified_at"]))
        )
    body = "".join(
        f'<tr><td>{_e(name)}</td><td class="status {_e(status)}">{_e(status)}</td>'
        f"<td>{how}</td><td>{when}</td></tr>"
        for name, status, how, when in rows
    )
    return (
        "<h2>Every system, one row each</h2><p class=small>Verified: destroyed and scanned "
        "again by the pipeline. Attested: destroyed by the named role, who confirmed it. "
        "Lingering: a copy the pipeline knows of, gone by the date.</p>"
        '<table><colgroup><col style="width:19%"><col style="width:12%"><col>'
        '<col style="width:15%"></colgroup><tr><th>System</th><th>Status</th><th>How</th>'
        f"<th>Date</th></tr>{body}</table>"
    )


def _residue(c: dict[str, Any], addendum: dict[str, Any] | None) -> str:
    if addendum:
        rows = "".join(
            f"<tr><td>{_e(p['system'])}</td><td>{_e(p['place'])}</td>"
            f"<td>{p['found']} of {p['canaries']} canaries in {p['files']} files "
            f'({p["bytes"]:,} bytes)</td><td class="status {_e(p["status"])}">'
            f"{_e(p['status'])}{': ' + _e(p['until']) if p.get('until') else ''}</td></tr>"
            for p in addendum["places"]
        )
        head = "<th>System</th><th>Place</th><th>Canary scan</th><th>Status</th>"
        intro = (
            f"Compaction run {_e(addendum['run'])} on {_stamp(addendum['compacted_at'])} "
            "(signed addendum). Canaries are values sampled from the tenant's data at "
            "its inventory, looked for in every file of each place, then destroyed."
        )
    elif c.get("physical_residue"):
        rows = "".join(
            f"<tr><td>{_e(r['system'])}</td><td>{_e(r['place'])}</td><td>{_day(r['until'])}"
            f"</td><td>{_e(r['ends'])}</td></tr>"
            for r in c["physical_residue"]
        )
        head = "<th>System</th><th>Place</th><th>Until</th><th>What ends it</th>"
        intro = (
            "Deleted records whose bytes stay on disk after the logical deletion, until "
            "the date given; the compaction's signed addendum reports the scan."
        )
    else:
        return ""
    return (
        f"<h2>Physical residue</h2><p class=small>{intro}</p><table><colgroup>"
        '<col style="width:14%"><col style="width:26%"><col><col style="width:30%">'
        f"</colgroup><tr>{head}</tr>{rows}</table>"
    )


def _not_covered(c: dict[str, Any]) -> str:
    items = [
        f"<li>{_e(o['kind'])} <b>{_e(o['name'])}</b> ({_e(o['system'])}): {_e(o['why'])}"
        + (f"; handled by {_e(o['handled_by'])}" if o.get("handled_by") else "")
        + "</li>"
        for o in c.get("left_out", [])
    ]
    items += [
        f"<li>rows shared with another tenant in {_e(t)}: {_e(p)}</li>"
        for t, p in c.get("shared_rows", {}).items()
    ]
    items += [
        f"<li>legal hold: {_e(h['kind'])} on {_day(h['at'])}</li>" for h in c.get("legal_holds", [])
    ]
    items += [
        f"<li>{_e(a['action'])} ({_e(a['request'])}): "
        + (
            f"approved on {_day(a.get('approved_at'))}"
            if a.get("approved_by")
            else "not approved, not carried out"
        )
        + "</li>"
        for a in c.get("approvals", [])
    ]
    return (
        "<h2>Not covered, and why</h2><p class=small>What the bundle and the destruction "
        "left to others or kept by declaration, holds and four-eyes decisions.</p>"
        f"<ul>{''.join(items) or '<li>nothing: every system was covered</li>'}</ul>"
    )


def _evidence(c: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(loc['location'])}</td><td>{loc['items_before']:,}</td>"
        f"<td>{loc['items_removed']:,}</td><td>{loc['remaining']}</td>"
        f"<td>{_e(loc['verification'])}</td></tr>"
        for loc in c.get("locations", [])
    )
    return (
        "<h2>Evidence per location</h2>"
        '<table><colgroup><col style="width:16%"><col style="width:11%">'
        '<col style="width:13%"><col style="width:8%"><col></colgroup><tr><th>Location</th>'
        f"<th>Before</th><th>Removed</th><th>Left</th><th>Verification</th></tr>{rows}</table>"
        f"<p class=small>Inventory: {c.get('inventory_rows', 0):,} rows, "
        f"{c.get('inventory_files', 0):,} files, {c.get('inventory_bytes', 0):,} bytes "
        f"(digest {_e(c.get('inventory_digest'))}). Bundle downloads: "
        f"{c.get('bundle_downloads', 0)}. Audit chain head: {_e(c.get('audit_chain_head'))}."
        "</p>"
    )


def _commands(c: dict[str, Any]) -> str:
    name = f"certificates/{c['tenant']}/{c['case_id']}.json"
    text = (
        f"# in a copy of the archive, with the operator's published key list\n"
        f"sha256sum {name}\n"
        f"openssl pkeyutl -verify -pubin -inkey keys/{c['signing_key']}.pem -rawin \\\n"
        f"    -in {name} -sigfile {name}.sig\n"
        "offboard audit verify . --key-list signing-keys.json   # every signature and chain\n"
        f"offboard audit certificate {c['case_id']} . --pdf certificate.pdf   # this page"
    )
    return (
        f"<h2>Check it yourself, offline</h2><pre>{_e(text)}</pre><p class=small>The "
        "signed JSON beside this page is authoritative; this page shows its facts, and "
        "`offboard audit verify` renders it again to compare.</p>"
    )


def render_html(certificate: dict[str, Any], addendum: dict[str, Any] | None = None) -> str:
    """The page, from the certificate's JSON (and the residue addendum's, once it exists)."""
    c = certificate
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{MARK}'
        f"<title>Certificate of destruction {_e(c['case_id'])}</title><style>{_STYLE}</style>"
        f"</head><body><h1>Certificate of destruction</h1><p class=sub>Tenant "
        f"<b>{_e(c['tenant'])}</b>, case {_e(c['case_id'])}; {_e(c['sanitization_standard'])}; "
        f"{_e(c['tool'])} {_e(c['tool_version'])}.</p>"
        + _verdict(c, addendum)
        + "<h2>Timeline</h2><p class=small>The case's dates in order; the shaded span ends at "
        "the deadline (gaps drawn shorter than they are: the dates are on the labels).</p>"
        + timeline_svg(_marks(c, addendum))
        + _systems(c)
        + _residue(c, addendum)
        + _not_covered(c)
        + _evidence(c)
        + _commands(c)
        + f"<p class=small>Performed by {_e(c['performed_by'])}. Validated by "
        f"{_e(c['validated_by'])}.</p></body></html>\n"
    )


def render_pdf(page: str) -> bytes:
    """The page as PDF (WeasyPrint: no script, no network; fonts from the system)."""
    from weasyprint import HTML  # type: ignore[import-untyped]

    pdf = HTML(string=page).write_pdf()
    assert pdf is not None
    return bytes(pdf)
