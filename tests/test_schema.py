"""``lexicons schema`` (AsyncAPI 3.0) and ``lexicons types`` (TypeScript), from msgspec's
JSON Schema: the rules without I/O, then the output checked by the AsyncAPI project's own
parser and by ``tsc``."""

from __future__ import annotations

import ast
import asyncio
import enum
import inspect
import json
import re
import shutil
import subprocess
import typing
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest
from example_apps import EXAMPLES, load_example
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from lexicons import History, LexiconsError, Model, Response, Server, Signal
from lexicons.cli import main
from lexicons.commands import WRITERS, main_for
from lexicons.schema import asyncapi_document, typescript_declarations
from lexicons.schema.asyncapi import _Keys
from lexicons.schema.contract import ERROR_CODES, UNKNOWN, contract_of, split_return
from lexicons.schema.typescript import _TAKEN, reserved_names, ts_type

ROOT = Path(__file__).parent.parent
NODE_MODULES = ROOT / "clients" / "js" / "node_modules"
NEEDS_NODE = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_MODULES / "@asyncapi" / "parser").is_dir(),
    reason="needs Node.js and `npm ci` in clients/js",
)
KEY = re.compile(r"^[A-Za-z0-9._-]+$")


# --- a kitchen sink of the types msgspec describes --------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(msgspec.Struct):
    x: float
    y: float


class Tree(msgspec.Struct):
    """A recursive struct."""

    value: int
    children: list[Tree] = []


class Circle(msgspec.Struct, tag=True):
    radius: float


class Square(msgspec.Struct, tag="square"):
    side: float


class Move(msgspec.Struct, forbid_unknown_fields=True):
    to: Point
    speed: Annotated[int, msgspec.Meta(ge=0, description="cells per turn")]
    path: list[Point] = []


class Moved(msgspec.Struct):
    player: str
    to: Point


class Note(Model):
    text: str


class App(msgspec.Struct):
    """Named like the declarations' own App type."""

    name: str


def kitchen_sink() -> Server:
    app = Server(gate=any)
    app.channel("Lobby", join=True, presence=True)
    app.channel("Admins")
    app.channel("room:{id}", history=History(10, age=60), policy="drop", join=True)
    app.channel("game:{game}:{team}", policy="conflate", join=lambda ws, game, team: True)

    @app.signal
    def ping() -> None:
        """Nothing in, nothing out."""

    @app.signal
    async def add(a: int, b: int = 0) -> int:
        return a + b

    @app.signal
    def move(ws: Any, move: Move) -> Response[Moved]:
        return Response(Moved(ws.pk, move.to), ["Lobby", "room:1"])

    @app.signal
    def shapes(items: list[Circle | Square], color: Color, level: Level) -> dict[str, float]:
        return {}

    @app.signal
    def grow(tree: Tree, depth: int | None = None) -> Tree | None:
        return tree

    @app.signal
    def pick(choice: Literal["a", "b", 3], pair: tuple[int, str], tags: set[str]) -> bool:
        return True

    @app.signal
    def post(db: Any, note: Note) -> Note:
        return note

    @app.signal
    def either(flag: bool) -> Response[Moved] | Point | None:
        return None

    @app.signal
    def anything(x, **extra):  # type: ignore[no-untyped-def]  # unknown in, unknown out
        return x

    @app.signal
    def named(app: App) -> App:
        return app

    @app.signal
    def later() -> Awaitable[list[int]]:
        raise NotImplementedError

    @app.header
    def Token(ws: Any, header: str) -> bool:
        """An API token."""
        return True

    @app.header
    def Login(ws: Any, user: str, password: str) -> bool:
        return False

    return app


#: Two Structs of one name, from two modules: msgspec names them by module.
TWINS = (
    msgspec.defstruct("Twin", [("x", int)], module="alpha"),
    msgspec.defstruct("Twin", [("y", str)], module="beta"),
)


