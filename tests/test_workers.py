"""``run --workers N``: several server processes on one port, supervised by the parent."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from conftest import Process, subscribed
from websockets.asyncio.client import ClientConnection, connect

from lexicons import ConfigurationError
from lexicons.settings import Settings
from lexicons.workers import check

CLUSTER_APP = Path(__file__).parent / "apps" / "cluster_app.py"
LISTENING = re.compile(r"worker (\d+): listening \(pid (\d+)\)")

pytestmark = pytest.mark.slow


def start(
    process: type[Process], redis_url: str, namespace: str, *, console: bool = False
) -> tuple[Process, str]:
    """The cluster app with two workers; returns it and its URL once both listen.

    ``console``: through ``lexicons run app.py`` rather than ``python app.py run``.
    """
    command = ["-m", "lexicons", "run", CLUSTER_APP] if console else [CLUSTER_APP, "run"]
    server = process(
        sys.executable,
        *command,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--workers",
        "2",
        "--broker",
        redis_url,
        env={"LEXICONS_BROKER_NAMESPACE": namespace},
    )
    # Each worker says where it serves; the supervisor says it once all of them listen.
    return server, server.wait_for(r"serving on (ws://\S+) with 2 workers").group(1)


def workers(server: Process) -> dict[int, str]:
    """Pid -> worker index of every worker that said it listens, from stderr read so far."""
    found = (LISTENING.search(line) for line in server.stderr)
    return {int(m.group(2)): m.group(1) for m in found if m}


async def call(ws: ClientConnection, name: str, **payload: Any) -> Any:
    await ws.send(json.dumps({name: payload, "ref": 1}))
    return json.loads(await ws.recv())[name]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_workers_share_the_port_and_the_channels(
    process: type[Process], redis_url: str, namespace: str, redis: Any, signum: int
) -> None:
    server, url = start(process, redis_url, namespace)
    pids = set(workers(server))
    assert len(pids) == 2
    async with AsyncExitStack() as stack:
        # The kernel spreads new connections over the workers: connect until both have some.
        clients: dict[int, list[ClientConnection]] = {}
        for _ in range(100):
            ws = await stack.enter_async_context(connect(url))
            clients.setdefault(await call(ws, "join", channels=["Public"]), []).append(ws)
            if len(clients) == 2:
                break
        assert set(clients) == pids
        await subscribed(redis, f"{namespace}:Public", 2)
        everyone = [ws for group in clients.values() for ws in group]
        say = {"publisher": "x", "seq": 1, "channels": ["Public"]}
        await everyone[0].send(json.dumps({"say": say}))
        for ws in everyone:
            assert json.loads(await ws.recv()) == {"say": {"publisher": "x", "seq": 1}}
    code, out, err = server.stop(signum)
    assert code == 0, err
    # Every worker ran its own shutdown sequence.
    assert sorted(out.splitlines()) == sorted(f"on_shutdown {pid}" for pid in pids)
    assert "stopped 2 workers" in err


async def test_a_worker_that_dies_is_restarted(
    process: type[Process], redis_url: str, namespace: str
) -> None:
    server, url = start(process, redis_url, namespace)
    victim, index = min(workers(server).items())
    os.kill(victim, signal.SIGKILL)
    server.wait_for(rf"worker {index} \(pid {victim}\) exited with signal SIGKILL; restarting")
    replacement = int(server.wait_for(rf"worker {index}: listening \(pid (\d+)\)").group(1))
    assert replacement != victim
    async with AsyncExitStack() as stack:
        seen = set()
        for _ in range(100):
            ws = await stack.enter_async_context(connect(url))
            seen.add(await call(ws, "whoami"))
            if replacement in seen:
                break
        assert replacement in seen and victim not in seen
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err


async def test_workers_stop_when_the_supervisor_is_killed(
    process: type[Process], redis_url: str, namespace: str
) -> None:
    server, _ = start(process, redis_url, namespace, console=True)
    server.popen.kill()  # SIGKILL: the supervisor cannot tell anyone
    _, err = server.popen.communicate(timeout=30)  # EOF once every worker has exited
    assert err.count("the supervisor is gone; shutting down") == 2
    assert err.count("stopped") == 2


def refused(*flags: str) -> str:
    """Run the cluster app with ``flags`` (no LEXICONS_* variables); it must exit 1.

    Returns its stderr.
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEXICONS_")}
    result = subprocess.run(
        [sys.executable, str(CLUSTER_APP), "run", *flags],
        capture_output=True,
        text=True,
        timeout=30,
        env=environ,
    )
    assert result.returncode == 1, result.stderr
    return result.stderr


def test_workers_without_a_broker_refuse_to_start() -> None:
    error = refused("--port", "0", "--workers", "2")
    assert "workers: 2 workers need a broker" in error
    assert "--broker redis://" in error


def test_a_worker_that_cannot_start_stops_the_start() -> None:
    pytest.importorskip("redis", reason="the Redis client is missing: pip install -e '.[test]'")
    error = refused("--port", "0", "--workers", "2", "--broker", "redis://127.0.0.1:1/0")
    assert re.search(r"worker \d: could not start: broker: cannot use Redis", error)
    assert "before it listened" in error


def test_bad_workers_value_is_refused() -> None:
    assert "workers: 'none' from --workers is not a whole number" in refused("--workers", "none")


def test_workers_refuse_a_durable_store() -> None:
    settings = Settings(workers=2, broker="redis://127.0.0.1:6379/0", durable=True)
    with pytest.raises(ConfigurationError, match="workers: a durable store belongs to one"):
        check(settings)
