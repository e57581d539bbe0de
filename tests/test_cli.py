"""The command line in real subprocesses: run, stop on signals, bad flags, shell, migrate."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

ROOT = Path(__file__).parent.parent
CHAT = ROOT / "examples" / "chat" / "app.py"
LIFECYCLE = Path(__file__).parent / "apps" / "lifecycle_app.py"
SERVING = re.compile(r"serving on (ws://\S+)")

pytestmark = pytest.mark.slow


class Process:
    """A server started as a subprocess; stopped by its own PID at the end of the test."""

    def __init__(self, *args: str | Path, env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        self.stderr: list[str] = []

    def url(self) -> str:
        """Read stderr until the 'serving on' line; return its URL."""
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr.append(line)
            found = SERVING.search(line)
            if found:
                return found.group(1)
        raise AssertionError("server exited before listening:\n" + "".join(self.stderr))

    def stop(self, signum: int) -> tuple[int, str, str]:
        self.popen.send_signal(signum)
        out, err = self.popen.communicate(timeout=20)
        return self.popen.returncode, out, "".join(self.stderr) + err


@pytest.fixture
def process() -> Iterator[type[Process]]:
    started: list[Process] = []

    class Tracked(Process):
        def __init__(self, *args: str | Path, **kwargs: dict[str, str] | None) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_run_serves_and_stops_cleanly(process: type[Process], signum: int) -> None:
    server = process(sys.executable, CHAT, "run", "--host", "127.0.0.1", "--port", "0")
    url = server.url()
    async with connect(url) as alice, connect(url) as bob:
        await alice.send(json.dumps({"shout": {"text": "hi"}}))
        for ws in (alice, bob):
            message = json.loads(await ws.recv())
            assert message["shout"]["text"] == "hi"
    code, _, err = server.stop(signum)
    assert code == 0, err
    assert "stopped" in err


async def test_console_script_and_module_target(process: type[Process]) -> None:
    server = process(
        sys.executable, "-m", "lexicons", "run", CHAT, "--host", "127.0.0.1", "--port", "0"
    )
    url = server.url()
    async with connect(url) as ws:
        await ws.send(json.dumps({"shout": {"text": "via lexicons run"}}))
        assert json.loads(await ws.recv())["shout"]["text"] == "via lexicons run"
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
            [sys.executable, str(CHAT), "run", "--host", "127.0.0.1", "--port", str(port)],
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