def hostile_names() -> Server:
    """Names that are valid for lexicons but not as identifiers or component keys."""
    app = Server()

    def twins(p: Any) -> Any:
        return p

    twins.__annotations__ = {"p": TWINS[0], "return": TWINS[1]}
    app.add_signal(twins)
    app.channel("a b`${c}", join=True)
    app.channel("q:{x}:`$", join=True)
    # Not "__proto__": the AsyncAPI parser, in JavaScript, loses a property of that name.
    for name in ['say "hi"', "日本", "a.b", "a_b", "a-b", "a b", "constructor", "toString"]:
        app.signal(name)(lambda text="": text)
    return app


EXAMPLE_NAMES = ("chat", "location", "game", "original")


def example(name: str) -> Server:
    module = load_example(name)
    return next(value for value in vars(module).values() if isinstance(value, Server))


def examples() -> dict[str, Server]:
    return {name: example(name) for name in EXAMPLE_NAMES}


# --- the contract: what the annotations say ---------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (Response[Point], (None, True, [Point])),
        (Response, (None, True, ["?"])),
        (Response[Any], (None, True, ["?"])),
        (type(None), (None, True, None)),  # `-> None`, as get_type_hints gives it
        (int, ([int], False, None)),
        (int | None, ([int], True, None)),
        (Point | Response[Moved] | None, ([Point], True, [Moved])),
        (Any, (["?"], True, ["?"])),
        (inspect.Signature.empty, (["?"], True, ["?"])),  # not annotated
        (int | Any, (["?"], True, ["?"])),
        (typing.Awaitable[int], ([int], False, None)),
        (typing.Coroutine[Any, Any, str], ([str], False, None)),
    ],
)
def test_a_return_annotation_splits_into_reply_silence_and_broadcast(
    annotation: Any, expected: tuple[Any, ...]
) -> None:
    replies, silent, broadcasts = split_return(annotation)

    def shown(kinds: list[Any] | None) -> list[Any] | None:
        return None if kinds is None else [k if isinstance(k, type) else "?" for k in kinds]

    assert (shown(replies), silent, shown(broadcasts)) == expected


@given(
    st.lists(
        st.sampled_from([int, str, Point, Response[Point], Response[Moved], type(None)]),
        min_size=1,
        max_size=5,
    )
)
def test_every_union_member_lands_in_exactly_one_place(members: list[Any]) -> None:
    annotation = typing.Union[tuple(members)]  # noqa: UP007
    replies, silent, broadcasts = split_return(annotation)
    if typing.get_origin(annotation) is typing.Union:
        members = list(typing.get_args(annotation))
    else:
        members = [annotation]
    assert silent == any(m is type(None) or typing.get_origin(m) is Response for m in members)
    assert (replies or []) == [m for m in members if m in (int, str, Point)]
    assert (broadcasts or []) == [typing.get_args(m)[0] for m in members if typing.get_origin(m)]


def test_the_contract_of_the_kitchen_sink() -> None:
    contract = contract_of(kitchen_sink())
    signals = {signal.name: signal for signal in contract.signals}
    assert list(signals) == sorted(signals)
    assert signals["ping"].payload == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    assert (signals["ping"].reply, signals["ping"].broadcast) == (None, None)
    assert signals["ping"].doc == "Nothing in, nothing out."
    assert signals["add"].reply == {"type": "integer"}
    assert signals["move"].payload == {"$ref": "#/components/schemas/Move"}
    assert signals["move"].reply is None and signals["move"].silent
    assert signals["move"].broadcast == {"$ref": "#/components/schemas/Moved"}
    assert signals["anything"].reply == UNKNOWN == signals["anything"].broadcast
    assert signals["later"].reply == {"type": "array", "items": {"type": "integer"}}
    # A payload with **kwargs says that other fields are welcome; a Model's has no pk.
    assert contract.schemas["anythingPayload"]["additionalProperties"] is True
    assert "pk" not in contract.schemas["NotePayload"].get("required", [])
    assert contract.schemas["Tree"]["properties"]["children"]["items"] == {
        "$ref": "#/components/schemas/Tree"
    }
    assert list(contract.schemas) == sorted(contract.schemas)
    channels = {channel.name: channel for channel in contract.channels}
    assert channels["game:{game}:{team}"].params == ("game", "team")
    assert channels["room:{id}"].history == (10, 60)
    assert not channels["Admins"].joinable and channels["Lobby"].presence
    token, login = contract.headers
    assert (token.name, token.text, token.value) == ("Token", True, {"type": "string"})
    assert (login.text, login.value) == (False, {"$ref": "#/components/schemas/LoginPayload"})
    assert contract.gate == "any"


