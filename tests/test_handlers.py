"""Inspecting handlers once at registration: injection, payload validation, bad signatures."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons.errors import InvalidPayload, RegistrationError
from lexicons.handlers import inspect_handler
from lexicons.store.models import Model


def test_injects_only_what_is_asked_for() -> None:
    def handler(ws: Any, text: str) -> Any:
        return (ws, text)

    h = inspect_handler(handler, "H")
    assert h.inject == ("ws",)
    assert not h.is_async
    assert h.call(h.payload.from_json(b'{"text": "x"}'), "WS", "SV", "DB") == ("WS", "x")


def test_var_keyword_receives_everything() -> None:
    def handler(**kwargs: Any) -> Any:
        return kwargs

    h = inspect_handler(handler, "H")
    assert h.call(h.payload.from_json(b'{"a": [1]}'), "WS", "SV", "DB") == {
        "a": [1],
        "ws": "WS",
        "sv": "SV",
        "db": "DB",
    }


def test_async_and_async_callable_objects() -> None:
    async def f() -> None: ...

    class Callable:
        async def __call__(self) -> None: ...

    assert inspect_handler(f, "f").is_async
    assert inspect_handler(Callable(), "c").is_async


def test_defaults_and_optional_fields() -> None:
    def handler(text: str, times: int = 2, note: str | None = None) -> Any: ...

    h = inspect_handler(handler, "H")
    assert h.payload.from_json(b'{"text": "a"}') == {"text": "a", "times": 2, "note": None}
    assert h.payload.from_json(b'{"text": "a", "note": "n"}')["note"] == "n"


def test_null_payload_means_no_fields() -> None:
    h = inspect_handler(lambda: 1, "H")
    assert h.payload.from_json(b"null") == {}
    assert h.payload.from_json(b"{}") == {}
    with pytest.raises(InvalidPayload, match="unknown"):
        h.payload.from_json(b'{"x": 1}')


def test_payload_must_be_an_object() -> None:
    h = inspect_handler(lambda text: text, "H")
    with pytest.raises(InvalidPayload, match="object"):
        h.payload.from_json(b"[1]")


class Point(msgspec.Struct):
    x: float
    y: float


def test_struct_parameter_receives_the_whole_payload() -> None:
    def move(ws: Any, to: Point) -> Any:
        return to

    h = inspect_handler(move, "Move")
    assert h.payload.from_json(b'{"x": 1, "y": 2.5}') == {"to": Point(1.0, 2.5)}
    with pytest.raises(InvalidPayload, match=r"\$\.y"):
        h.payload.from_json(b'{"x": 1, "y": "up"}')


def test_nested_path_in_error() -> None:
    def handler(points: list[Point]) -> Any: ...

    h = inspect_handler(handler, "H")
    with pytest.raises(InvalidPayload, match=r"\$\.points\[1\]\.x"):
        h.payload.from_json(b'{"points": [{"x": 1, "y": 1}, {"x": "a", "y": 1}]}')


def test_from_object_validates_decoded_values() -> None:
    def login(user: str, password: str) -> Any: ...

    h = inspect_handler(login, "Login")
    assert h.payload.from_object({"user": "u", "password": "p"}) == {"user": "u", "password": "p"}
    with pytest.raises(InvalidPayload):
        h.payload.from_object({"user": 1, "password": "p"})
    with pytest.raises(InvalidPayload):
        h.payload.from_object("text")


@pytest.mark.parametrize(
    "source",
    [
        "def f(a, /): ...",
        "def f(*args): ...",
    ],
)
def test_unservable_signatures_fail_at_registration(source: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(RegistrationError, match="H"):
        inspect_handler(namespace["f"], "H")


class Opaque:
    """A plain class: msgspec cannot validate it."""


def test_unsupported_annotation_fails_at_registration() -> None:
    def handler(x: Opaque) -> None: ...

    with pytest.raises(RegistrationError, match="H"):
        inspect_handler(handler, "H")


def test_hooks_cannot_take_payload_parameters() -> None:
    def hook(ws: Any, token: str) -> None: ...

    with pytest.raises(RegistrationError, match="token"):
        inspect_handler(hook, "on_connect", payload=False)
    assert inspect_handler(lambda ws, x=1: None, "ok", payload=False).inject == ("ws",)


@given(st.binary(max_size=100))
def test_any_payload_bytes_validate_or_raise_invalid_payload(data: bytes) -> None:
    def handler(text: str, n: int = 0) -> Any: ...

    h = inspect_handler(handler, "H")
    try:
        kwargs = h.payload.from_json(data)
    except InvalidPayload:
        return
    assert isinstance(kwargs["text"], str) and isinstance(kwargs["n"], int)


def test_resolve_component_names_functions_and_classes() -> None:
    from lexicons import Signal
    from lexicons.handlers import resolve_component

    class Echo(Signal):
        def execute(self, **payload: Any) -> Any:
            return payload

    class Named(Echo):
        name = "Custom"

    class Empty(Signal):
        pass

    def shout() -> None: ...

    assert resolve_component(Echo, Signal, "signal")[0] == "Echo"
    assert resolve_component(Named(), Signal, "signal")[0] == "Custom"
    assert resolve_component(Echo, Signal, "signal", "Given")[0] == "Given"
    assert resolve_component(shout, Signal, "signal") == ("shout", shout)
    with pytest.raises(RegistrationError, match="define execute"):
        resolve_component(Empty, Signal, "signal")
    with pytest.raises(RegistrationError, match="needs a name"):
        resolve_component(functools.partial(print), Signal, "signal")


def test_annotated_constraints_are_enforced() -> None:
    def handler(name: Annotated[str, msgspec.Meta(min_length=2, pattern="^[a-z]+$")]) -> Any: ...

    h = inspect_handler(handler, "H")
    assert h.payload.from_json(b'{"name": "ab"}') == {"name": "ab"}
    with pytest.raises(InvalidPayload, match="length"):
        h.payload.from_json(b'{"name": "a"}')
    with pytest.raises(InvalidPayload, match="regex"):
        h.payload.from_json(b'{"name": "AB"}')


def test_unresolvable_annotations_are_refused_not_ignored() -> None:
    def handler(x: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(RegistrationError, match="cannot resolve"):
        inspect_handler(handler, "H")


def test_partials_and_callable_objects_are_validated() -> None:
    def scaled(factor: int, value: int) -> int:
        return factor * value

    class Doubler:
        def __call__(self, value: int) -> int:
            return 2 * value

    for target in (functools.partial(scaled, 3), Doubler()):
        h = inspect_handler(target, "H")
        with pytest.raises(InvalidPayload, match="int"):
            h.payload.from_json(b'{"value": "x"}')


# --- payloads decoded into Model rows -----------------------------------------------------


class Note(Model):
    text: Annotated[str, msgspec.Meta(min_length=1)]
    stars: int = 0
    tags: list[str] = []


class Draft(Model, client_pk=True):
    text: str = ""


def test_a_model_parameter_receives_a_validated_row_with_a_server_made_pk() -> None:
    def post(ws: Any, note: Note) -> Any:
        return note

    h = inspect_handler(post, "Post")
    first = h.payload.from_json(b'{"text": "hi", "tags": ["a"]}')["note"]
    second = h.payload.from_json(b'{"text": "hi", "tags": ["a"]}')["note"]
    assert type(first) is Note and (first.text, first.stars, first.tags) == ("hi", 0, ["a"])
    assert first.pk != second.pk and len(first.pk) == 36
    assert h.payload.from_object({"text": "x"})["note"].text == "x"  # the header path
    with pytest.raises(InvalidPayload, match=r"Expected `int`, got `str` - at `\$\.stars`"):
        h.payload.from_json(b'{"text": "hi", "stars": "many"}')
    with pytest.raises(InvalidPayload, match=r"length >= 1 - at `\$\.text`"):
        h.payload.from_json(b'{"text": ""}')
    with pytest.raises(InvalidPayload, match=r"unknown field `colour`"):
        h.payload.from_json(b'{"text": "hi", "colour": "red"}')


@pytest.mark.parametrize("pk", [b'"chosen"', b"null", b"1", b'""'])
def test_a_client_sent_pk_is_an_invalid_payload_naming_pk(pk: bytes) -> None:
    def post(note: Note) -> Any: ...

    def several(note: Note, room: str) -> Any: ...

    h = inspect_handler(post, "Post")
    with pytest.raises(InvalidPayload, match=r"`pk` is chosen by the server.* at `\$\.pk`"):
        h.payload.from_json(b'{"text": "hi", "pk": ' + pk + b"}")
    with pytest.raises(InvalidPayload, match="`pk` is chosen by the server"):
        h.payload.from_object({"text": "hi", "pk": "chosen"})
    h = inspect_handler(several, "Several")
    with pytest.raises(InvalidPayload, match="`pk` is chosen by the server"):
        h.payload.from_json(b'{"room": "r", "note": {"text": "hi", "pk": ' + pk + b"}}")


def test_a_model_among_several_parameters_or_optional() -> None:
    def several(note: Note, room: str, extra: Note | None = None) -> Any: ...

    h = inspect_handler(several, "Several")
    kwargs = h.payload.from_json(b'{"room": "r", "note": {"text": "a"}}')
    assert (type(kwargs["note"]), kwargs["room"], kwargs["extra"]) == (Note, "r", None)
    kwargs = h.payload.from_json(b'{"room": "r", "note": {"text": "a"}, "extra": {"text": "b"}}')
    assert kwargs["extra"].text == "b" and kwargs["extra"].pk != kwargs["note"].pk


def test_client_pk_lets_the_client_choose() -> None:
    def save(draft: Draft) -> Any: ...

    def many(drafts: list[Draft]) -> Any: ...

    h = inspect_handler(save, "Save")
    assert h.payload.from_json(b'{"pk": "mine", "text": "t"}')["draft"].pk == "mine"
    assert len(h.payload.from_json(b'{"text": "t"}')["draft"].pk) == 36
    assert inspect_handler(many, "Many").payload.from_json(b'{"drafts": [{"pk": "a"}]}') == {
        "drafts": [Draft(pk="a")]
    }


class Wrapper(msgspec.Struct):
    notes: dict[str, Note]


def test_a_model_hidden_in_a_container_is_refused_at_registration() -> None:
    def listed(notes: list[Note]) -> Any: ...

    def wrapped(box: Wrapper, other: int) -> Any: ...

    for handler in (listed, wrapped):
        with pytest.raises(RegistrationError, match="would let the client choose its pk"):
            inspect_handler(handler, "H")


class _Place(msgspec.Struct):
    x: float
    y: float


def _typed(text: str, count: int = 1, tags: list[str] | None = None) -> None: ...


def _whole(place: _Place) -> None: ...


def _extra(text: str, **rest: Any) -> None: ...


payload_values = (
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-9, 9) | st.text(max_size=4)
)
payloads = (
    st.none()
    | st.lists(payload_values, max_size=2)
    | st.dictionaries(
        st.sampled_from(["text", "count", "tags", "x", "y", "other"]),
        payload_values | st.lists(st.text(max_size=3), max_size=2),
        max_size=4,
    )
)


def _outcome(decode: Any, raw: bytes) -> Any:
    try:
        return decode(raw)
    except InvalidPayload as exc:
        return exc.code


@given(st.sampled_from([_typed, _whole, _extra]), payloads)
def test_a_msgpack_payload_decodes_as_the_same_json_payload_does(func: Any, value: Any) -> None:
    spec = inspect_handler(func, "h").payload
    from_json = _outcome(spec.from_json, msgspec.json.encode(value))
    assert _outcome(spec.from_msgpack, msgspec.msgpack.encode(value)) == from_json


def test_a_malformed_msgpack_payload_is_invalid_payload() -> None:
    spec = inspect_handler(_typed, "h").payload
    with pytest.raises(InvalidPayload):
        spec.from_msgpack(b"\xc1")
