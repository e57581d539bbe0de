"""The command line in real subprocesses: run, stop on signals, flags, shell, migrate."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trustme
from conftest import ROOT, Process
from websockets.asyncio.client import connect

import lexicons
from lexicons.client import Client

CHAT = ROOT / "examples" / "chat" / "app.py"
LIFECYCLE = Path(__file__).parent / "apps" / "lifecycle_app.py"
#: The console script installed beside this interpreter.
CONSOLE = Path(sys.executable).with_name("lexicons")
LOCAL = ["--host", "127.0.0.1", "--port", "0"]
#: A line of the default text log format.
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\] [A-Z]+ lexicons[.\w]*: ")

pytestmark = pytest.mark.slow


def write_app(folder: Path, run: str = "app.run(sys.argv[1:])", name: str = "app.py") -> Path:
    """A small app in ``folder``: ``hello`` answers, ``login`` raises with a secret in
    its message; ``on_start`` loads a note and prints, ``on_shutdown`` prints."""
    path = folder / name
    path.write_text(
        textwrap.dedent(
            f"""\
            import sys

            from lexicons import Model, Server

            app = Server(debug=False)


            @app.model
            class Note(Model):
                text: str


            @app.on_start
            def load(sv, db) -> None:
                sv.state["loaded"] = "by on_start"
                db.create(Note, text="from on_start")
                print("on_start", flush=True)


            @app.on_shutdown
            def unload() -> None:
                print("on_shutdown", flush=True)


            @app.signal
            def hello() -> str:
                return "hi"


            @app.signal
            def login(password: str) -> None:
                raise RuntimeError(f"database password is {{password}}")


            if __name__ == "__main__":
                {run}
            """
        )
    )
    return path


def run_command(
    *args: str | Path, cwd: Path = ROOT, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a command that ends by itself (no server), with extra environment variables."""
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env={**os.environ, **env},
    )


async def ask(url: str, signal_name: str, **payload: object) -> object:
    """Call one signal on a fresh connection; the reply's payload (or its Errors)."""
    async with connect(url, **({"ssl": payload.pop("ssl")} if "ssl" in payload else {})) as ws:
        await ws.send(json.dumps({signal_name: payload}))
        reply = json.loads(await ws.recv())
    return reply.get(signal_name, reply)


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
    page = "http" + url.removeprefix("ws")
    server.wait_for(f"open {page} in a browser")  # the chat serves its page (static)
    async with chatter(url, "alice") as alice, chatter(url, "bob") as bob:
        for client in (alice, bob):
            await client.subscribe("room:lobby")
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
    assert all(TEXT_LINE.match(line) for line in lines), lines  # one format, debug or not


async def test_console_script_and_module_target(process: type[Process], tmp_path: Path) -> None:
    server = process(
        sys.executable, "-m", "lexicons", "run", CHAT, "--host", "127.0.0.1", "--port", "0",
        "--data", tmp_path,
    )  # fmt: skip
    async with chatter(server.url(), "alice") as alice:
        await alice.subscribe("room:lobby")
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


def test_an_address_of_another_machine_names_the_host_setting() -> None:
    result = run_command(sys.executable, LIFECYCLE, "run", "--host", "203.0.113.7", "--port", "0")
    assert result.returncode == 1
    assert "could not start: host: cannot listen on '203.0.113.7'" in result.stderr
    assert "--host, LEXICONS_HOST or Server(host=...)" in result.stderr


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
    assert f"could not start: port: {port} on 127.0.0.1 is in use" in result.stderr
    assert "--port, LEXICONS_PORT or Server(port=...)" in result.stderr


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