def test_sync_and_async_handlers_have_the_same_contract() -> None:
    sync_app, async_app = Server(), Server()

    @sync_app.signal
    def f(a: int) -> str:
        return ""

    @async_app.signal
    async def f(a: int) -> str:  # noqa: F811
        return ""

    assert contract_of(sync_app) == contract_of(async_app)


def test_class_components_of_the_original_api() -> None:
    class Echo(Signal):
        """Say it back."""

        def execute(self, ws: Any = None, text: str = "", **kwargs: Any) -> str:
            return text

    class Quiet(Signal):
        def execute(self, **kwargs: Any) -> None:
            pass

    contract = contract_of(Server(Echo, Quiet, gate=lambda results: True))
    echo, quiet = contract.signals
    assert (echo.doc, echo.reply, quiet.reply, quiet.doc) == (
        "Say it back.",
        {"type": "string"},
        None,
        "",
    )
    assert echo.payload == {"$ref": "#/components/schemas/EchoPayload"}
    assert quiet.payload == {"type": "object"}  # **kwargs only: any object
    assert contract.gate == "custom"


def test_an_annotation_without_json_schema_names_its_signal() -> None:
    app = Server()

    @app.signal
    def stream() -> typing.Iterator[int]:
        raise NotImplementedError

    with pytest.raises(LexiconsError, match="signal 'stream': reply"):
        contract_of(app)


def test_the_error_codes_are_those_docs_protocol_lists() -> None:
    table = (ROOT / "docs" / "protocol.md").read_text()
    assert set(re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)) == set(ERROR_CODES)


# --- TypeScript -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, "unknown"),
        ({"type": "integer"}, "number"),
        ({"type": ["string", "null"]}, "string | null"),
        ({"anyOf": [{"type": "integer"}, {"type": "number"}]}, "number"),
        ({"enum": ["a", 1, None, True]}, '"a" | 1 | null | true'),
        ({"const": "x"}, '"x"'),
        (
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "(string | null)[]",
        ),
        ({"type": "array"}, "unknown[]"),
        ({"type": "array", "prefixItems": [{"type": "integer"}], "items": False}, "[number]"),
        (
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 1,
            },
            "[number, string?, ...unknown[]]",
        ),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}], "minItems": 1, "maxItems": 1},
            "[number]",
        ),
        ({"type": "object"}, "{ [key: string]: unknown }"),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            "{ [key: string]: number }",
        ),
        (
            {"type": "object", "properties": {}, "additionalProperties": False},
            "Record<string, never>",
        ),
        (
            {"type": "object", "properties": {"a-b": {"type": "string"}}, "required": ["a-b"]},
            '{\n  "a-b": string;\n}',
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "description": "*/x"}}},
            "{\n  /** * /x */\n  a?: string;\n}",
        ),
        (
            {"allOf": [{"$ref": "#/components/schemas/A"}, {"type": ["string", "null"]}]},
            "A & (string | null)",
        ),
        ({"$ref": "#/components/schemas/App"}, "App_"),
    ],
)
def test_json_schema_to_typescript(schema: dict[str, Any], expected: str) -> None:
    assert ts_type(schema, reserved_names(["A", "App"])) == expected


@given(st.lists(st.text(min_size=1, max_size=8), max_size=12, unique=True))
def test_schema_names_become_distinct_free_identifiers(schemas: list[str]) -> None:
    names = reserved_names([*schemas, "Record", "App"])
    assert len(set(names.values())) == len(names)
    for original, name in names.items():
        assert re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", name)
        assert name not in _TAKEN
        if re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", original) and original not in _TAKEN:
            assert name == original


