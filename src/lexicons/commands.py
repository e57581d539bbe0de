"""The commands of one application (``run``, ``shell``, ``migrate``, ``schema``, ``types``)
and their flags.

``python app.py ...`` (:meth:`Server.run`) and the ``lexicons`` console script
(:mod:`lexicons.cli`, which first finds the app) both end here. Settings come from the
code (``Server(...)``, then ``app.run(...)``), then the ``LEXICONS_*`` environment
variables, then the flags: each overrides the one before. Every setting that has an
environment variable has a flag of the same name (``LEXICONS_LOG_LEVEL``, ``--log-level``).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import errno
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

from ._version import __version__
from .errors import ConfigurationError, LexiconsError
from .layout import Statement, check_run_is_last
from .lifecycle import Runnable, Running, run_hooks
from .logs import configure_logging
from .reloader import directories, relaunch_command, run_reloading, supervised
from .schema import asyncapi_document, typescript_declarations
from .settings import ENVIRONMENT, Settings, parse_bool
from .workers import Worker, supervise

__all__ = ["FLAGS", "App", "build_parser", "dispatch", "main_for", "settings_for"]


class App(Runnable, Protocol):
    """What the command line needs of an application (:class:`lexicons.Server` is one)."""

    @property
    def settings(self) -> Settings: ...

    def run(self, argv: Sequence[str] | None = None, /, **settings: Any) -> None: ...


logger = logging.getLogger("lexicons")

#: The settings each command takes as flags; ``run`` takes them all.
_EVERY_COMMAND = ("data", "durable", "debug", "log_level", "log_format", "log_config")
#: The settings of the commands that describe the app, rather than start it.
_DESCRIBING = {"schema": ("host", "port", "protocol", "log_level"), "types": ("log_level",)}

#: The help of each flag, by setting, in the order ``--help`` lists them.
FLAGS: dict[str, str] = {
    "host": "interface to listen on (0.0.0.0: every IPv4 interface)",
    "port": "port to listen on; 0 picks a free one",
    "reload": "restart when a .py file of the app changes; for development "
    "(pip install 'lexicons[reload]')",
    "debug": "log every connection, signal and broadcast",
    "expose_errors": "send exception text and refusal reasons to clients; for development "
    "only, they can carry secrets",
    "log_level": "critical, error, warning, info or debug (default: debug with --debug, "
    "else info)",
    "log_format": "text or json (one JSON object per line)",
    "log_config": "a logging dict config file, JSON (or YAML with PyYAML); replaces --log-format",
    "data": "data directory",
    "durable": "write every change to SQLite in the data directory",
    "static": "directory served over plain HTTP on the same port",
    "origins": "browser origins allowed to connect, comma-separated "
    "(https://app.example.com); default: pages from this server only",
    "trust": "addresses and networks allowed to connect, comma-separated",
    "proxies": "reverse proxies whose X-Forwarded-For is believed, comma-separated",
    "protocol": "ws, or wss for TLS",
    "certfile": "TLS certificate file (PEM); implies --protocol wss",
    "keyfile": "TLS private key file, unless the certificate file holds the key",
    "broker": "broker URL shared by processes (redis://127.0.0.1:6379/0)",
    "broker_namespace": "prefix of the broker's channel and key names",
    "broker_heartbeat": "seconds between a process's heartbeats on the Redis broker",
    "broker_queue": "bytes of broadcasts that may wait for Redis before they are dropped",
    "workers": "server processes sharing the port; more than 1 needs --broker",
    "max_size": "largest incoming message, in bytes",
    "max_connections": "most connections at once",
    "max_connections_per_address": "most connections one client address may hold open",
    "connection_rate": "how fast one client address may connect (30/min)",
    "metrics": "serve Prometheus metrics at GET /metrics on the same port "
    "(pip install 'lexicons[metrics]')",
    "compression": "negotiate permessage-deflate with clients that offer it",
}

_VARIABLE = {name: variable for variable, (name, _) in ENVIRONMENT.items()}
_PARSE = {name: parse for name, parse in ENVIRONMENT.values()}


def main_for(
    app: App,
    argv: Sequence[str] | None = None,
    code: Mapping[str, Any] | None = None,
    caller: Statement | None = None,
) -> int:
    """``python app.py [run|shell|migrate] [flags]``: what :meth:`Server.run` runs.

    Without a command the app serves, as an editor's Run button expects; ``code`` holds
    the settings given to ``app.run(...)``; ``caller`` is the module statement that
    called it, which must be the module's last.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "run")
    prog = Path(sys.argv[0]).name if caller is None else Path(caller[0]).name
    parsed = build_parser(prog, target=False).parse_args(args)
    if caller is not None:
        try:
            check_run_is_last(caller)
        except LexiconsError as exc:
            return _error(exc)
    return dispatch(app, parsed, code=code, source=None if caller is None else Path(caller[0]))


