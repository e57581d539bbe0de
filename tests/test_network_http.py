"""Plain HTTP on the WebSocket port against hostile requests, over real sockets.

Whatever a client sends, the answer is a status code: bad paths get 4xx, dot-files are
never served, only GET and HEAD are, and a file of any size is streamed, so neither a
slow client nor a large file holds the server's memory or its other clients.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from conftest import echo_app, traced_memory

from lexicons import Server
from lexicons.testing import TestClient

KiB, MiB = 1024, 1024 * 1024


async def open_socket(client: TestClient, rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking socket connected to ``client``'s server (a small receive buffer
    makes a large answer wait for the client's reads)."""
    assert client.running is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.running.port))
    return sock


async def send_request(sock: socket.socket, method: str, path: str) -> None:
    request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    await asyncio.get_running_loop().sock_sendall(sock, request.encode())


async def receive(sock: socket.socket, until: bytes | None = None) -> bytes:
    """Read until ``until`` arrived, or else until the server closes its side."""
    loop = asyncio.get_running_loop()
    received = b""
    while until is None or until not in received:
        data = await asyncio.wait_for(loop.sock_recv(sock, 256 * KiB), 5)
        if not data:
            break
        received += data
    return received


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    assert response, "the server hung up without an answer"
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


async def request(
    client: TestClient, method: str, path: str, rcvbuf: int | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request on a connection of its own: status, headers, body."""
    sock = await open_socket(client, rcvbuf)
    try:
        await send_request(sock, method, path)
        return parse(await receive(sock))
    finally:
        sock.close()


def site(root: Path) -> Path:
    """A static folder with a page, dot-files and a dot-folder."""
    (root / "index.html").write_text("<h1>hi</h1>")
    (root / ".env").write_text("SECRET=1")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]")
    (root / ".git" / "index.html").write_text("<h1>repository</h1>")
    (root / "assets").mkdir()
    (root / "assets" / ".hidden").write_text("no")
    return root


async def assert_unharmed(client: TestClient) -> None:
    status, _, body = await request(client, "GET", "/healthz")
    assert (status, body) == (200, b"ok\n")
    peer = await client.connect()
    assert await peer.call("echo", text="fine") == {"text": "fine"}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/%00", 400),
        ("/index.html%00.txt", 400),
        ("/" + "a" * 300, 404),
        ("/" + "a" * 300 + "/index.html", 404),
        ("/" + "a/" * 2000, 400),
        ("/%ff%fe", 400),
    ],
    ids=["nul", "nul-in-name", "long-name", "long-folder", "long-path", "not-utf8"],
)
async def test_a_path_no_file_can_have_gets_a_4xx_and_the_server_carries_on(
    tmp_path: Path, path: str, status: int
) -> None:
    async with TestClient(echo_app(static=str(site(tmp_path)))) as client:
        assert (await request(client, "GET", path))[0] == status
        await assert_unharmed(client)


@pytest.mark.parametrize(
    "path", ["/.env", "/%2eenv", "/.git/config", "/.git/", "/assets/.hidden", "/assets/%2ehidden"]
)
async def test_dot_files_and_dot_folders_are_never_served(tmp_path: Path, path: str) -> None:
    async with TestClient(echo_app(static=str(site(tmp_path)))) as client:
        assert (await request(client, "GET", "/index.html"))[0] == 200
        status, _, body = await request(client, "GET", path)
        assert (status, body) == (404, b"not found\n")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "BREW"])
async def test_methods_other_than_get_and_head_get_405(tmp_path: Path, method: str) -> None:
    async with TestClient(echo_app(static=str(site(tmp_path)))) as client:
        status, headers, body = await request(client, method, "/index.html")
        assert status == 405
        assert headers["Allow"] == "GET, HEAD"
        assert b"<h1>" not in body


async def test_head_gets_the_headers_of_get_without_a_body(tmp_path: Path) -> None:
    async with TestClient(echo_app(static=str(site(tmp_path)))) as client:
        get_status, get_headers, get_body = await request(client, "GET", "/index.html")
        status, headers, body = await request(client, "HEAD", "/index.html")
        assert (get_status, get_body) == (200, b"<h1>hi</h1>")
        assert (status, body) == (200, b"")
        assert headers["Content-Length"] == str(len(get_body))
        assert headers["Content-Type"] == get_headers["Content-Type"]
        status, headers, body = await request(client, "HEAD", "/healthz")
        assert (status, headers["Content-Length"], body) == (200, "3", b"")


async def test_a_file_larger_than_max_buffer_is_served_whole(tmp_path: Path) -> None:
    # Larger than the socket buffers on both sides hold: it leaves as the client reads.
    content = bytes(range(256)) * (8 * MiB // 256)
    (tmp_path / "big.bin").write_bytes(content)
    app = echo_app(static=str(tmp_path), max_buffer=64 * KiB)
    async with TestClient(app) as client:
        status, headers, body = await request(client, "GET", "/big.bin", rcvbuf=64 * KiB)
        assert (status, headers["Content-Length"]) == (200, str(len(content)))
        assert body == content


async def test_a_large_file_to_a_client_that_does_not_read_holds_no_memory_nor_others(
    tmp_path: Path,
) -> None:
    size = 16 * MiB
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * (size // 256))
    app = echo_app(static=str(tmp_path), max_buffer=256 * KiB)
    async with TestClient(app) as client:
        other = await client.connect()
        with traced_memory() as peak:
            sock = await open_socket(client, rcvbuf=4 * KiB)
            try:
                await send_request(sock, "GET", "/big.bin")
                head = await receive(sock, until=b"\r\n\r\n")  # the answer began ...
                # ... and while this client reads no more, others are answered.
                assert await other.call("echo", text="meanwhile") == {"text": "meanwhile"}
                grown = peak()
            finally:
                sock.close()
        status, headers, _ = parse(head)
        assert (status, headers["Content-Length"]) == (200, str(size))
    assert grown < size // 4, f"the server grew by {grown} bytes serving a {size}-byte file"


async def test_a_download_that_outlasts_close_timeout_arrives_whole(tmp_path: Path) -> None:
    # Larger than the socket buffers on both sides hold: the download is under way.
    content = bytes(range(256)) * (16 * MiB // 256)
    (tmp_path / "big.bin").write_bytes(content)
    timeout = 0.2
    app = echo_app(
        static=str(tmp_path), max_buffer=64 * KiB, close_timeout=timeout, open_timeout=timeout
    )
    async with TestClient(app) as client:
        sock = await open_socket(client, rcvbuf=64 * KiB)
        idle = await open_socket(client)
        try:
            await send_request(sock, "GET", "/big.bin")
            received = await receive(sock, until=b"\r\n\r\n")
            # A connection opened after the answer began, silent, is dropped when its
            # open_timeout passes: this download has then lasted longer than that.
            await reset_or_closed(idle)
            received += await receive(sock)
        finally:
            sock.close()
            idle.close()
        status, headers, body = parse(received)
        assert (status, len(body)) == (200, len(content))
        assert body == content


async def reset_or_closed(sock: socket.socket) -> None:
    """Wait until the server drops ``sock`` (which sent nothing)."""
    try:
        assert await receive(sock) == b""
    except ConnectionResetError:
        pass


async def test_a_server_without_static_files_answers_404_and_405(tmp_path: Path) -> None:
    async with TestClient(Server()) as client:
        assert (await request(client, "GET", "/%00"))[0] == 400
        assert (await request(client, "GET", "/index.html"))[0] == 404
        assert (await request(client, "POST", "/healthz"))[0] == 405
