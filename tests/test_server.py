"""The Server: registration (decorators, classes, positional), settings, hooks and order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexicons import (
    Channel,
    ConfigurationError,
    Database,
    Header,
    Model,
    RegistrationError,
    Response,
    Server,
    Signal,
    SignalError,
    Task,
    TaskError,
)
from lexicons.testing import HandshakeFailed, TestClient


class Public(Channel):
    pass


class Echo(Signal):
    def execute(self, ws: Any = None, sv: Any = None, db: Any = None, **payload: Any) -> Any:
        return payload


class Shout(Signal):
    def execute(self, ws: Any = None, text: str = "") -> Response:
        return Response({"text": text}, ["Public"])


class User(Model):
    email: str
    name: str = ""


class Token(Header):
    def execute(self, ws: Any = None, sv: Any = None, db: Any = None, **kwargs: Any) -> bool:
        return True


class Tick(Task.Interval):
    seconds = 60

    def execute(self, **kwargs: Any) -> None:
        pass


def test_positional_components_are_filed_by_kind() -> None:
    app = Server(Public, Echo, User, Token, Tick)
    assert "Public" in app.channels
    assert "Echo" in app.signals
    assert "User" in app.db.models
    assert list(app.headers) == ["Token"]
    assert "Tick" in {t.name for t in app.tasks}


def test_keyword_lists_install_the_same_way() -> None:
    app = Server(channels=[Public], signals=[Echo], models=[User], headers=[Token], tasks=[Tick])
    assert "Public" in app.channels and "Echo" in app.signals and "User" in app.db.models


def test_unknown_positional_component_is_refused() -> None:
    with pytest.raises(RegistrationError, match="cannot tell what"):
        Server(object())


def test_decorators_return_the_function_unchanged() -> None:
    app = Server()

    def shout(text: str) -> str:
        return text

    assert app.signal(shout) is shout
    assert app.signal("Named")(shout) is shout
    assert set(app.signals) == {"shout", "Named"}


def test_duplicate_signal_names_both() -> None:
    app = Server(Echo)

    def Echo_(text: str) -> str:  # noqa: N802
        return text

    with pytest.raises(RegistrationError) as err:
        app.signal("Echo")(Echo_)
    assert "test_server.Echo" in str(err.value) and "Echo_" in str(err.value)


def test_duplicate_channel_and_header() -> None:
    app = Server(Public, Token)
    with pytest.raises(RegistrationError, match="Public"):
        app.channel("Public")
    with pytest.raises(RegistrationError, match="token"):
        app.header("token")(lambda header: True)


def test_channel_by_name_returns_the_channel() -> None:
    app = Server()
    room = app.channel("Room")
    assert isinstance(room, Channel) and room.name == "Room"
    assert app.channel(Public) is Public


def test_hook_with_unsupplied_parameter_is_refused() -> None:
    app = Server()
    with pytest.raises(RegistrationError, match="token"):
        app.on_connect(lambda ws, token: None)


def test_bad_gate_and_unknown_setting() -> None:
    with pytest.raises(ConfigurationError, match="gate"):
        Server(gate="all")  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="prot"):
        Server(prot="ws")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"port": "abc"}, "port"),
        ({"port": 70000}, "port"),
        ({"protocol": "http"}, "protocol"),
        ({"protocol": "wss"}, "protocol"),
        ({"max_size": 0}, "max_size"),
        ({"static": "/no/such/dir"}, "static"),
    ],
)
async def test_bad_settings_fail_at_start_naming_the_setting(
    settings: dict[str, Any], named: str
) -> None:
    app = Server(**settings)
    with pytest.raises(ConfigurationError, match=named):
        async with app.serve(host="127.0.0.1"):
            pass
    assert app.running is None


def test_environment_overrides_arguments_and_flags_override_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lexicons.commands import build_parser, settings_for

    app = Server(port=5000, host="localhost", debug=True)
    monkeypatch.setenv("LEXICONS_PORT", "6000")
    monkeypatch.setenv("LEXICONS_DEBUG", "0")
    monkeypatch.setenv("LEXICONS_TRUST", "10.0.0.0/8, 127.0.0.1")
    from_env = app.settings.from_environment()
    assert (from_env.port, from_env.debug, from_env.host) == (6000, False, "localhost")
    assert from_env.trust == ["10.0.0.0/8", "127.0.0.1"]
    args = build_parser("app.py", target=False).parse_args(["run", "--port", "7000", "--debug"])
    flagged = settings_for(app, args)
    assert (flagged.port, flagged.debug) == (7000, True)


def test_bad_environment_value_names_setting_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEXICONS_PORT", "abc")
    with pytest.raises(ConfigurationError, match="port.*LEXICONS_PORT"):
        Server().settings.from_environment()
    monkeypatch.setenv("LEXICONS_PORT", "1")
    monkeypatch.setenv("LEXICONS_DEBUG", "maybe")
    with pytest.raises(ConfigurationError, match="debug.*LEXICONS_DEBUG"):
        Server().settings.from_environment()


def test_invalid_trust_entry_fails_at_server() -> None:
    with pytest.raises(ConfigurationError, match="not-an-ip"):
        Server(trust=["not-an-ip"])


async def test_class_and_decorator_components_side_by_side() -> None:
    app = Server(Public, Echo, Shout)

    @app.on_connect
    def join(ws: Any, sv: Server) -> None:
        sv.channels["Public"].subscribe(ws.pk)

    @app.signal
    def add(a: int, b: int) -> int:
        return a + b

    async with TestClient(app) as client:
        alice, bob = await client.connect(), await client.connect()
        assert await alice.call("Echo", x=1) == {"x": 1}
        assert await alice.call("add", a=1, b=2) == 3
        await alice.send("Shout", text="hey")
        assert await alice.receive() == {"Shout": {"text": "hey"}}
        assert await bob.receive() == {"Shout": {"text": "hey"}}


async def test_a_failing_startup_task_still_runs_on_shutdown_after_on_start() -> None:
    """What on_start opened is closed again; shutdown tasks pair with startup tasks."""
    events: list[str] = []
    app = Server()

    @app.on_start
    def opened() -> None:
        events.append("on_start")

    @app.task.startup
    def boom() -> None:
        raise ConnectionError("unreachable")

    @app.task.shutdown
    def flush() -> None:
        events.append("shutdown task")

    @app.on_shutdown
    def closed() -> None:
        events.append("on_shutdown")

    with pytest.raises(TaskError, match="startup task 'boom' failed"):
        async with app.serve(host="127.0.0.1", port=0):
            events.append("listening")
    assert events == ["on_start", "on_shutdown"]
    assert app.running is None


async def test_a_failing_on_start_runs_no_on_shutdown() -> None:
    events: list[str] = []
    app = Server()

    @app.on_start
    def fails() -> None:
        raise RuntimeError("no config")

    @app.on_shutdown
    def closed() -> None:
        events.append("on_shutdown")

    with pytest.raises(RuntimeError, match="no config"):
        async with app.serve(host="127.0.0.1", port=0):
            events.append("listening")
    assert events == []


async def test_lifecycle_order_and_on_disconnect_exactly_once() -> None:
    events: list[str] = []
    app = Server()

    @app.on_start
    def started(sv: Server, db: Any) -> None:
        assert sv is app and db is app.db
        events.append("on_start")

    @app.task.startup
    def warm() -> None:
        events.append("startup task")

    @app.on_connect
    async def hello(ws: Any) -> None:
        events.append("on_connect")

    @app.signal
    def ping() -> str:
        events.append("signal")
        return "pong"

    @app.on_disconnect
    def bye(ws: Any) -> None:
        events.append("on_disconnect")

    @app.task.shutdown
    def flush() -> None:
        events.append("shutdown task")

    @app.on_shutdown
    async def stopped() -> None:
        events.append("on_shutdown")

    async with TestClient(app) as client:
        events.append("listening")
        peer = await client.connect()
        assert await peer.call("ping") == "pong"
    assert events == [
        "on_start",
        "startup task",
        "listening",
        "on_connect",
        "signal",
        "on_disconnect",
        "shutdown task",
        "on_shutdown",
    ]


async def test_failing_on_connect_closes_that_connection_with_1011() -> None:
    app = Server()

    @app.on_connect
    def broken(ws: Any) -> None:
        raise RuntimeError("setup failed")

    async with TestClient(app) as client:
        peer = await client.connect()
        code, _ = await peer.closed()
        assert code == 1011


def late_hook(ws: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("register", "named"),
    [
        (lambda app: app.signal(late_hook), "signal 'late_hook'"),
        (lambda app: app.add_signal(Echo), "signal 'Echo'"),
        (lambda app: app.channel("Late"), "channel 'Late'"),
        (lambda app: app.add_channel(Public), "channel 'Public'"),
        (lambda app: app.header("Late")(late_hook), "header 'Late'"),
        (lambda app: app.add_header(Token), "header 'Token'"),
        (lambda app: app.model(User), "model 'User'"),
        (lambda app: app.task.interval(5)(late_hook), "interval task 'late_hook'"),
        (lambda app: app.task.startup(late_hook), "startup task 'late_hook'"),
        (lambda app: app.add_task(Tick), "interval task 'Tick'"),
        (lambda app: app.on_connect(late_hook), "on_connect hook 'late_hook'"),
        (lambda app: app.on_shutdown(late_hook), "on_shutdown hook 'late_hook'"),
        (lambda app: app.add(Echo), "signal 'Echo'"),
    ],
)
async def test_registration_while_running_is_refused_naming_the_component(
    register: Any, named: str
) -> None:
    app = Server()
    async with TestClient(app):
        with pytest.raises(RegistrationError, match=f"{named}.*the server is running"):
            register(app)
    assert "Late" not in app.channels and "late_hook" not in app.signals


def test_registration_is_open_again_once_stopped() -> None:
    app = Server()
    with TestClient(app):
        pass
    app.signal("late")(lambda: None)
    app.channel("Late")
    assert "late" in app.signals and "Late" in app.channels


@pytest.mark.parametrize("expose_errors", [False, True])
async def test_handler_exception_text_reaches_clients_only_with_expose_errors(
    expose_errors: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app = Server()  # every other setting at its default: debug is on

    @app.signal
    def login(password: str) -> None:
        raise RuntimeError(f"database password is {password}")

    overrides = {"expose_errors": True} if expose_errors else {}
    async with TestClient(app, **overrides) as client:
        peer = await client.connect()
        with pytest.raises(SignalError) as raised:
            await peer.call("login", password="hunter2")
    assert raised.value.code == "internal_error"
    assert ("hunter2" in str(raised.value)) is expose_errors
    assert "database password is hunter2" in caplog.text  # the log always has it
    assert "Traceback" in caplog.text


async def test_serve_twice_and_bound_port() -> None:
    app = Server()
    for _ in range(2):
        async with app.serve(host="127.0.0.1", port=0) as running:
            assert running.port > 0 and running.url.endswith(f":{running.port}/")
        assert app.running is None


async def test_sync_handler_blocks_only_for_its_own_duration() -> None:
    """A slow sync handler delays others only while it runs, and they all get answers."""
    app = Server()

    @app.signal
    def work(n: int) -> int:
        return sum(range(n))

    async with TestClient(app) as client:
        peers = [await client.connect() for _ in range(5)]
        results = await asyncio.gather(
            *(p.call("work", n=10_000 * (i + 1)) for i, p in enumerate(peers))
        )
        assert results == [sum(range(10_000 * (i + 1))) for i in range(5)]


# --- the original's arguments ---------------------------------------------------------------


def test_a_single_trust_string_is_one_entry() -> None:
    assert Server(trust="1.2.3.4").settings.trust == ["1.2.3.4"]
    assert Server(trust="10.0.0.0/8", proxies="127.0.0.1").settings.proxies == ["127.0.0.1"]
    assert Server(trust=("*",)).settings.trust == ["*"]


async def test_a_trust_string_admits_that_address_only() -> None:
    app = Server(trust="127.0.0.1")
    async with TestClient(app) as client:
        await client.connect()
    async with TestClient(Server(trust="10.9.8.7")) as client:
        with pytest.raises(HandshakeFailed) as refused:
            await client.connect()
        assert refused.value.status == 403


async def test_on_log_hears_each_lifecycle_step_as_the_original_named_them() -> None:
    heard: list[tuple[str, Any, bool]] = []

    def on_log(
        ws: Any = None,
        sv: Any = None,
        db: Any = None,
        status: Any = None,
        data: Any = None,
        error: Any = None,
    ) -> None:
        heard.append((status, data, sv is app and db is app.db and ws is None))

    app = Server(on_log=on_log)

    @app.task.shutdown
    def flush() -> None:
        heard.append(("shutdown task", None, True))

    async with TestClient(app):
        heard.append(("serving", None, True))
    assert [status for status, _, _ in heard] == [
        "STARTING",
        "serving",
        "SHUTDOWN",
        "CLEANUP-TASKS-STARTED",
        "shutdown task",
        "CLEANUP-TASKS-COMPLETE",
    ]
    assert all(injected for _, _, injected in heard)


async def test_on_log_gets_only_the_keywords_it_names_and_cannot_break_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    statuses: list[str] = []

    def short(status: str) -> None:
        statuses.append(status)
        if status == "STARTING":
            raise RuntimeError("log sink down")

    app = Server(on_log=short)
    async with TestClient(app) as client:
        await client.connect()
    assert statuses[:2] == ["STARTING", "SHUTDOWN"]
    assert "on_log failed at STARTING" in caplog.text


@pytest.mark.parametrize(
    "on_log",
    [lambda level, status: None, "not callable", lambda status, /: None],
)
def test_an_on_log_lexicons_cannot_call_is_refused(on_log: Any) -> None:
    with pytest.raises(RegistrationError, match="on_log"):
        Server(on_log=on_log)


def test_an_async_on_log_is_refused() -> None:
    async def on_log(status: str) -> None: ...

    with pytest.raises(RegistrationError, match="not async"):
        Server(on_log=on_log)


async def test_a_database_passed_in_is_used_as_given(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Server(database=Database(data=..., durable=True)) serves durably from that directory."""
    given = Database([User], data=str(tmp_path / "mine"), durable=True)
    app = Server(database=given)

    @app.signal
    def add(db: Any, email: str) -> str:
        return db.create(User, email=email).pk

    async with TestClient(app) as client:
        assert app.db is given and (given.durable, given.data) == (True, str(tmp_path / "mine"))
        pk = await (await client.connect()).call("add", email="a@b")
    assert (tmp_path / "mine" / "lexicons.sqlite3").exists()
    with Database([User], data=str(tmp_path / "mine"), durable=True) as reopened:
        assert reopened.get(User, pk) is not None
    assert "not applied" not in caplog.text
    async with TestClient(app, data=str(tmp_path / "other"), durable=False):
        assert (given.durable, given.data) == (True, str(tmp_path / "mine"))
    assert "setting data=" in caplog.text and "set it on that Database" in caplog.text


def test_a_database_made_by_the_server_follows_the_settings(tmp_path: Any) -> None:
    app = Server(data=str(tmp_path))
    db = app.database_for(app.settings.replace(data=str(tmp_path / "x"), durable=True))
    assert db is app.db and (db.data, db.durable) == (str(tmp_path / "x"), True)