def build_parser(prog: str, *, target: bool) -> argparse.ArgumentParser:
    """The parser of ``python app.py`` (``target=False``) or of ``lexicons``, whose
    commands first name the app."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a lexicons application"
        + ("." if target else "; without a command, serve it (as `run` does)."),
    )
    parser.add_argument("--version", action="version", version=f"lexicons {__version__}")
    helps = {
        "run": "serve the application",
        "shell": "interactive shell with sv, db and the models, after on_start",
        "migrate": "bring stored data to the current models",
        "schema": "write the AsyncAPI 3.0 document of the application (JSON)",
        "types": "write the TypeScript declarations of the application, for the JS client",
    }
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(helps) + "}")
    for command, text in helps.items():
        sub = commands.add_parser(command, help=text, description=text)
        if target:
            sub.add_argument("target", help="path/to/app.py or package.module[:app]")
        for name, help_text in FLAGS.items():
            if command == "run" or name in _DESCRIBING.get(command, _EVERY_COMMAND):
                _add_flag(sub, name, help_text)
        if command in _DESCRIBING:
            sub.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
            sub.add_argument("--title", help="the application's name (default: its file's)")
    return parser


def _add_flag(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    flag = "--" + name.replace("_", "-")
    full = f"{help_text} ({_VARIABLE[name]})"
    if _PARSE[name] is parse_bool:
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=full)
    else:
        parser.add_argument(flag, dest=name, metavar=name.split("_")[-1].upper(), help=full)


def settings_for(
    app: App, args: argparse.Namespace, code: Mapping[str, Any] | None = None
) -> Settings:
    """The settings of this run: the app's, then ``code``, the environment, the flags."""
    settings = _with_code(app.settings, code or {})
    settings = settings.from_environment()
    changes: dict[str, Any] = {}
    for name in FLAGS:
        value = getattr(args, name, None)
        if value is None:
            continue
        if isinstance(value, str):
            flag = "--" + name.replace("_", "-")
            value = _PARSE[name](value, f"{name}: {value!r} from {flag}")
        changes[name] = value
    if "certfile" in changes and "protocol" not in changes:
        changes["protocol"] = "wss"  # --certfile alone means: serve TLS
    return settings.replace(**changes)


def _with_code(settings: Settings, code: Mapping[str, Any]) -> Settings:
    known = {field.name for field in fields(Settings)}
    for name in code:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"run(): {name!r} is not a setting{hint}")
    return settings.replace(**code) if code else settings


def dispatch(
    app: App,
    args: argparse.Namespace,
    *,
    code: Mapping[str, Any] | None = None,
    source: Path | None = None,
) -> int:
    """Run the command ``args`` name for ``app``; return the exit status.

    ``source`` is the app's module file: ``--reload`` watches its directory.
    """
    try:
        settings = settings_for(app, args, code)
        configure_logging(settings)
        if args.command in WRITERS:
            title = args.title or (source.stem if source is not None else "lexicons application")
            return _write(WRITERS[args.command](app, settings, title), args.output)
        command: Callable[[App, Settings, Path | None], int] = COMMANDS[args.command]
        return command(app, settings, source)
    except LexiconsError as exc:
        return _error(exc)


def _error(exc: LexiconsError) -> int:
    """The command line's answer to a mistake it can name: one line, status 1."""
    print(f"lexicons: error: {exc}", file=sys.stderr)
    return 1


# run


def _run(app: App, settings: Settings, source: Path | None) -> int:
    if settings.reload:
        child = supervised()
        if child is None:
            return run_reloading(relaunch_command(), directories(source), settings)
        return _serve(app, settings, child)
    if settings.workers > 1:
        return supervise(lambda settings, worker: _serve(app, settings, worker), settings)
    return _serve(app, settings, None)


def _serve(app: App, settings: Settings, worker: Worker | None) -> int:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve_until_stopped(app, settings, worker))


