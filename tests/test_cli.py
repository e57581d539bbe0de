"""The command line in real subprocesses: run, stop on signals, bad flags, shell, migrate."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Process
from websockets.asyncio.client import connect

from lexicons.client import Client

CHAT = ROOT / "examples" / "chat" / "app.py"
LIFECYCLE = Path(__file__).parent / "apps" / "lifecycle_app.py"

pytestmark = pytest.mark.slow


def chatter(url: str, name: str) -> Client:
    """A client of the chat example, registering ``name`` through the Register header."""
    login = json.dumps({"name": name, "password": "correct horse"})
    return Client(url, headers={"Register": login}, reconnect=None)


async def said(client: Client) -> str:
    """The text of the next chat message the client receives."""
    async with asyncio.timeout(10):
        async for message in client:
            if "say" in message:
                return str(message["say"]["text"])
    raise AssertionError("the connection ended first")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_run_serves_and_stops_cleanly(
    process: type[Process], signum: int, tmp_path: Path
) -> None:
    server = process(
        sys.executable, CHAT, "run", "--host", "127.0.0.1", "--port", "0", "--data", tmp_path
    )
    url = server.url()
    async with chatter(url, "alice") as alice, chatter(url, "bob") as bob:
        for client in (alice, bob):
            await client.call("join", room="lobby")
        await alice.send("say", room="lobby", text="hi")
        assert [await said(alice), await said(bob)] == ["hi", "hi"]
    code, _, err = server.stop(signum)
    assert code == 0, err
    assert "stopped" in err


@pytest.mark.parametrize("debug", ["--no-debug", "--debug"])
async def test_serving_and_stopped_are_said_once(process: type[Process], debug: str) -> None:
    server = process(sys.executable, LIFECYCLE, "run", "--host", "127.0.0.1", "--port", "0", debug)
    server.url()
    code, _, err = server.stop(signal.SIGTERM)
    lines = err.splitlines()
    assert code == 0, err
    assert len([line for line in lines if "serving on" in line]) == 1, lines
    assert len([line for line in lines if line.rstrip().endswith("stopped")]) == 1, lines


async def test_console_script_and_module_target(process: type[Process], tmp_path: Path) -> None:
    server = process(
        sys.executable, "-m", "lexicons", "run", CHAT, "--host", "127.0.0.1", "--port", "0",
        "--data", tmp_path,
    )  # fmt: skip
    async with chatter(server.url(), "alice") as alice:
        await alice.call("join", room="lobby")
        await alice.send("say", room="lobby", text="via lexicons run")
        assert await said(alice) == "via lexicons run"
    assert server.stop(signal.SIGTERM)[0] == 0


async def test_shutdown_on_sigterm_runs_every_step_once(process: type[Process]) -> None:
    server = process(sys.executable, LIFECYCLE, "run", "--host", "127.0.0.1", "--port", "0")
    url = server.url()
    ws = await connect(url)
    await ws.send(json.dumps({"hello": {}, "ref": 1}))
    assert json.loads(await ws.recv()) == {"hello": "hi", "ref": 1}
    code, out, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert out.splitlines() == [
        "on_start",
        "startup task",
        "on_connect",
        "on_disconnect",
        "shutdown task",
        "on_shutdown",
    ]


def test_failing_startup_task_exits_non_zero_without_listening() -> None:
    result = subprocess.run(
        [sys.executable, str(LIFECYCLE), "run", "--host", "127.0.0.1", "--port", "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "FAIL_STARTUP": "1"},
        timeout=20,
    )
    assert result.returncode == 1
    assert "startup task 'startup_task' failed" in result.stderr
    assert "database unreachable" in result.stderr
    assert "serving on" not in result.stderr  # it never half-starts
    # on_start finished, so on_shutdown closes what it opened; no shutdown task runs.
    assert result.stdout.splitlines() == ["on_start", "startup task", "on_shutdown"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "abc"], {}, "port: 'abc' from --port"),
        ([], {"LEXICONS_PORT": "abc"}, "port: 'abc' from LEXICONS_PORT"),
        ([], {"LEXICONS_PROTOCOL": "http"}, "protocol: 'http'"),
    ],
)
def test_bad_setting_exits_non_zero_naming_it(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(CHAT), "run", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=20,
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_port_in_use_fails_clearly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(CHAT), "run", "--host", "127.0.0.1", "--port", str(port)]
            + ["--data", str(tmp_path)],  # the chat opens its store before it listens
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 1
    assert "could not start" in result.stderr


def test_shell_has_sv_db_and_models(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(CHAT), "shell", "--data", str(tmp_path)],
        input="print('SHELL', type(sv).__name__, type(db).__name__)\n",
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert "SHELL Server Database" in result.stdout


def test_migrate_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(CHAT), "migrate", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr


def test_no_command_prints_help() -> None:
    result = subprocess.run(
        [sys.executable, str(CHAT)], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 2
    assert "run" in result.stdout and "shell" in result.stdout
