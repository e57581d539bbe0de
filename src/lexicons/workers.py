"""``run --workers N``: N server processes on one port, supervised by the parent.

::

    lexicons run app.py --workers 4 --broker redis://127.0.0.1:6379/0

The parent loads the application, checks the settings and picks the port (a free one
when ``--port 0``), then forks the workers. Each worker runs the whole start and stop
sequence on its own event loop and listens with ``SO_REUSEPORT``, so the kernel spreads
new connections over them; they share channels through the broker. The parent serves
nothing: it restarts a worker that dies, and on SIGINT or SIGTERM it asks every worker to
stop (SIGTERM), waits for their shutdown sequences and exits 0; a second signal kills
them. A worker whose parent disappears shuts itself down.

Workers need Linux (or another system whose ``SO_REUSEPORT`` balances connections) and
``fork``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .brokers import make_broker
from .errors import ConfigurationError
from .metrics import require_client

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["Worker", "check", "supervise"]

logger = logging.getLogger("lexicons.workers")

#: Signals the parent acts on.
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)
#: A worker that ran at least this long is restarted at once; sooner, after a backoff.
_HEALTHY_AFTER = 10.0
_BACKOFF_CAP = 30.0


class Worker:
    """The supervisor, as seen from inside a process it runs: a ``--workers`` worker,
    or the server ``--reload`` restarts.

    ``index`` runs from 0 to N-1 for workers (also in the ``LEXICONS_WORKER`` environment
    variable); it is ``None`` for the reloaded server, whose supervisor does not wait for
    it to listen (``ready_fd`` ``None``). Either way the process leaves a second signal to
    its supervisor, and stops when the supervisor's end of the lifeline closes.
    ``metrics_dir`` is where workers add up their metrics (``metrics=True``), else None.
    """

    def __init__(
        self,
        index: int | None,
        ready_fd: int | None,
        lifeline_fd: int,
        *,
        metrics_dir: str | None = None,
    ) -> None:
        self.index = index
        self._ready_fd = ready_fd
        self._lifeline_fd = lifeline_fd
        self.metrics_dir = metrics_dir

    @property
    def name(self) -> str:
        """How log lines name this process."""
        return "server" if self.index is None else f"worker {self.index}"

    def ready(self, stop: Callable[[], None]) -> None:
        """Tell the supervisor this process listens; call ``stop`` if the supervisor dies."""
        try:
            if self._ready_fd is not None:
                os.write(self._ready_fd, b"r")
        except OSError:  # the supervisor is already gone
            stop()
            return
        loop = asyncio.get_running_loop()

        def supervisor_gone() -> None:
            # The parent never writes on the lifeline: readable means it was closed.
            loop.remove_reader(self._lifeline_fd)
            logger.warning("%s: the supervisor is gone; shutting down", self.name)
            stop()

        loop.add_reader(self._lifeline_fd, supervisor_gone)


#: ``serve(settings, worker)``: run one server in this process until it is told to stop;
#: return its exit code. It calls ``worker.ready(stop)`` once it listens.
Serve = Callable[["Settings", Worker], int]


@dataclass
class _Slot:
    """One worker position: the process filling it now, and its restart history."""

    index: int
    pid: int = 0
    ready: bool = False
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    ready_fd: int = -1
    lifeline_fd: int = -1
    codes: list[int] = field(default_factory=list)


def supervise(serve: Serve, settings: Settings) -> int:
    """Run ``settings.workers`` copies of ``serve`` on one port until a signal stops them."""
    return _Supervisor(serve, settings).run()


def check(settings: Settings) -> None:
    """Refuse settings that cannot work with several workers; the message says why."""
    count = settings.workers
    if settings.broker is None:
        raise ConfigurationError(
            f"workers: {count} workers need a broker to share channels, or a broadcast "
            "would reach the subscribers of one worker only; set one with "
            "--broker redis://127.0.0.1:6379/0, LEXICONS_BROKER or Server(broker=...) "
            "(pip install 'lexicons[redis]'), or run a single process"
        )
    if not hasattr(os, "fork") or not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigurationError(
            f"workers: this system ({sys.platform}) cannot share a port between "
            "processes; run one process per port behind a load balancer instead"
        )
    if settings.durable:
        raise ConfigurationError(
            "workers: a durable store belongs to one process; with several workers keep "
            "shared data in a database server, or run a single process"
        )
    make_broker(settings)  # a bad URL or a missing client fails here, before forking
    if settings.metrics:
        require_client()


class _Supervisor:
    def __init__(self, serve: Serve, settings: Settings) -> None:
        self.serve = serve
        self.settings = settings
        self.slots = [_Slot(index) for index in range(settings.workers)]
        self.selector: selectors.BaseSelector = selectors.DefaultSelector()
        #: Every descriptor the parent holds; a new worker closes them all but its own.
        self.fds: set[int] = set()
        self.stopping = False
        self.deadline: float | None = None
        self.all_ready = False
        self.failed = False
        self.url = ""
        #: Where the workers publish their metrics, so that one scrape adds them all up.
        self.metrics_dir: str | None = None

    # the parent

    def run(self) -> int:
        try:
            check(self.settings)
            reserved, port = _reserve_port(self.settings)
        except BaseException:
            self.selector.close()
            raise
        self.settings = self.settings.replace(port=port, reuse_port=True)
        host = self.settings.host if ":" not in self.settings.host else f"[{self.settings.host}]"
        self.url = f"{self.settings.protocol}://{host}:{port}/"
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
            self.fds.add(fd)
        if self.settings.metrics:
            self.metrics_dir = tempfile.mkdtemp(prefix="lexicons-metrics-")
        previous = {signum: signal.signal(signum, _ignore) for signum in _SIGNALS}
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        try:
            for slot in self.slots:
                self._start(slot)
            self._loop(wake_r)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.selector.close()
            for fd in self.fds:
                os.close(fd)
            reserved.close()
            if self.metrics_dir is not None:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        codes = [code for slot in self.slots for code in slot.codes[-1:]]
        if self.failed or any(codes):
            return 1
        logger.info("stopped %d workers", len(self.slots))
        return 0

    def _loop(self, wake_r: int) -> None:
        while any(slot.pid for slot in self.slots) or not self.stopping:
            timeout = self._next_timer()
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    for signum in os.read(wake_r, 512):
                        self._signal(signum)
                else:
                    self._ready_event(key.data)
            self._timers()

    def _signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self._reap()
        elif not self.stopping:
            logger.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.slots))
            self._stop_all()
        else:
            logger.warning("second signal: killing the workers")
            self._kill_all()

    def _stop_all(self) -> None:
        self.stopping = True
        self.deadline = time.monotonic() + self.settings.stop_within + 10
        for slot in self.slots:
            slot.restart_at = None
            if slot.pid:
                _kill(slot.pid, signal.SIGTERM)

    def _kill_all(self) -> None:
        self.failed = True
        for slot in self.slots:
            if slot.pid:
                _kill(slot.pid, signal.SIGKILL)

    def _next_timer(self) -> float | None:
        times = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        if self.deadline is not None:
            times.append(self.deadline)
        return max(0.0, min(times) - time.monotonic()) if times else None

    def _timers(self) -> None:
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            logger.error("workers did not stop in time: killing them")
            self._kill_all()
        for slot in self.slots:
            if slot.restart_at is not None and now >= slot.restart_at and not self.stopping:
                slot.restart_at = None
                self._start(slot)

    def _ready_event(self, slot: _Slot) -> None:
        try:
            data = os.read(slot.ready_fd, 16)
        except OSError:
            data = b""
        if not data:  # the worker closed its end: it is exiting; SIGCHLD follows
            self._forget_fd(slot.ready_fd, registered=True)
            slot.ready_fd = -1
            return
        slot.ready = True
        if not self.all_ready and all(s.ready for s in self.slots):
            self.all_ready = True
            logger.info("serving on %s with %d workers", self.url, len(self.slots))

    def _reap(self) -> None:
        for slot in self.slots:
            if not slot.pid:
                continue
            try:
                pid, status = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = slot.pid, 0
            if pid == 0:
                continue
            code = os.waitstatus_to_exitcode(status)
            slot.codes.append(code)
            self._exited(slot, code)

    def _exited(self, slot: _Slot, code: int) -> None:
        pid, slot.pid = slot.pid, 0
        was_ready, slot.ready = slot.ready, False
        if slot.ready_fd >= 0:
            self._forget_fd(slot.ready_fd, registered=True)
            slot.ready_fd = -1
        self._forget_fd(slot.lifeline_fd, registered=False)
        slot.lifeline_fd = -1
        if self.stopping:
            return
        how = f"code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        if not self.all_ready:
            logger.error(
                "worker %d (pid %d) exited with %s before it listened", slot.index, pid, how
            )
            self.failed = True
            self._stop_all()
            return
        lived = time.monotonic() - slot.started
        slot.failures = 0 if (was_ready and lived >= _HEALTHY_AFTER) else slot.failures + 1
        delay = 0.0 if slot.failures <= 1 else min(2.0 ** (slot.failures - 2), _BACKOFF_CAP)
        logger.warning(
            "worker %d (pid %d) exited with %s; restarting in %g s", slot.index, pid, how, delay
        )
        slot.restart_at = time.monotonic() + delay

    def _forget_fd(self, fd: int, *, registered: bool) -> None:
        if fd in self.fds:
            if registered:
                self.selector.unregister(fd)
            self.fds.discard(fd)
            os.close(fd)

    def _start(self, slot: _Slot) -> None:
        ready_r, ready_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (covered by subprocess tests)
            os.close(ready_r)
            os.close(lifeline_w)
            self._child(slot.index, ready_w, lifeline_r)
        os.close(ready_w)
        os.close(lifeline_r)
        slot.pid, slot.ready, slot.started = pid, False, time.monotonic()
        slot.ready_fd, slot.lifeline_fd = ready_r, lifeline_w
        self.fds.update((ready_r, lifeline_w))
        self.selector.register(ready_r, selectors.EVENT_READ, slot)

    # the child

    def _child(self, index: int, ready_fd: int, lifeline_fd: int) -> None:  # pragma: no cover
        """Become worker ``index``: drop the parent's signal set-up and descriptors, serve."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.selector.close()
            for fd in self.fds:
                os.close(fd)
            os.environ["LEXICONS_WORKER"] = str(index)
            worker = Worker(index, ready_fd, lifeline_fd, metrics_dir=self.metrics_dir)
            code = self.serve(self.settings, worker)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _ignore(signum: int, frame: object) -> None:
    """The parent's handler: the signal number arrives through the wakeup pipe instead."""


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _reserve_port(settings: Settings) -> tuple[socket.socket, int]:
    """Bind (without listening) the port the workers share; pick a free one for port 0.

    The socket stays open while the supervisor runs, so the port stays reserved even
    when every worker is being restarted. It never accepts: only listening sockets take
    connections.
    """
    host = settings.host or None
    infos = socket.getaddrinfo(
        host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"port: cannot use {settings.port} on {settings.host}: {exc}"
        ) from None
    return sock, sock.getsockname()[1]
