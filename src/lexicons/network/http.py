"""Answers to plain HTTP requests on the WebSocket port: health checks and static files.

A request without ``Upgrade: websocket`` is answered here rather than dropped, so a load
balancer can probe ``GET /healthz``, a page loads the JavaScript client from
``GET /lexicons.js`` (as socket.io serves its own), and a page that talks to the app can
be served from the same port (the ``static`` setting). ``GET /lexicons.attempt`` is the
client's probe: the handshake's admission, answered with a status a browser can read
(the session runs it; see :func:`attempt_handshake`). Whatever a client sends, the
answer is a status code: only ``GET`` and ``HEAD`` are served, a path holding NUL bytes
or a malformed escape gets 400, dot-files and anything outside the folder get 404, and a
file is streamed from disk by the network layer, never read whole on the event loop.
"""

from __future__ import annotations

import email.utils
import mimetypes
import stat
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

__all__ = [
    "ATTEMPT_PATH",
    "StaticFile",
    "answer",
    "answer_not_found",
    "attempt_handshake",
    "cors_headers",
    "is_attempt",
    "is_attempt_path",
    "is_upgrade",
    "plain_response",
]

#: Longest path a static request may name; longer ones are refused before the disk is asked.
MAX_PATH = 1024

#: The built JavaScript client, served at these paths from the package's own files, with
#: types named here (the guess for ``.ts`` would be a video).
CLIENT_FILES = {
    "/lexicons.js": ("lexicons.js", "text/javascript; charset=utf-8"),
    "/lexicons.js.map": ("lexicons.js.map", "application/json"),
    "/lexicons.d.ts": ("lexicons.d.ts", "text/plain; charset=utf-8"),
}
_CLIENT_FOLDER = Path(__file__).resolve().parent.parent / "client_js"

#: Where the JavaScript client asks whether a failed handshake was refused or unreachable.
ATTEMPT_PATH = "/lexicons.attempt"
#: The probe's copy of the subprotocol offer: browsers may not set Sec-WebSocket-Protocol.
ATTEMPT_OFFER = "Lexicons-Protocol"


class StaticFile:
    """A file to stream after ``head``: the session writes the head, the port the body.

    ``path`` is ``None`` for a ``HEAD`` request (the head alone).
    """

    __slots__ = ("head", "path", "size")

    def __init__(self, head: Response, path: Path | None, size: int) -> None:
        self.head = head
        self.path = path
        self.size = size


def is_upgrade(request: Request) -> bool:
    """Whether the request asks for a WebSocket (on any path)."""
    for value in request.headers.get_all("Upgrade"):
        if "websocket" in value.lower():
            return True
    return False


def _headers(content_type: str, length: int, *extra: tuple[str, str]) -> Headers:
    return Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(length)),
            ("Content-Type", content_type),
            *extra,
        ]
    )


def plain_response(
    status: int,
    body: bytes | str = b"",
    content_type: str = "text/plain; charset=utf-8",
    *extra: tuple[str, str],
) -> Response:
    """A complete HTTP response that closes the connection after it is sent."""
    if isinstance(body, str):
        body = body.encode()
    code = HTTPStatus(status)
    return Response(code.value, code.phrase, _headers(content_type, len(body), *extra), body)


def answer_not_found() -> Response:
    """404, for a server that serves nothing over plain HTTP."""
    return plain_response(404, "not found\n")


def answer(request: Request, static: Path | None) -> Response | StaticFile:
    """Answer a plain HTTP request: ``/healthz``, a file under ``static``, or an error."""
    method = getattr(request, "method", "GET")
    if method not in ("GET", "HEAD"):
        return plain_response(405, "method not allowed\n", "text/plain; charset=utf-8", _ALLOW)
    path = _decoded_path(request.path)
    if path is None:
        return plain_response(400, "bad request path\n")
    if path == "/healthz":
        response = plain_response(200, "ok\n")
    elif path in CLIENT_FILES:
        return _client_file(*CLIENT_FILES[path], method == "HEAD")
    elif static is None:
        response = answer_not_found()
    else:
        found = _static_file(static, path)
        if found is None:
            response = answer_not_found()
        else:
            return _file_answer(found, method == "HEAD")
    if method == "HEAD":
        return Response(response.status_code, response.reason_phrase, response.headers, b"")
    return response


