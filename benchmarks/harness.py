"""Process and measurement helpers that any benchmark here can reuse.

A benchmark starts each server as its own process pinned to one core, drives it from
another core, and reads what the *server* spent from the kernel's accounting of that
process, so the figure does not depend on how fast the load generator is::

    from benchmarks.harness import Window, ServerProcess, cores, pin

    server_cpu, generator_cpu = cores()
    pin(os.getpid(), generator_cpu)                      # this process: the generator
    with ServerProcess([sys.executable, "app.py"], cpu=server_cpu) as server:
        ...                                              # connect to server.port, warm up
        with Window(server.pid, server_cpu) as window:   # CPU and wall clock from here
            ...                                          # the measured work, drained
        print(window.server_cpu / messages, window.bottleneck)

A server announces itself by printing ``READY <port>`` on its standard output once it
listens (:func:`announce`). ``summarize`` gives the median and the spread of repeated runs.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "RESULTS",
    "ServerProcess",
    "Window",
    "announce",
    "cores",
    "core_seconds",
    "cpu_seconds",
    "machine",
    "pin",
    "raise_fd_limit",
    "rss_bytes",
    "save_results",
    "summarize",
    "versions",
]

#: Where benchmarks write their raw results (one JSON file each).
RESULTS = Path(__file__).parent / "results"

#: A process busier than this share of the wall clock is what set the pace.
SATURATED = 0.9

_TICKS = os.sysconf("SC_CLK_TCK")


# --- cores and limits ------------------------------------------------------------------------


def cores() -> tuple[int, int]:
    """``(server_cpu, generator_cpu)``: two different cores this process may use.

    On a single-core machine both are the same core, and the generator competes with the
    server: the CPU-per-message figures stay valid, throughput does not.
    """
    available = sorted(os.sched_getaffinity(0))
    return available[0], available[-1]


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of process ``pid`` to core ``cpu`` (threads started later inherit it)."""
    try:
        tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        tids = [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {cpu})
        except ProcessLookupError:  # a thread that just ended
            pass


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; returns the new soft limit.

    Thousands of connections need thousands of descriptors on both ends.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- reading a process's accounting ----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, all threads included.

    Reads each thread's ``schedstat`` (nanoseconds) when the kernel provides it, else
    ``/proc/<pid>/stat`` (clock ticks, usually 10 ms: keep windows long with that).
    """
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
                pass
        return total / 1e9
    except (FileNotFoundError, IndexError, ValueError):
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The command name may hold spaces; the fields after it are fixed.
            fields = f.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS


def core_seconds(cpu: int) -> tuple[float, float]:
    """``(busy, total)`` seconds core ``cpu`` has counted since boot (``/proc/stat``).

    Busy time on the server's core that the server did not use is someone else's: the
    sign of a shared machine, which :class:`Window` reports.
    """
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"cpu%d " % cpu):
                ticks = [int(x) for x in line.split()[1:9]]
                idle = ticks[3] + ticks[4]
                return (sum(ticks) - idle) / _TICKS, sum(ticks) / _TICKS
    raise RuntimeError(f"no core {cpu} in /proc/stat")


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid``, in bytes (``VmRSS``)."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Window:
    """A measured stretch of a run: the server's and this process's CPU, and wall time.

    ``bottleneck`` says which side set the pace: ``"server"`` when the server was busy
    for at least 90% of the wall clock, ``"generator"`` when this process was and the
    server was not, ``"neither"`` when both waited (round trips or a window bound it).
    With ``cpu`` (the server's core), ``foreign`` is the share of that core other
    processes used meanwhile, and ``foreign_generator`` the same on this process's core
    when it is pinned to one: on a shared machine either side may wait for its core,
    and the bottleneck is then ``"other processes"``.
    """

    def __init__(self, pid: int, cpu: int | None = None) -> None:
        self.pid = pid
        self.cpu = cpu
        own = os.sched_getaffinity(0)
        self.generator_core = next(iter(own)) if len(own) == 1 else None
        self.server_cpu = 0.0
        self.generator_cpu = 0.0
        self.wall = 0.0
        self.foreign = 0.0
        self.foreign_generator = 0.0

    def __enter__(self) -> Window:
        self._cores0 = {
            c: core_seconds(c) for c in (self.cpu, self.generator_core) if c is not None
        }
        self._server0 = cpu_seconds(self.pid)
        self._generator0 = time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.server_cpu = cpu_seconds(self.pid) - self._server0
        self.generator_cpu = time.process_time() - self._generator0
        shared = self.generator_core == self.cpu  # a single-core machine
        if self.cpu is not None:
            ours = self.server_cpu + (self.generator_cpu if shared else 0.0)
            self.foreign = self._others(self.cpu, ours)
        if self.generator_core is not None:
            ours = self.generator_cpu + (self.server_cpu if shared else 0.0)
            self.foreign_generator = self._others(self.generator_core, ours)

    def _others(self, core: int, ours: float) -> float:
        """Share of ``core`` that processes other than ours used during the window."""
        busy0, total0 = self._cores0[core]
        busy, total = core_seconds(core)
        if total <= total0:
            return 0.0
        return max(0.0, (busy - busy0 - ours) / (total - total0))

    @property
    def bottleneck(self) -> str:
        if self.wall <= 0:
            return "neither"
        if self.server_cpu / self.wall >= SATURATED:
            return "server"
        if self.generator_cpu / self.wall >= SATURATED:
            return "generator"
        if max(self.foreign, self.foreign_generator) >= 1 - SATURATED:
            return "other processes"
        return "neither"

    def as_dict(self) -> dict[str, Any]:
        return {
            "server_cpu_s": self.server_cpu,
            "generator_cpu_s": self.generator_cpu,
            "wall_s": self.wall,
            "server_busy": self.server_cpu / self.wall if self.wall else 0.0,
            "generator_busy": self.generator_cpu / self.wall if self.wall else 0.0,
            "foreign_on_server_core": self.foreign,
            "foreign_on_generator_core": self.foreign_generator,
            "bottleneck": self.bottleneck,
        }


# --- server processes ------------------------------------------------------------------------


def announce(port: int) -> None:
    """What a server process prints once it listens, for :class:`ServerProcess` to read."""
    print(f"READY {port}", flush=True)


async def serve_on_uvicorn(app: Any, **options: Any) -> None:
    """Serve the ASGI application ``app`` with uvicorn on a free loopback port, announce
    the port once uvicorn has started, and serve until the process is stopped.

    ``options`` are uvicorn.Config's, beside the ones every target shares: no access
    log, warnings only, a backlog deep enough for the churn scenario.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=1024, **options)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    # uvicorn says it started only through this flag: poll it, failing as it fails.
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    announce(sock.getsockname()[1])
    await serving