def test_shell_runs_on_start_first_and_on_shutdown_after(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    result = subprocess.run(
        [sys.executable, str(app), "shell", "--data", str(tmp_path)],
        input="print('SHELL', sv.state['loaded'], [n.text for n in db.query(Note)])\n",
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.removeprefix(">>> ") for line in result.stdout.splitlines()]
    assert lines == ["on_start", "SHELL by on_start ['from on_start']", "on_shutdown"]


def test_migrate_migrates_then_runs_the_start_hooks(tmp_path: Path) -> None:
    app = write_app(tmp_path)
    result = run_command(sys.executable, app, "migrate", "--data", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"nothing to migrate in {tmp_path}",
        "on_start",
        "on_shutdown",
    ]


def test_migrate_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(CHAT), "migrate", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr


# what people expect of a command line


@pytest.mark.parametrize("args", [[], LOCAL], ids=["no arguments", "flags only"])
async def test_python_app_py_without_a_command_serves(
    process: type[Process], args: list[str]
) -> None:
    """What an editor's Run button does: ``python app.py``."""
    env = {"LEXICONS_HOST": "127.0.0.1", "LEXICONS_PORT": "0"}
    server = process(sys.executable, LIFECYCLE, *args, env=env)
    assert await ask(server.url(), "hello") == "hi"
    code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err


@pytest.mark.parametrize("command", [[sys.executable, "-m", "lexicons"], [CONSOLE]])
def test_the_console_script_without_arguments_prints_usage(command: list[str | Path]) -> None:
    result = run_command(*command)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: lexicons")
    assert (
        "name a command: lexicons {run,shell,migrate,schema,types} path/to/app.py" in result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [[CONSOLE], [sys.executable, LIFECYCLE]],
    ids=["lexicons", "python app.py"],
)
def test_version(command: list[str | Path]) -> None:
    result = run_command(*command, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"lexicons {lexicons.__version__}"


@pytest.mark.parametrize("environment", [{}, {"LEXICONS_EXPOSE_ERRORS": "0"}])
async def test_app_run_takes_any_setting(
    process: type[Process], tmp_path: Path, environment: dict[str, str]
) -> None:
    """``app.run(host=..., port=..., <setting>=...)``; the environment still overrides it."""
    run = 'app.run(host="127.0.0.1", port=0, expose_errors=True)'
    environment = {"LEXICONS_DATA": str(tmp_path), **environment}
    server = process(sys.executable, write_app(tmp_path, run), env=environment)
    (error,) = (await ask(server.url(), "login", password="hunter2"))["Errors"]  # type: ignore[index]
    assert error["code"] == "internal_error"
    assert ("hunter2" in error["message"]) is ("LEXICONS_EXPOSE_ERRORS" not in environment)
    assert server.stop(signal.SIGTERM)[0] == 0


def test_an_unknown_setting_in_app_run_is_named(tmp_path: Path) -> None:
    result = run_command(sys.executable, write_app(tmp_path, 'app.run(protocl="wss")'))
    assert result.returncode == 1
    assert "run(): 'protocl' is not a setting; did you mean 'protocol'?" in result.stderr


async def test_a_module_in_the_working_directory_is_importable(
    process: type[Process], tmp_path: Path
) -> None:
    write_app(tmp_path, name="my_chat.py")
    server = process(CONSOLE, "run", "my_chat:app", *LOCAL, "--data", tmp_path, cwd=tmp_path)
    assert await ask(server.url(), "hello") == "hi"
    assert server.stop(signal.SIGTERM)[0] == 0


async def test_certfile_and_keyfile_flags_serve_tls(
    process: type[Process], tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(keyfile)
    cert.cert_chain_pems[0].write_to_path(certfile)
    flags = ["--certfile", certfile, "--keyfile", keyfile, "--data", tmp_path]
    server = process(sys.executable, write_app(tmp_path), "run", *LOCAL, *flags)
    url = server.url()
    assert url.startswith("wss://127.0.0.1:")  # --certfile alone means TLS
    client = ssl.create_default_context()
    ca.configure_trust(client)
    assert await ask(url, "hello", ssl=client) == "hi"
    assert server.stop(signal.SIGTERM)[0] == 0


# logging


async def test_json_log_format(process: type[Process], tmp_path: Path) -> None:
    server = process(sys.executable, LIFECYCLE, "run", *LOCAL, "--log-format", "json")
    url = server.url()
    assert await ask(url, "hello") == "hi"
    code, _, err = server.stop(signal.SIGINT)
    assert code == 0, err
    records = [json.loads(line) for line in err.splitlines()]
    assert {tuple(sorted(r)) for r in records} == {("level", "logger", "message", "pid", "time")}
    messages = [r["message"] for r in records]
    assert messages[0] == f"serving on {url}" and messages[-1] == "stopped"
    assert {r["pid"] for r in records} == {server.popen.pid}


@pytest.mark.parametrize(
    ("flags", "environment", "shown"),
    [
        ([], {}, True),
        (["--log-level", "warning"], {}, False),
        (["--log-level", "info"], {"LEXICONS_LOG_LEVEL": "error"}, True),
    ],
)
def test_log_level(
    tmp_path: Path, flags: list[str], environment: dict[str, str], shown: bool
) -> None:
    result = run_command(
        sys.executable, write_app(tmp_path), "migrate", "--data", tmp_path, *flags, **environment
    )
    assert result.returncode == 0, result.stderr
    assert ("INFO lexicons.database: migrate: nothing to migrate" in result.stderr) is shown


def test_a_bad_log_level_names_the_setting(tmp_path: Path) -> None:
    result = run_command(sys.executable, write_app(tmp_path), "migrate", "--log-level", "loud")
    assert result.returncode == 1
    assert "log_level: 'loud' is not one of critical, error, warning, info, debug" in result.stderr


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"mine": {"format": "MINE %(levelname)s %(name)s | %(message)s"}},
    "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "mine"}},
    "loggers": {"lexicons": {"level": "INFO", "handlers": ["err"]}},
}


@pytest.mark.parametrize("kind", ["json", "yaml"])
def test_log_config_file(tmp_path: Path, kind: str) -> None:
    if kind == "json":
        config = tmp_path / "logging.json"
        config.write_text(json.dumps(LOG_CONFIG))
    else:
        yaml = pytest.importorskip("yaml", reason="PyYAML: pip install -e '.[test]'")
        config = tmp_path / "logging.yaml"
        config.write_text(yaml.safe_dump(LOG_CONFIG))
    app = write_app(tmp_path)
    result = run_command(
        sys.executable, app, "migrate", "--data", tmp_path, "--log-config", config
    )
    assert result.returncode == 0, result.stderr
    assert "MINE INFO lexicons.database | migrate: nothing to migrate" in result.stderr


# the tutorial's layout


def test_components_below_app_run_are_refused_before_serving(tmp_path: Path) -> None:
    """Following a tutorial literally, appending each step below ``app.run()``, must not
    produce a server that admits everyone: the header below would never run."""
    app = write_app(tmp_path, "app.run()")
    with app.open("a") as module:
        module.write("\n\n@app.header\ndef User(ws, header: str) -> bool:\n    return False\n")
    lines = app.read_text().splitlines()
    run, header = lines.index("    app.run()") + 1, lines.index("@app.header") + 1
    result = run_command(sys.executable, app, *LOCAL[:2])
    assert result.returncode == 1
    assert "serving on" not in result.stderr
    said = f"app.py, line {header}: `@app.header` comes after app.run() (line {run})"
    assert said in result.stderr
    assert 'if __name__ == "__main__":' in result.stderr