async def _serve_until_stopped(app: App, settings: Settings, worker: Worker | None) -> int:
    """Serve until SIGINT/SIGTERM; a second signal exits at once (a supervised process
    leaves that to its supervisor, which may forward a signal it already received)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0
    who = "" if worker is None or worker.index is None else f"{worker.name}: "

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            logger.info("%s%s: shutting down", who, signal.Signals(signum).name)
            stop.set()
        elif worker is None:
            logger.warning("second signal: exiting now")
            os._exit(1)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        shared = None if worker is None else worker.metrics_dir
        running = await Running(app, settings, shared_metrics=shared).start()
    except (LexiconsError, OSError) as exc:
        logger.error("%scould not start: %s", who, _explain(exc, settings))
        return 1
    if settings.static and worker is None:
        web = "https" if running.url.startswith("wss") else "http"
        logger.info("open %s:%s in a browser", web, running.url.partition(":")[2])
    if worker is not None:
        if worker.index is not None:
            logger.info("%slistening (pid %d)", who, os.getpid())
        worker.ready(stop.set)
    await stop.wait()
    await running.close()
    return 0


def _explain(exc: LexiconsError | OSError, settings: Settings) -> str:
    """A start-up error, with the setting that fixes it when it is the address."""
    if isinstance(exc, socket.gaierror) or getattr(exc, "errno", None) == errno.EADDRNOTAVAIL:
        return (
            f"host: cannot listen on {settings.host!r} ({exc}); set an address of this "
            "machine with --host, LEXICONS_HOST or Server(host=...): 127.0.0.1 for this "
            "machine only, 0.0.0.0 for every interface"
        )
    if getattr(exc, "errno", None) == errno.EADDRINUSE:
        return (
            f"port: {settings.port} on {settings.host} is in use, by another server or one "
            "still stopping; choose another with --port, LEXICONS_PORT or Server(port=...), "
            "or 0 for a free one"
        )
    if getattr(exc, "errno", None) == errno.EACCES and settings.port < 1024:
        return (
            f"port: {settings.port} needs privileges this process does not have ({exc}); "
            "use a port above 1023 behind a proxy, with --port, LEXICONS_PORT or "
            "Server(port=...)"
        )
    return str(exc)


# shell and migrate


@contextmanager
def _started(app: App, settings: Settings) -> Iterator[asyncio.Runner]:
    """The server's start sequence without a broker or a socket: open the store, run
    ``on_start``; on leaving, ``on_shutdown`` and close the store. Yields the event loop
    the hooks ran on."""
    db = app.database_for(settings)
    db.open()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run_hooks(app, "on_start", durable=settings.durable))
            try:
                yield runner
            finally:
                runner.run(run_hooks(app, "on_shutdown", durable=settings.durable))
    finally:
        db.close()


def _shell(app: App, settings: Settings, source: Path | None) -> int:
    with _started(app, settings) as runner:
        db = app.db
        namespace: dict[str, Any] = {"app": app, "sv": app, "db": db, **db.models}
        namespace["run"] = runner.run
        banner = (
            f"lexicons shell: sv, db and models {', '.join(db.models) or '(none)'}; "
            "on_start has run. run(coroutine) awaits on the app's event loop."
        )
        try:
            from IPython import start_ipython
        except ImportError:
            import code

            code.interact(banner=banner, local=namespace, exitmsg="")
        else:
            start_ipython(argv=[], user_ns=namespace, display_banner=False)
    return 0


def _migrate(app: App, settings: Settings, source: Path | None) -> int:
    # The data first: opening the store, which on_start needs, fails on rows the models
    # no longer describe. Then the start hooks, on the migrated data, as the server will.
    print(app.database_for(settings).migrate())
    with _started(app, settings):
        pass
    return 0


COMMANDS: dict[str, Callable[[App, Settings, Path | None], int]] = {
    "run": _run,
    "shell": _shell,
    "migrate": _migrate,
}


# schema and types


def _schema(app: App, settings: Settings, title: str) -> str:
    return json.dumps(asyncapi_document(app, title=title, settings=settings), indent=2) + "\n"


def _types(app: App, settings: Settings, title: str) -> str:
    return typescript_declarations(app, title=title)


#: The commands that write a description of the application, to a file or stdout.
WRITERS: dict[str, Callable[[App, Settings, str], str]] = {"schema": _schema, "types": _types}


def _write(text: str, output: str | None) -> int:
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        return _error(LexiconsError(f"--output: cannot write {output}: {exc.strerror}"))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (``lexicons[speed]``), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
