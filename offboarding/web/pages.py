"""What every page of the link endpoint shares: the HTML frame, the bounded form body."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.responses import HTMLResponse

__all__ = ["MAX_FORM_BYTES", "bounded_body", "page"]


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{title}</title><style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}
label{{display:block;margin-top:1em}}</style></head><body><h1>{title}</h1>{body}</body></html>"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    from starlette.responses import HTMLResponse

    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


# A form is a few hundred bytes: anything much larger is refused before it is read whole.
MAX_FORM_BYTES = 16 * 1024


async def bounded_body(request: Any) -> bytes | None:
    """The request's body, or None once it passes MAX_FORM_BYTES (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return body
