"""The certificate's page as versions before the readable one wrote it: kept so that
`offboard audit verify` can still check an archived page of that kind against its certificate
(a page is compared with the rendering of the version that wrote it)."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["render_v1"]


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return "<br>".join(
            f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in value.items()
        )
    if isinstance(value, list):
        return "<br>".join(_cell(v) for v in value) or "none"
    return html.escape("" if value is None else str(value))


def render_v1(certificate: dict[str, Any]) -> str:
    """The first page: every field in a table, one table per location and system."""
    scalars = {
        k: v
        for k, v in certificate.items()
        if k not in ("locations", "legal_holds", "systems", "approvals")
    }
    rows = "".join(
        f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{_cell(v)}</td></tr>"
        for k, v in scalars.items()
    )
    columns = ["location", "media", "method", "technique", "items_before", "bytes_before",
               "items_removed", "verification_method", "verification_result", "remaining",
               "verification", "pending_until", "verified_at"]  # fmt: skip
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(loc.get(c))}</td>" for c in columns) + "</tr>"
        for loc in certificate["locations"]
    )
    system_columns = ["name", "description", "status", "method", "until", "role", "attested_at",
                      "action", "evidence"]  # fmt: skip
    systems = "".join(
        "<tr>" + "".join(f"<td>{_cell(s.get(c))}</td>" for c in system_columns) + "</tr>"
        for s in certificate.get("systems", [])
    )
    system_head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in system_columns)
    holds = "".join(
        f"<li>{html.escape(h['kind'])} at {html.escape(h['at'])}</li>"
        for h in certificate["legal_holds"]
    )
    approvals = "".join(
        f"<li>{html.escape(a['action'])} ({html.escape(a['request'])}): asked by "
        f"{_cell(a.get('requested_by'))} at {_cell(a.get('requested_at'))}; "
        + (
            f"approved by {_cell(a.get('approved_by'))} at {_cell(a.get('approved_at'))}"
            if a.get("approved_by")
            else "not approved (not carried out)"
        )
        + "</li>"
        for a in certificate.get("approvals", [])
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Certificate of destruction {html.escape(certificate['case_id'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}"
        "</style></head><body>"
        f"<h1>Certificate of destruction</h1><p>Tenant <b>{html.escape(certificate['tenant'])}"
        f"</b>, case {html.escape(certificate['case_id'])}. The signed JSON certificate beside "
        "this page is authoritative; this page shows the same facts.</p>"
        f"<table>{rows}</table><h2>Per location</h2><table><tr>{head}</tr>{body}</table>"
        "<h2>Systems of the platform's data map</h2><p>Verified: destroyed and re-scanned by "
        "the pipeline. Attested: destroyed by the named role, who confirmed it (never "
        "verified by the pipeline). Lingering: copies the pipeline knows of, gone by the "
        f"date.</p><table><tr>{system_head}</tr>{systems}</table>"
        f"<h2>Legal holds</h2><ul>{holds or '<li>none</li>'}</ul>"
        "<h2>Protections shortened or lifted (four eyes)</h2>"
        f"<ul>{approvals or '<li>none</li>'}</ul></body></html>\n"
    )
