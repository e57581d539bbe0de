"""``python -m benchmarks.echo_count``: instructions a whole server process spends per echo.

Runs a benchmark target under ``valgrind --tool=cachegrind`` (event loop and real
sockets included, the kernel not), answers ``--echoes`` echoes from ten clients, stops
it, and does the same with ``--baseline`` echoes; the difference divided by the
difference in echoes is the cost of one echo, start-up cancelled out. Instructions do
not depend on what else the machine runs, so small differences (what metrics cost) show::

    python -m benchmarks.echo_count lexicons lexicons-metrics      # about 15 minutes
    python -m benchmarks.echo_count lexicons --echoes 6000 --baseline 1000
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

from lexicons.client import open_connection

from .targets import TOKEN

ROOT = Path(__file__).resolve().parent.parent
_CLIENTS = 10


def instructions(target: str, echoes: int) -> int:
    """Instructions the ``target`` process spent in all, answering ``echoes`` echoes."""
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
    command += ["--cachegrind-out-file=/dev/null", sys.executable, "-m", "benchmarks.targets"]
    server = subprocess.Popen(
        [*command, target, "--loop", "uvloop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()  # READY <port>
        if not ready.startswith("READY"):
            raise RuntimeError(f"{target} did not start: {server.stderr.read()[-2000:]}")
        asyncio.run(_echo(int(ready.split()[1]), echoes))
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=600)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    found = re.search(r"I\s+refs:\s+([\d,]+)", err)
    if found is None:
        raise RuntimeError(f"no instruction count from cachegrind: {err[-2000:]}")
    return int(found.group(1).replace(",", ""))


async def _echo(port: int, echoes: int) -> None:
    url = f"ws://127.0.0.1:{port}/"
    clients = [await open_connection(url, headers={"Token": TOKEN}) for _ in range(_CLIENTS)]

    async def loop(ws: object) -> None:
        for _ in range(echoes // _CLIENTS):
            await ws.send('{"Echo":{"text":"hello, world"}}')  # type: ignore[attr-defined]
            await ws.recv()  # type: ignore[attr-defined]

    await asyncio.gather(*(loop(ws) for ws in clients))
    for ws in clients:
        await ws.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.echo_count")
    parser.add_argument("targets", nargs="+")
    parser.add_argument("--echoes", type=int, default=6000)
    parser.add_argument("--baseline", type=int, default=1000)
    args = parser.parse_args(argv)
    for target in args.targets:
        small = instructions(target, args.baseline)
        large = instructions(target, args.echoes)
        per_echo = (large - small) / (args.echoes - args.baseline)
        print(f"{target:20} {per_echo:10,.0f} instructions per echo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
