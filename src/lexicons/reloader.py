"""``run --reload``: restart the server when a Python file of the app changes.

::

    pip install 'lexicons[reload]'
    python app.py run --reload

For development. The process started by the command serves nothing: it watches the
app's directory with ``watchfiles`` (the library uvicorn uses) and runs the server in a
child process, started with the same command line. When a ``.py`` file changes it stops
the child with SIGTERM, so the whole shutdown sequence runs (connections close with 1001,
``on_disconnect``, shutdown tasks and ``on_shutdown`` run, the store is flushed), and
starts a new child, which imports the changed code. SIGINT or SIGTERM stops both; a
second signal kills the child. A child whose supervisor dies shuts itself down.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .errors import ConfigurationError
from .settings import Settings
from .workers import Worker

__all__ = ["directories", "relaunch_command", "run_reloading", "supervised"]

logger = logging.getLogger("lexicons.reload")

#: Set in the child's environment: the descriptor of its end of the lifeline.
_LIFELINE = "LEXICONS_RELOAD_LIFELINE"
#: How often the watcher looks up from waiting, to notice a child that exited.
_POLL_MS = 1000


def supervised() -> Worker | None:
    """In a child the reloader started: its supervisor (consumed, so the child's own
    subprocesses do not inherit it); elsewhere ``None``."""
    fd = os.environ.pop(_LIFELINE, None)
    return None if fd is None else Worker(None, None, int(fd))


def relaunch_command() -> list[str]:
    """The command line that started this process, to start the child the same way."""
    return [sys.executable, *sys.orig_argv[1:]]


def directories(source: Path | None) -> list[Path]:
    """What to watch for ``source``, the app's module: its directory, or the directory
    holding its top-level package; the working directory when the file is unknown."""
    if source is None:
        return [Path.cwd()]
    folder = source.resolve().parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        folder = folder.parent
    return [folder]


def run_reloading(argv: Sequence[str], watched: Sequence[Path], settings: Settings) -> int:
    """Run ``argv`` as the server, restarting it when a ``.py`` file under ``watched``
    changes, until SIGINT or SIGTERM."""
    try:
        import watchfiles
    except ImportError:
        raise ConfigurationError(
            "reload: watching files needs watchfiles: pip install 'lexicons[reload]'"
        ) from None
    stop = threading.Event()
    child = _Child(argv, settings.stop_within)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            logger.info("%s: stopping", signal.Signals(signum).name)
            stop.set()
        else:
            logger.warning("second signal: killing the server")
            child.kill()

    previous = _handle_signals(on_signal)
    shown = ", ".join(str(folder) for folder in watched)
    logger.info("watching %s for changes to .py files", shown)
    try:
        child.start()
        for changes in watchfiles.watch(
            *watched,
            watch_filter=watchfiles.PythonFilter(),
            stop_event=stop,
            rust_timeout=_POLL_MS,
            yield_on_timeout=True,
            raise_interrupt=False,
        ):
            if not changes:
                child.notice_exit()
                continue
            names = sorted({Path(path).name for _, path in changes})
            logger.info("%s changed: restarting the server", ", ".join(names))
            child.stop()
            child.start()
    finally:
        child.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _handle_signals(handler: Callable[[int, FrameType | None], Any]) -> dict[int, Any]:
    return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}


class _Child:
    """The server process of the moment, with the lifeline that tells it we are alive."""

    def __init__(self, argv: Sequence[str], stop_within: float) -> None:
        self.argv = list(argv)
        self.grace = stop_within + 5
        self.popen: subprocess.Popen[bytes] | None = None
        self.lifeline = -1
        self.exit_noticed = False

    def start(self) -> None:
        lifeline_r, self.lifeline = os.pipe()
        try:
            self.popen = subprocess.Popen(
                self.argv, env={**os.environ, _LIFELINE: str(lifeline_r)}, pass_fds=(lifeline_r,)
            )
        finally:
            os.close(lifeline_r)
        self.exit_noticed = False

    def notice_exit(self) -> None:
        """Say once that the server exited on its own (an error in the code, most often)."""
        if self.popen is None or self.exit_noticed:
            return
        code = self.popen.poll()
        if code is not None:
            self.exit_noticed = True
            logger.warning("the server exited with code %d; it restarts on the next change", code)

    def stop(self) -> None:
        """SIGTERM, then wait for the shutdown sequence; SIGKILL when it takes too long."""
        popen = self.popen
        if popen is None:
            return
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(self.grace)
            except subprocess.TimeoutExpired:
                logger.error("the server did not stop within %g s: killing it", self.grace)
                popen.kill()
                popen.wait()
        self.popen = None
        os.close(self.lifeline)
        self.lifeline = -1

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