@settings(max_examples=25, deadline=None)  # two apps and four documents per example
@given(st.permutations(["ping", "pong", "add", "zap"]), st.permutations(["A", "b:{x}", "C"]))
def test_output_does_not_depend_on_registration_order(
    signals: list[str], channels: list[str]
) -> None:
    def build(signal_names: list[str], channel_names: list[str]) -> Server:
        app = Server()
        for name in channel_names:
            app.channel(name, join=True)
        for name in signal_names:
            app.signal(name)(lambda n=0: None)
        return app

    reference = build(sorted(signals), sorted(channels))
    app = build(signals, channels)
    assert typescript_declarations(app) == typescript_declarations(reference)
    assert asyncapi_document(app) == asyncapi_document(reference)


def test_the_app_type_and_its_parts() -> None:
    text = typescript_declarations(kitchen_sink(), title="sink")
    assert text.startswith("// TypeScript declarations of sink")
    assert "export interface App_ {" in text and "payload: App_;" in text
    assert "export type App = {" in text
    assert "ping: {\n      payload: Record<string, never>;\n      reply: null;" in text
    assert "either: Point | Moved;" in text  # a reply and a broadcast share the name
    assert "[channel: `room:${string}`]: unknown;" in text
    assert "[channel: `game:${string}:${string}`]: unknown;" in text
    assert "Admins" not in text  # clients cannot subscribe to it
    assert "export type Level = 1 | 2;" in text


# --- AsyncAPI -----------------------------------------------------------------------


@given(st.lists(st.tuples(st.sampled_from(["", "x."]), st.text(max_size=6)), max_size=20))
def test_component_keys_are_valid_distinct_and_stable(names: list[tuple[str, str]]) -> None:
    keys = _Keys()
    given_keys = {(prefix, name): keys.of(name, prefix) for prefix, name in names}
    assert all(KEY.fullmatch(key) for key in given_keys.values())
    assert len(set(given_keys.values())) == len(given_keys)
    assert all(keys.of(name, prefix) == key for (prefix, name), key in given_keys.items())


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


@pytest.mark.parametrize("build", [kitchen_sink, hostile_names, Server])
def test_every_reference_resolves_and_every_key_is_valid(build: Any) -> None:
    document = asyncapi_document(build())
    for ref in refs(document):
        assert resolve(document, ref) is not None
    socket = document["channels"]["socket"]
    for key in [*document["channels"], *document["operations"], *socket["messages"]]:
        assert KEY.fullmatch(key), key
    json.dumps(document)  # JSON-ready


def test_the_asyncapi_document_of_the_kitchen_sink() -> None:
    document = asyncapi_document(kitchen_sink(), title="sink")
    operations = document["operations"]
    assert operations["add"]["action"] == "send"
    assert operations["add"]["reply"]["messages"] == [
        {"$ref": "#/channels/socket/messages/add.reply"}
    ]
    assert "reply" not in operations["ping"] and "reply" not in operations["move"]
    assert operations["move.broadcast"]["action"] == "receive"
    assert {"lexicons.subscribe", "lexicons.presence", "lexicons.join", "lexicons.lagged"} <= set(
        operations
    )
    room = document["channels"]["channel.room__id_"]
    assert (room["address"], list(room["parameters"])) == ("room:{id}", ["id"])
    schemes = document["components"]["securitySchemes"]
    assert schemes["header.Token"]["name"] == "Token"
    assert schemes["header.Login"]["x-lexicons-value"] == {
        "$ref": "#/components/schemas/LoginPayload"
    }
    errors = document["channels"]["socket"]["messages"]["lexicons.Errors"]
    failure = resolve(document, errors["payload"]["properties"]["Errors"]["items"]["$ref"])
    assert failure["properties"]["code"]["examples"] == list(ERROR_CODES)
    # The framework's requests are described by the Structs that decode them.
    subscribe = document["channels"]["socket"]["messages"]["lexicons.subscribe.request"]
    assert subscribe["payload"]["properties"]["$subscribe"] == {
        "$ref": "#/components/schemas/lexicons.Subscribe"
    }


def test_an_app_without_channels_has_no_subscription_messages() -> None:
    operations = asyncapi_document(Server())["operations"]
    assert list(operations) == ["lexicons.Errors"]


# --- the commands -----------------------------------------------------------------------


