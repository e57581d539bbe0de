"""The command line: ``run``, ``shell`` and ``migrate``.

``python app.py run`` (through :meth:`Server.run`) and ``lexicons run app.py`` (the
console script, which also takes ``package.module:app``) accept the same commands and
flags. Flags override environment variables, which override the code's arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LexiconsError
from .settings import parse_int, parse_port

if TYPE_CHECKING:
    from .server import Server
    from .settings import Settings
    from .workers import Worker

__all__ = ["load_app", "main", "main_for"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lexicons`` console script."""
    parser = _parser(with_target=True)
    args = parser.parse_args(argv)
    try:
        app = load_app(args.target)
    except LexiconsError as exc:
        parser.exit(2, f"lexicons: error: {exc}\n")
    return _dispatch(app, args, parser)


def main_for(app: Server, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python app.py ...`` (what :meth:`Server.run` calls)."""
    parser = _parser(with_target=False)
    args = parser.parse_args(argv)
    return _dispatch(app, args, parser)


def _parser(*, with_target: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lexicons" if with_target else Path(sys.argv[0]).name,
        description="Run a lexicons application.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{run,shell,migrate}")
    run = commands.add_parser("run", help="serve the application")
    shell = commands.add_parser("shell", help="interactive shell with sv, db and the models")
    migrate = commands.add_parser("migrate", help="bring stored data to the current models")
    for sub in (run, shell, migrate):
        if with_target:
            sub.add_argument("target", help="path/to/app.py or package.module[:app]")
        sub.add_argument("--data", help="data directory (LEXICONS_DATA)")
        sub.add_argument(
            "--durable",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="write every change to SQLite in the data directory (LEXICONS_DURABLE)",
        )
    run.add_argument("--host", help="interface to listen on (LEXICONS_HOST)")
    run.add_argument("--port", help="port to listen on; 0 picks a free one (LEXICONS_PORT)")
    run.add_argument("--protocol", help="ws or wss (LEXICONS_PROTOCOL)")
    run.add_argument(
        "--debug",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log connections, signals and broadcasts (LEXICONS_DEBUG)",
    )
    run.add_argument("--static", help="directory served over plain HTTP (LEXICONS_STATIC)")
    run.add_argument("--broker", help="broker URL shared by processes (LEXICONS_BROKER)")
    run.add_argument(
        "--workers",
        help="server processes sharing the port; more than 1 needs --broker (LEXICONS_WORKERS)",
    )
    return parser


def _dispatch(app: Server, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command is None:
        parser.print_help()
        return 2
    try:
        settings = _settings(app, args)
        command: Callable[[Server, Settings], int] = COMMANDS[args.command]
        return command(app, settings)
    except LexiconsError as exc:
        print(f"lexicons: error: {exc}", file=sys.stderr)
        return 1


def _settings(app: Server, args: argparse.Namespace) -> Settings:
    changes: dict[str, Any] = {}
    for name in ("host", "protocol", "debug", "data", "durable", "static", "broker"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if getattr(args, "port", None) is not None:
        changes["port"] = parse_port(args.port, f"port: {args.port!r} from --port")
    if getattr(args, "workers", None) is not None:
        changes["workers"] = parse_int(args.workers, f"workers: {args.workers!r} from --workers")
    return app.settings.from_environment().replace(**changes)


def _run(app: Server, settings: Settings) -> int:
    _configure_logging(settings.debug)
    if settings.workers > 1:
        from .workers import supervise

        return supervise(lambda settings, worker: _serve(app, settings, worker), settings)
    return _serve(app, settings, None)


def _serve(app: Server, settings: Settings, worker: Worker | None) -> int:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve_until_stopped(app, settings, worker))


async def _serve_until_stopped(app: Server, settings: Settings, worker: Worker | None) -> int:
    """Serve until SIGINT/SIGTERM; a second signal exits at once (a worker leaves that
    to its supervisor, which may forward a signal the worker already received)."""
    from .lifecycle import Running

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0
    who = "" if worker is None else f"worker {worker.index}: "

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            name = signal.Signals(signum).name
            tell(f"{who}{name}: shutting down")
            stop.set()
        elif worker is None:
            print("lexicons: second signal: exiting now", file=sys.stderr)
            os._exit(1)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        running = await Running(app, settings).start()
    except (LexiconsError, OSError) as exc:
        tell(f"{who}error: could not start: {exc}")
        return 1
    if worker is None:
        if not _logs_lifecycle():
            tell(f"serving on {running.url} (Ctrl+C to stop)")
        if settings.static:
            page = (
                "https" + running.url[3:]
                if running.url.startswith("wss")
                else "http" + running.url[2:]
            )
            tell(f"open {page} in a browser")
    else:
        tell(f"{who}listening (pid {os.getpid()})")
        worker.ready(stop.set)
    await stop.wait()
    await running.close()
    if worker is not None or not _logs_lifecycle():
        tell(f"{who}stopped")
    return 0


def _logs_lifecycle() -> bool:
    """Whether the log already shows "serving on" and "stopped" (``debug``): say them once."""
    return logging.getLogger("lexicons").isEnabledFor(logging.INFO)


def tell(message: str) -> None:
    """One line on stderr, in one write: workers share the stream and must not interleave."""
    sys.stderr.write(f"lexicons: {message}\n")
    sys.stderr.flush()


def _shell(app: Server, settings: Settings) -> int:
    db = app.database_for(settings)
    db.open()
    namespace: dict[str, Any] = {"app": app, "sv": app, "db": db, **db.models}
    banner = f"lexicons shell: sv, db and models {', '.join(db.models) or '(none)'}"
    try:
        try:
            from IPython import start_ipython
        except ImportError:
            import code

            code.interact(banner=banner, local=namespace)
        else:
            start_ipython(argv=[], user_ns=namespace, display_banner=False)
    finally:
        db.close()
    return 0


def _migrate(app: Server, settings: Settings) -> int:
    summary = app.database_for(settings).migrate()
    if summary:
        print(summary)
    return 0


COMMANDS: dict[str, Callable[[Server, Settings], int]] = {
    "run": _run,
    "shell": _shell,
    "migrate": _migrate,
}


def _configure_logging(debug: bool) -> None:
    log = logging.getLogger("lexicons")
    log.setLevel(logging.DEBUG if debug else logging.WARNING)
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (``lexicons[speed]``), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def load_app(target: str) -> Server:
    """Import ``path/to/app.py`` or ``package.module[:name]`` and find its Server."""
    from .server import Server

    module_name, _, attribute = target.partition(":")
    if module_name.endswith(".py") or os.sep in module_name:
        path = Path(module_name).resolve()
        if not path.is_file():
            raise LexiconsError(f"{target}: no such file")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise LexiconsError(f"{target}: cannot import {module_name!r}: {exc}") from exc
    if attribute:
        app = getattr(module, attribute, None)
        if not isinstance(app, Server):
            raise LexiconsError(f"{target}: {attribute!r} is not a lexicons Server")
        return app
    found = [value for value in vars(module).values() if isinstance(value, Server)]
    if len(found) != 1:
        raise LexiconsError(
            f"{target}: found {len(found)} Server objects; name one as {module_name}:NAME"
        )
    return found[0]
