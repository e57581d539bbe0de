"""Answers to plain HTTP requests on the WebSocket port: health checks and static files.

A request without ``Upgrade: websocket`` is answered here rather than dropped, so a load
balancer can probe ``GET /healthz`` and a page that talks to the app can be served from
the same port (the ``static`` setting).
"""

from __future__ import annotations

import email.utils
import mimetypes
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

__all__ = ["answer", "is_upgrade", "plain_response"]


def is_upgrade(request: Request) -> bool:
    """Whether the request asks for a WebSocket (on any path)."""
    for value in request.headers.get_all("Upgrade"):
        if "websocket" in value.lower():
            return True
    return False


def plain_response(
    status: int, body: bytes | str = b"", content_type: str = "text/plain; charset=utf-8"
) -> Response:
    """A complete HTTP response that closes the connection after it is sent."""
    if isinstance(body, str):
        body = body.encode()
    code = HTTPStatus(status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
        ]
    )
    return Response(code.value, code.phrase, headers, body)


def answer(request: Request, static: Path | None) -> Response:
    """Answer a plain HTTP GET: ``/healthz``, a file under ``static``, or 404."""
    path = unquote(urlsplit(request.path).path)
    if path == "/healthz":
        return plain_response(200, "ok\n")
    if static is not None:
        found = _static_file(static, path)
        if found is not None:
            content_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type.endswith("javascript"):
                content_type += "; charset=utf-8"
            return plain_response(200, found.read_bytes(), content_type)
    return plain_response(404, "not found\n")


def _static_file(root: Path, path: str) -> Path | None:
    """The file ``path`` names under ``root``, never outside it; a folder means its index."""
    root = root.resolve()
    target = (root / path.lstrip("/")).resolve()
    if target != root and root not in target.parents:
        return None
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None