_ALLOW = ("Allow", "GET, HEAD")


def _client_file(name: str, content_type: str, head_only: bool) -> StaticFile:
    path = _CLIENT_FOLDER / name
    return _streamed(path, path.stat().st_size, content_type, head_only)


def is_attempt_path(request: Request) -> bool:
    """Whether a request names the probe's path (``/lexicons.attempt``)."""
    return urlsplit(request.path).path == ATTEMPT_PATH


def is_attempt(request: Request) -> bool:
    """Whether a plain HTTP request is the client's probe (``GET /lexicons.attempt``)."""
    return getattr(request, "method", "GET") == "GET" and is_attempt_path(request)


def attempt_handshake(request: Request) -> Request:
    """The handshake a probe stands for: its headers, cookies and query, with the
    subprotocol offer it copied into ``Lexicons-Protocol``, so that the same checks see
    the same credentials (and a ``Sec-WebSocket-Protocol`` it sent itself counts for none).
    """
    headers = Headers(
        (name, value)
        for name, value in request.headers.raw_items()
        if name.lower() not in ("sec-websocket-protocol", ATTEMPT_OFFER.lower())
    )
    for value in request.headers.get_all(ATTEMPT_OFFER):
        headers["Sec-WebSocket-Protocol"] = value
    return Request(request.path, headers)


def cors_headers(request: Request, preflight: bool) -> list[tuple[str, str]]:
    """What lets a page of another origin read the probe's answer; the caller has checked
    that its ``Origin`` is one the handshake admits. ``preflight``: the ``OPTIONS`` answer."""
    origin = request.headers.get("Origin", "")
    found = [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
    ]
    if preflight:
        found += [
            ("Access-Control-Allow-Methods", "GET"),
            ("Access-Control-Allow-Headers", ATTEMPT_OFFER),
            ("Access-Control-Max-Age", "600"),
        ]
    return found


def _decoded_path(target: str) -> str | None:
    """The request's path with escapes decoded; ``None`` when it cannot name a file."""
    raw = urlsplit(target).path
    if len(raw) > MAX_PATH * 3:
        return None
    try:
        path = unquote(raw, errors="strict") if "%" in raw else raw
    except UnicodeDecodeError:
        return None
    if "\x00" in path or "\\" in path or len(path) > MAX_PATH:
        return None
    return path


def _static_file(root: Path, path: str) -> tuple[Path, int] | None:
    """The file ``path`` names under ``root`` and its size; never outside it, never a
    dot-file or anything in a dot-folder; a folder means its ``index.html``."""
    parts = [part for part in path.split("/") if part]
    if any(part.startswith(".") for part in parts):
        return None
    try:
        root = root.resolve()
        target = root.joinpath(*parts).resolve()
        if target != root and root not in target.parents:
            return None  # a symlink pointing out of the folder
        if target.is_dir():
            target = target / "index.html"
        status = target.stat()
    except (OSError, ValueError):  # too long, a loop of links, gone meanwhile ...
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return target, status.st_size


def _file_answer(found: tuple[Path, int], head_only: bool) -> StaticFile:
    path, size = found
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type.endswith("javascript"):
        content_type += "; charset=utf-8"
    return _streamed(path, size, content_type, head_only)


def _streamed(path: Path, size: int, content_type: str, head_only: bool) -> StaticFile:
    code = HTTPStatus.OK
    head = Response(code.value, code.phrase, _headers(content_type, size), b"")
    return StaticFile(head, None if head_only else path, size)
