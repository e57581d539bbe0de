"""Acknowledged writes survive SIGKILL: a reply is sent only after its data is committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

import pytest
from conftest import Process, SmallDisk
from websockets.asyncio.client import ClientConnection, connect
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


async def test_a_broadcast_never_leaves_before_its_write_is_committed(
    process: type[Process], tmp_path: Path
) -> None:
    """A listener told about a write by a broadcast finds it after a SIGKILL."""
    server, url = start(process, tmp_path)
    told = []
    try:
        async with contextlib.AsyncExitStack() as clients:
            listener = await clients.enter_async_context(connect(url))
            await listener.send(json.dumps({"listen": {}, "ref": 1}))
            assert json.loads(await listener.recv())["listen"] is True
            for n in range(3):  # a writer each: an announce never finishes
                writer = await clients.enter_async_context(connect(url))
                await writer.send(json.dumps({"announce": {"n": n, "text": f"t{n}"}}))
                told.append(json.loads(await asyncio.wait_for(listener.recv(), 10))["announce"])
            server.popen.send_signal(signal.SIGKILL)
    finally:
        server.popen.kill()
        server.popen.communicate()
    from lexicons import Database
    from tests.apps.durable_app import Note

    with Database([Note], data=str(tmp_path), durable=True) as db:
        assert {(note.pk, note.n) for note in db.query(Note)} == {(t["pk"], t["n"]) for t in told}


async def test_a_row_a_header_writes_survives_sigkill(
    process: type[Process], tmp_path: Path
) -> None:
    """Admitted means told: the row the handshake's header wrote is kept."""
    server, url = start(process, tmp_path)
    try:
        async with connect(url, additional_headers={"Visit": "first visit"}):
            server.popen.send_signal(signal.SIGKILL)
    except ConnectionClosed:
        pass
    finally:
        server.popen.kill()
        server.popen.communicate()
    from lexicons import Database
    from tests.apps.durable_app import Note

    with Database([Note], data=str(tmp_path), durable=True) as db:
        assert [note.text for note in db.query(Note)] == ["first visit"]


async def call(ws: ClientConnection, signal_name: str, ref: int, **payload: object) -> dict:
    await ws.send(json.dumps({signal_name: payload, "ref": ref}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("ref") == ref:
            return message  # type: ignore[no-any-return]


async def test_a_full_disk_fails_only_the_writes_and_recovers(
    process: type[Process], small_disk: SmallDisk
) -> None:
    """The write that cannot be stored gets an error; readers and the writer stay."""
    data = small_disk.path / "data"
    server, url = start(process, data)
    try:
        async with connect(url) as reader, connect(url) as writer:
            assert "write" in await call(writer, "write", 1, n=0, text="kept")
            small_disk.fill()
            failed = await call(writer, "write", 2, n=1, text="x" * 200_000)
            assert failed["Errors"][0]["signal"] == "write", failed
            assert (await call(reader, "count", 3))["count"] == 1  # reads go on
            assert (await call(writer, "count", 4))["count"] == 1  # nothing half-kept
            small_disk.free()
            assert "write" in await call(writer, "write", 5, n=2, text="after")
            assert (await call(reader, "count", 6))["count"] == 2
            server.popen.send_signal(signal.SIGKILL)
    finally:
        server.popen.kill()
        server.popen.communicate()
    from lexicons import Database
    from tests.apps.durable_app import Note

    with Database([Note], data=str(data), durable=True) as db:
        assert [note.text for note in db.query(Note)] == ["kept", "after"]