def test_lexicons_schema_and_types_write_files(tmp_path: Path) -> None:
    app = EXAMPLES / "game" / "app.py"
    assert main(["schema", str(app), "-o", str(tmp_path / "game.json"), "--port", "9"]) == 0
    document = json.loads((tmp_path / "game.json").read_text())
    assert document["info"]["title"] == "app"
    assert document["servers"]["default"]["host"] == "localhost:9"
    assert main(["types", str(app), "-o", str(tmp_path / "game.ts"), "--title", "game"]) == 0
    assert "TypeScript declarations of game" in (tmp_path / "game.ts").read_text()


def test_python_app_py_types_writes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_for(kitchen_sink(), ["types"]) == 0
    assert capsys.readouterr().out == typescript_declarations(
        kitchen_sink(), title="lexicons application"
    )


def test_an_unwritable_output_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "out.json"
    assert main_for(kitchen_sink(), ["schema", "-o", str(target)]) == 1
    assert capsys.readouterr().err.startswith(f"lexicons: error: --output: cannot write {target}")


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_the_examples_generated_files_are_up_to_date(name: str) -> None:
    app = example(name)
    for command, file in (("schema", "asyncapi.json"), ("types", "types.d.ts")):
        written = (EXAMPLES / name / file).read_text()
        assert written == WRITERS[command](app, app.settings, name), (
            f"regenerate it: python examples/{name}/app.py {command} --title {name} "
            f"-o examples/{name}/{file}"
        )


def test_schema_takes_only_the_flags_that_apply() -> None:
    with pytest.raises(SystemExit):
        main_for(kitchen_sink(), ["types", "--port", "1"])


# --- checked by the AsyncAPI parser and tsc ----------------------------------------------