class ServerProcess:
    """A server started as its own process, pinned to ``cpu``, stopped on exit.

    ``argv`` must run a program that calls :func:`announce` when it listens; ``port``
    is then the port it announced. Its standard error is kept for the error message if
    it dies before announcing.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cpu: int,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        ready_timeout: float = 30.0,
        grace: float = 5.0,
    ) -> None:
        self.argv = list(argv)
        #: How long :meth:`stop` waits after SIGTERM before SIGKILL.
        self.grace = grace
        self.cpu = cpu
        self.env = env
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not started"
        return self._process.pid

    def start(self) -> ServerProcess:
        cpu = self.cpu
        self._process = process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            # Pinned before it runs a line, so its start-up is not on the generator's core.
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        assert process.stdout is not None
        deadline = time.monotonic() + self.ready_timeout
        line = b""
        while not line.startswith(b"READY "):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.argv}: did not announce READY in time")
            line = process.stdout.readline()
            if not line:
                error = self._stderr()
                self.stop()
                raise RuntimeError(f"{self.argv} exited before READY:\n{error}")
        self.port = int(line.split()[1])
        pin(process.pid, cpu)  # threads it started while starting up
        return self

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _stderr(self) -> str:
        assert self._process is not None and self._process.stderr is not None
        try:
            return self._process.stderr.read().decode(errors="replace")[-4000:]
        except (OSError, ValueError):
            return ""

    def stop(self, timeout: float | None = None) -> None:
        """Stop the process: SIGTERM, then SIGKILL if it has not exited in ``timeout``.

        ``timeout`` defaults to ``grace``; ``0`` kills at once.
        """
        process = self._process
        if process is None or process.poll() is not None:
            return
        timeout = self.grace if timeout is None else timeout
        process.send_signal(signal.SIGTERM if timeout > 0 else signal.SIGKILL)
        try:
            process.wait(timeout or None)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- statistics and records ------------------------------------------------------------------


def summarize(values: Iterable[float]) -> dict[str, float]:
    """Median, minimum, maximum and spread ((max - min) / median) of repeated runs."""
    data = sorted(values)
    if not data:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "spread": 0.0}
    median = statistics.median(data)
    spread = (data[-1] - data[0]) / median if median else 0.0
    return {"median": median, "min": data[0], "max": data[-1], "spread": spread}


def versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of ``packages`` (``None`` when one is not installed)."""
    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, kernel, Python."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
    }


def save_results(name: str, payload: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``payload`` as ``benchmarks/results/<name>.json`` (or to ``path``)."""
    target = path if path is not None else RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    return target
