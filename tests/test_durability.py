"""Acknowledged writes survive SIGKILL: a reply is sent only after its data is committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

import pytest
from conftest import Process
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

APP = Path(__file__).parent / "apps" / "durable_app.py"
SIGNUP_APP = Path(__file__).parent / "apps" / "durable_signup_app.py"

pytestmark = pytest.mark.slow


def start(
    process: type[Process], data: Path, app: Path = APP, file_size_limit: int | None = None
) -> tuple[Process, str]:
    """Run ``app`` on ``data``; with ``file_size_limit``, no file it writes may grow past
    that many bytes (a full disk, as the operating system reports it: EFBIG)."""
    command: list[str | Path] = [sys.executable, app]
    if file_size_limit is not None:
        limit = (file_size_limit, file_size_limit)
        command[1:] = [
            "-c",
            f"import resource, runpy; resource.setrlimit(resource.RLIMIT_FSIZE, {limit}); "
            f"runpy.run_path({str(app)!r}, run_name='__main__')",
        ]
    server = process(*command, "run", "--host", "127.0.0.1", "--port", "0", "--data", str(data))
    return server, server.url()


async def test_sigkill_loses_no_acknowledged_write(process: type[Process], tmp_path: Path) -> None:
    server, url = start(process, tmp_path)
    acknowledged: dict[str, int] = {}
    try:
        async with connect(url) as ws:
            # Keep several writes in flight so the kill lands between a commit and a reply.
            sent = 0
            for _ in range(8):
                await ws.send(json.dumps({"write": {"n": sent, "text": f"t{sent}"}, "ref": sent}))
                sent += 1
            try:
                while True:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    acknowledged[reply["write"]] = reply["ref"]
                    if len(acknowledged) == 300:
                        server.popen.send_signal(signal.SIGKILL)
                    await ws.send(
                        json.dumps({"write": {"n": sent, "text": f"t{sent}"}, "ref": sent})
                    )
                    sent += 1
            except ConnectionClosed:
                pass
    finally:
        server.popen.kill()
        server.popen.communicate()
    assert len(acknowledged) >= 300

    from lexicons import Database
    from tests.apps.durable_app import Note

    db = Database([Note], data=str(tmp_path), durable=True)
    db.open()
    try:
        rows = {note.pk: note for note in db.query(Note)}
        missing = set(acknowledged) - set(rows)
        assert not missing, f"{len(missing)} acknowledged writes were lost"
        for note in rows.values():  # nothing half-written: every row is whole and consistent
            assert note.text == f"t{note.n}"
        for pk, ref in acknowledged.items():
            assert rows[pk].n == ref
    finally:
        db.close()

    server, url = start(process, tmp_path)  # and the app itself starts again on the same data
    async with connect(url) as ws:
        await ws.send(json.dumps({"count": {}, "ref": 1}))
        assert json.loads(await ws.recv())["count"] == len(rows)
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err


async def test_sigkill_loses_no_row_a_header_confirmed(
    process: type[Process], tmp_path: Path
) -> None:
    server, url = start(process, tmp_path, SIGNUP_APP)
    confirmed: dict[str, str] = {}
    try:
        async with contextlib.AsyncExitStack() as clients:
            for n in range(20):
                header = "Signup" if n % 2 else "Enroll"  # a sync and an async header
                ws = await clients.enter_async_context(
                    connect(url, additional_headers={header: f"user{n}"})
                )
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                confirmed[message["signed_up"]] = message["name"]
            server.popen.send_signal(signal.SIGKILL)  # right after the last confirmation
            server.popen.wait()
    finally:
        server.popen.kill()
        server.popen.communicate()
    assert len(confirmed) == 20

    from lexicons import Database
    from tests.apps.durable_signup_app import Account

    db = Database([Account], data=str(tmp_path), durable=True)
    db.open()
    try:
        rows = {account.pk: account.name for account in db.query(Account)}
    finally:
        db.close()
    lost = set(confirmed) - set(rows)
    assert not lost, f"{len(lost)} of {len(confirmed)} confirmed sign-ups were lost"
    assert {pk: rows[pk] for pk in confirmed} == confirmed


async def test_a_full_disk_answers_storage_error_to_the_writer_and_spares_the_others(
    process: type[Process], tmp_path: Path
) -> None:
    server, url = start(process, tmp_path, file_size_limit=200_000)
    async with connect(url) as reader, connect(url) as writer:
        await reader.send(json.dumps({"count": {}, "ref": "before"}))
        assert json.loads(await reader.recv()) == {"count": 0, "ref": "before"}
        for n in range(1000):  # 2 kB a row: the file reaches its limit long before
            await writer.send(json.dumps({"write": {"n": n, "text": "x" * 2000}, "ref": n}))
            reply = json.loads(await asyncio.wait_for(writer.recv(), 10))
            if "Errors" in reply:
                break
        assert reply["Errors"][0]["code"] == "storage_error" and reply["ref"] == n > 0
        # The writer heard why; it and the client that only reads are still served.
        for ws in (reader, writer):
            await ws.send(json.dumps({"count": {}, "ref": "after"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["ref"] == "after"
    server.popen.kill()