def node(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", *args],
        cwd=cwd,
        env={"NODE_PATH": str(NODE_MODULES), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@NEEDS_NODE
def test_the_asyncapi_parser_accepts_every_document(tmp_path: Path) -> None:
    apps = {**examples(), "sink": kitchen_sink(), "hostile": hostile_names(), "empty": Server()}
    files = []
    for name, app in apps.items():
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(asyncapi_document(app, title=name)))
    broken = asyncapi_document(kitchen_sink())
    broken["operations"]["add"]["messages"] = [{"$ref": "#/channels/socket/messages/nope"}]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    script = str(ROOT / "tests" / "node" / "validate_asyncapi.cjs")
    done = node(script, *map(str, files), str(tmp_path / "broken.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = {Path(r["file"]).stem: r for r in map(json.loads, done.stdout.splitlines())}
    for name in apps:
        assert results[name]["parsed"] and results[name]["errors"] == [], results[name]
        assert {w["code"] for w in results[name]["warnings"]} <= {"asyncapi-latest-version"}
    assert results["broken"]["errors"]  # the parser can fail: this check means something


USAGE = """\
import type { App, ErrorCode } from "./sink";
import type { App as Hostile } from "./hostile";

type S = App["signals"];
type Payload<N extends keyof S> = S[N]["payload"];
type Reply<N extends keyof S> = S[N]["reply"];
type Channel = keyof App["channels"] & string;

// A Struct as the one parameter is the whole payload.
export const ok: Payload<"move"> = { to: { x: 1, y: 2 }, speed: 3 };
// @ts-expect-error speed is a number
export const wrongType: Payload<"move"> = { to: { x: 1, y: 2 }, speed: "3" };
// @ts-expect-error to is required
export const missing: Payload<"move"> = { speed: 3 };
// @ts-expect-error the struct forbids other fields, and TypeScript with it
export const extra: Payload<"move"> = { to: { x: 1, y: 2 }, speed: 3, fast: true };
export const none: Payload<"ping"> = {};
// @ts-expect-error ping takes no payload
export const some: Payload<"ping"> = { a: 1 };
export const pong: Reply<"ping"> = null;
export const sum: Reply<"add"> = 3;
// @ts-expect-error add replies with a number
export const text: Reply<"add"> = "3";
export const added: Payload<"add"> = { a: 1 };
export const tree: Payload<"grow"> = { tree: { value: 1, children: [{ value: 2 }] } };
// @ts-expect-error deep inside the recursive struct
export const badTree: Payload<"grow"> = { tree: { value: 1, children: [{ value: "2" }] } };
export const shape: Payload<"shapes"> = {
  items: [{ type: "Circle", radius: 1 }, { type: "square", side: 2 }],
  color: "red",
  level: 2,
};
// @ts-expect-error an unknown tag
export const badShape: Payload<"shapes"> = { items: [{ type: "Blob" }], color: "red", level: 1 };
// @ts-expect-error not a member of the enum
export const badColor: Payload<"shapes"> = { items: [], color: "green", level: 1 };
export const pick: Payload<"pick"> = { choice: 3, pair: [1, "a"], tags: ["x"] };
// @ts-expect-error the tuple's second item is a string
export const badPick: Payload<"pick"> = { choice: "a", pair: [1, 2], tags: [] };
export const note: Payload<"post"> = { text: "hi" };
// @ts-expect-error the server chooses a new row's pk
export const pk: Payload<"post"> = { text: "hi", pk: 1 };
export const free: Payload<"anything"> = { x: [1], y: "any other field" };
export const maybe: Reply<"grow"> = null;
export const moved: App["messages"]["move"] = { player: "p", to: { x: 0, y: 0 } };
export const other: App["messages"]["welcome"] = "anything a hook sends";
export const lobby: Channel = "Lobby";
export const room: Channel = "room:42";
export const team: Channel = "game:1:red";
// @ts-expect-error clients cannot subscribe to Admins
export const admins: Channel = "Admins";
// @ts-expect-error no such signal
export const nope: Payload<"nope"> = {};
export const odd: Hostile["signals"]['say "hi"']["payload"] = { text: "x" };
export const twin: Hostile["signals"]["twins"]["payload"] = { x: 1 };
// @ts-expect-error the reply is the other Twin
export const otherTwin: Hostile["signals"]["twins"]["reply"] = { x: 1 };
export const japanese: keyof Hostile["signals"] = "日本";
export const quoted: keyof Hostile["channels"] & string = "q:7:`$";
export const braced: keyof Hostile["channels"] & string = "a b`$anything";
// @ts-expect-error the pattern's fixed part is `q:`
export const unquoted: keyof Hostile["channels"] & string = "r:7:`$";
export const code: ErrorCode = "rate_limited";
export const own: ErrorCode = "not_in_room";
"""


def tsc(tmp_path: Path, *files: str) -> subprocess.CompletedProcess[str]:
    compiler = str(NODE_MODULES / "typescript" / "bin" / "tsc")
    flags = ["--noEmit", "--strict", "--target", "es2022", "--module", "esnext"]
    return node(compiler, *flags, "--moduleResolution", "bundler", *files, cwd=tmp_path)


@NEEDS_NODE
def test_tsc_checks_calls_against_the_handlers_annotations(tmp_path: Path) -> None:
    apps = {**examples(), "sink": kitchen_sink(), "hostile": hostile_names(), "empty": Server()}
    for name, app in apps.items():
        (tmp_path / f"{name}.ts").write_text(typescript_declarations(app, title=name))
    (tmp_path / "usage.ts").write_text(USAGE)
    done = tsc(tmp_path, *(f"{name}.ts" for name in apps), "usage.ts")
    assert done.returncode == 0, done.stdout + done.stderr
    # The same file without the expectations fails, once per expected error.
    (tmp_path / "usage.ts").write_text(USAGE.replace("// @ts-expect-error", "//"))
    done = tsc(tmp_path, "sink.ts", "hostile.ts", "usage.ts")
    assert done.stdout.count("error TS") == USAGE.count("@ts-expect-error")


def test_the_excerpt_in_docs_schema_is_real_output() -> None:
    page = (ROOT / "docs" / "schema.md").read_text()
    namespace: dict[str, Any] = {"__name__": "docs_schema"}
    exec(re.findall(r"^```python\n(.*?)^```", page, re.S | re.M)[0], namespace)
    excerpt = re.findall(r"^```ts\n(.*?)^```", page, re.S | re.M)
    assert len(excerpt) == 1 and excerpt[0].count("\n") > 30
    assert excerpt[0] in namespace["declarations"]


# --- the document describes the wire: real frames meet its schemas ------------------------

REQUESTS: list[dict[str, Any]] = [
    {"$subscribe": {"channel": "Lobby"}},
    {"$subscribe": {"channel": "room:1"}},
    {"$presence": {"channel": "Lobby"}},
    {"ping": {}},
    {"add": {"a": 1}},
    {"move": {"to": {"x": 1.5, "y": 2}, "speed": 3}},
    {"shapes": {"items": [{"type": "square", "side": 1}], "color": "blue", "level": 2}},
    {"grow": {"tree": {"value": 1, "children": [{"value": 2}]}}},
    {"pick": {"choice": "a", "pair": [1, "x"], "tags": ["t"]}},
    {"post": {"text": "hi"}},
    {"either": {"flag": True}},
    {"anything": {"x": [1], "y": 2}},
    {"named": {"name": "n"}},
    {"later": {}},  # raises: internal_error
    {"nope": {}},  # unknown_signal
    {"add": {"a": "x"}},  # invalid_payload
    {"$unsubscribe": {"channel": "room:1"}},
]
#: The requests above that the server refuses, whose frames no schema describes.
REFUSED = ({"later": {}}, {"nope": {}}, {"add": {"a": "x"}})


def message_key(frame: dict[str, Any], signals: set[str], sent: bool) -> str:
    """The key, under channels.socket.messages, of the message a frame is."""
    if "Errors" in frame:
        return "lexicons.Errors"
    (name,) = set(frame) - {"ref", "channel", "offset"}
    if name.startswith("$"):
        notice = name in ("$join", "$leave", "$lagged")
        return f"lexicons.{name[1:]}" + ("" if notice else ".request" if sent else ".reply")
    assert name in signals
    return f"{name}." + ("request" if sent else "reply" if "ref" in frame else "broadcast")


async def wire_frames(app: Server) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The frames sent and received by a client that calls everything once."""
    sent = [{**request, "ref": ref} for ref, request in enumerate(REQUESTS)]
    sent.append({"add": {"a": 0}, "ref": "end"})
    received: list[dict[str, Any]] = []

    def done() -> bool:
        # The last reply, and both broadcasts of `move` (to Lobby, and to room:1's history).
        broadcasts = sum("move" in frame and "ref" not in frame for frame in received)
        return {"add": 0, "ref": "end"} in received and broadcasts == 2

    async with app.serve(host="127.0.0.1", port=0) as running:
        async with connect(running.url + "?Token=ok") as ws:
            await ws.send(json.dumps(sent))
            while not done():
                received.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    return sent, received


@NEEDS_NODE
async def test_real_frames_meet_the_documents_schemas(tmp_path: Path) -> None:
    app = kitchen_sink()
    sent, received = await wire_frames(app)
    signals = set(app.signals)
    frames = [
        {"message": message_key(frame, signals, sent=True), "frame": frame}
        for frame in sent
        if {k: v for k, v in frame.items() if k != "ref"} not in REFUSED
    ]
    frames += [
        {"message": message_key(frame, signals, sent=False), "frame": frame} for frame in received
    ]
    seen = {item["message"] for item in frames}
    assert {
        "add.reply",
        "move.broadcast",
        "grow.reply",
        "post.reply",
        "shapes.reply",
        "pick.reply",
        "anything.reply",
        "lexicons.Errors",
        "lexicons.join",
        "lexicons.subscribe.reply",
        "lexicons.presence.reply",
        "lexicons.unsubscribe.reply",
        "ping.request",
        "lexicons.subscribe.request",
    } <= seen
    assert "either.reply" not in seen and "ping.reply" not in seen  # None sends nothing
    assert any("offset" in frame for frame in received)  # the history channel's broadcast
    wrong = [
        {"message": "add.reply", "frame": {"add": "three", "ref": 1}},
        {"message": "move.broadcast", "frame": {"move": {"player": "p"}}},
        {"message": "ping.request", "frame": {"ping": {"x": 1}}},
        {"message": "pick.request", "frame": {"pick": {"choice": "a", "pair": [1], "tags": []}}},
        {"message": "lexicons.Errors", "frame": {"Errors": []}},
    ]
    (tmp_path / "frames.json").write_text(
        json.dumps({"document": asyncapi_document(app), "frames": frames + wrong})
    )
    script = str(ROOT / "tests" / "node" / "validate_frames.cjs")
    checked = node(script, str(tmp_path / "frames.json"), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    results = [json.loads(line) for line in checked.stdout.splitlines()]
    assert len(results) == len(frames) + len(wrong)
    for item, result in zip(frames, results, strict=False):
        assert result["valid"], (item, result["errors"])
    assert not any(result["valid"] for result in results[len(frames) :])


# --- any value msgspec accepts, TypeScript accepts -----------------------------------------

_numbers = st.floats(allow_nan=False, allow_infinity=False, width=32)
_structs = iter(range(1_000_000))


def _struct(fields: tuple[tuple[Any, Any], tuple[Any, Any]]) -> tuple[Any, Any]:
    (a, values_a), (b, values_b) = fields
    struct = msgspec.defstruct(f"Generated{next(_structs)}", [("a", a), ("b", b)])
    return struct, st.fixed_dictionaries({"a": values_a, "b": values_b})


def kinds() -> st.SearchStrategy[tuple[Any, st.SearchStrategy[Any]]]:
    """Types msgspec describes, each with a strategy for JSON values it accepts."""
    leaves = st.sampled_from(
        [
            (int, st.integers(-(2**53), 2**53)),
            (float, _numbers),
            (str, st.text(max_size=4)),
            (bool, st.booleans()),
            (type(None), st.none()),
            (Literal["a", 1], st.sampled_from(["a", 1])),
            (Color, st.sampled_from(["red", "blue"])),
            (Level, st.sampled_from([1, 2])),
            (Point, st.fixed_dictionaries({"x": _numbers, "y": _numbers})),
        ]
    )

    def extend(
        inner: st.SearchStrategy[tuple[Any, Any]],
    ) -> st.SearchStrategy[tuple[Any, Any]]:
        return st.one_of(
            inner.map(lambda k: (list[k[0]], st.lists(k[1], max_size=3))),
            inner.map(
                lambda k: (dict[str, k[0]], st.dictionaries(st.text(max_size=3), k[1], max_size=2))
            ),
            inner.map(lambda k: (k[0] | None, st.one_of(st.none(), k[1]))),
            st.tuples(inner, inner).map(
                lambda p: (tuple[p[0][0], p[1][0]], st.tuples(p[0][1], p[1][1]).map(list))
            ),
            st.tuples(inner, inner).map(_struct),
        )

    return st.recursive(leaves, extend, max_leaves=6)


@NEEDS_NODE
@settings(max_examples=4, deadline=None)
@given(st.lists(kinds(), min_size=1, max_size=10), st.data())
def test_values_msgspec_accepts_type_check(
    tmp_path_factory: pytest.TempPathFactory, kinds: list[tuple[Any, Any]], data: st.DataObject
) -> None:
    app = Server()
    lines = ['import type { App } from "./app";', 'type S = App["signals"];']
    for index, (kind, values) in enumerate(kinds):
        handler = app.add_signal(_identity(kind), f"s{index}")
        value = data.draw(values)
        # A Struct as the one parameter is the whole payload.
        payload = value if handler.payload.named else {"x": value}
        msgspec.convert(payload, handler.payload.struct)  # the server accepts it
        literal = json.dumps(value)
        lines.append(f'export const p{index}: S["s{index}"]["payload"] = {json.dumps(payload)};')
        lines.append(f'export const r{index}: S["s{index}"]["reply"] = {literal};')
    folder = tmp_path_factory.mktemp("values")
    (folder / "app.ts").write_text(typescript_declarations(app))
    (folder / "values.ts").write_text("\n".join(lines) + "\n")
    done = tsc(folder, "app.ts", "values.ts")
    assert done.returncode == 0, done.stdout + "\n".join(lines)


def _identity(kind: Any) -> Any:
    def signal(x: Any) -> Any:
        return x

    signal.__annotations__ = {"x": kind, "return": kind}
    return signal


def test_the_schema_package_does_no_io() -> None:
    """The contract and its writers are pure: files and stdout are the command's business."""
    package = ROOT / "src" / "lexicons" / "schema"
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        }
        assert not imported & {"asyncio", "socket", "os", "pathlib", "io", "sys"}, path
        calls = {
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        assert not calls & {"open", "print", "input"}, path
