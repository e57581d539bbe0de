"""Models: the base class, primary keys, field analysis and registration errors."""

from __future__ import annotations

import re
import sys
import types
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Optional

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lexicons.errors import IntegrityError, RegistrationError, SchemaError
from lexicons.store import models
from lexicons.store.database import Database
from lexicons.store.models import Index, Model, Ref, Reference, analyze, new_pk


class Author(Model):
    email: Annotated[str, Index]
    name: str = ""


class Everything(Model):
    text: str = ""
    number: int = 0
    ratio: float = 0.0
    flag: bool = False
    when: datetime | None = None
    items: list = []  # msgspec copies empty defaults per row
    mapping: dict = {}
    bag: set = set()
    ints: list[int] = []
    scores: dict[str, float] = {}
    tags: set[str] = set()
    nested: dict[int, list[float | None]] = {}
    maybe: Optional[str] = None  # noqa: UP045 - the typing form must work too
    author: Ref[Author] | None = None
    authors: list[Ref[Author]] = []
    by_role: dict[str, Ref[Author]] = {}
    ranked: Annotated[int, Index] = 0


def schema_of(cls: type[Model]) -> models.Schema:
    return analyze(cls, {"Author": Author})


# --- the base class -------------------------------------------------------------------


def test_pk_is_a_uuid4_made_when_not_given() -> None:
    row = Author(email="a@b")
    assert uuid.UUID(row.pk).version == 4 and str(uuid.UUID(row.pk)) == row.pk
    assert Author(email="a@b", pk="mine").pk == "mine"


def test_new_pk_is_unique_and_well_formed() -> None:
    keys = [new_pk() for _ in range(5000)]  # several batches
    assert len(set(keys)) == len(keys)
    assert all(uuid.UUID(k).version == 4 and uuid.UUID(k).variant == uuid.RFC_4122 for k in keys)


def test_a_forked_child_does_not_reuse_the_parents_keys() -> None:
    new_pk()
    waiting = list(models._batch)  # what this process would hand out next
    models._forget_batch()  # what os.register_at_fork runs in a child
    assert new_pk() not in waiting


def test_fields_are_read_only_and_underscore_attributes_are_model_logic() -> None:
    class Counter(Model):
        name: str = ""
        _calls = 0
        LIMIT: ClassVar[int] = 3

        def bump(self) -> int:
            self._calls += 1
            return self._calls

        @property
        def shout(self) -> str:
            return self.name.upper()

    row = Counter(name="x")
    assert (row.bump(), row.bump(), row.shout) == (2 - 1, 2, "X")
    with pytest.raises(AttributeError, match=r"Counter\.name is read-only.*db\.update"):
        row.name = "y"
    with pytest.raises(AttributeError, match="cannot be deleted"):
        del row.name
    del row._calls
    assert row._calls == 0
    assert set(schema_of(Counter).fields) == {"name", "pk"}
    assert msgspec.json.decode(msgspec.json.encode(row)) == {"name": "x", "pk": row.pk}


def test_ref_is_a_str_annotated_with_its_target() -> None:
    hint = Ref[Author]
    assert hint.__origin__ is str and hint.__metadata__ == (Reference(Author),)
    assert Ref["Later"].__metadata__ == (Reference("Later"),)
    assert Reference(Author).name == "Author" and Reference("Later").name == "Later"


# --- field analysis -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "label", "scalar", "ref", "kind", "optional", "indexed"),
    [
        ("text", "str", str, None, "", False, False),
        ("number", "int", int, None, "", False, False),
        ("ratio", "float", float, None, "", False, False),
        ("flag", "bool", bool, None, "", False, False),
        ("when", "datetime | None", datetime, None, "", True, False),
        ("items", "list", None, None, "", False, False),
        ("mapping", "dict", None, None, "", False, False),
        ("bag", "set", None, None, "", False, False),
        ("ints", "list[int]", None, None, "", False, False),
        ("scores", "dict[str, float]", None, None, "", False, False),
        ("tags", "set[str]", None, None, "", False, False),
        ("nested", "dict[int, list[float | None]]", None, None, "", False, False),
        ("maybe", "str | None", str, None, "", True, False),
        ("author", "Ref[Author] | None", str, "Author", "one", True, False),
        ("authors", "list[Ref[Author]]", None, "Author", "list", False, False),
        ("by_role", "dict[str, Ref[Author]]", None, "Author", "dict", False, False),
        ("ranked", "int", int, None, "", False, True),
        ("pk", "str", str, None, "", False, False),
    ],
)
def test_every_supported_field_type(
    name: str,
    label: str,
    scalar: type | None,
    ref: str | None,
    kind: str,
    optional: bool,
    indexed: bool,
) -> None:
    info = schema_of(Everything).fields[name]
    assert (info.label, info.scalar, info.ref, info.ref_kind) == (label, scalar, ref, kind)
    assert (info.optional, info.indexed, info.orderable) == (optional, indexed, scalar is not None)


def test_an_indexed_reference_and_an_index_inside_optional() -> None:
    class Post(Model):
        author: Annotated[Ref[Author], Index]
        editor: Annotated[Ref[Author] | None, Index] = None
        reviewer: Annotated[Ref[Author], Index] | None = None

    fields = schema_of(Post).fields
    assert all(fields[n].indexed and fields[n].ref == "Author" for n in ("author", "editor"))
    assert fields["reviewer"].indexed and fields["reviewer"].optional


class _Tuple(Model):
    pair: tuple[int, int] = (0, 0)


class _Union(Model):
    either: int | str = 0


class _Bare(Model):
    author: Author | None = None


class _Deep(Model):
    nested: list[list[Ref[Author]]] = []


class _SetOfLists(Model):
    bag: set[frozenset[int]] = set()


class _FloatKeys(Model):
    table: dict[float, int] = {}


class _IndexedList(Model):
    tags: Annotated[list[str], Index] = []


class _BadDefault(Model):
    count: int = "none"  # type: ignore[assignment]


class _InfiniteDefault(Model):
    ratio: float = float("inf")


class _Underscore(Model):
    _secret: int = 0


class _DoubleUnderscore(Model):
    a__b: int = 0


class _IntPk(Model):
    pk: int = 0  # type: ignore[assignment]


class _Any(Model):
    anything: Any = None


class _IntKeyRefs(Model):
    by_id: dict[int, Ref[Author]] = {}


@pytest.mark.parametrize(
    ("model", "field", "words"),
    [
        (_Tuple, "pair", "unsupported type"),
        (_Union, "either", "unsupported type int | str"),
        (_Bare, "author", "Ref[Author]"),
        (_Deep, "nested", "references may only be"),
        (_SetOfLists, "bag", "set items"),
        (_FloatKeys, "table", "dict keys"),
        (_IndexedList, "tags", "can be indexed"),
        (_BadDefault, "count", "default"),
        (_InfiniteDefault, "ratio", "finite"),
        (_Underscore, "_secret", "model logic"),
        (_DoubleUnderscore, "a__b", "'__'"),
        (_IntPk, "pk", "primary key"),
        (_Any, "anything", "unsupported type"),
        (_IntKeyRefs, "by_id", "str keys"),
    ],
)
def test_a_field_that_cannot_be_stored_fails_naming_model_and_field(
    model: type[Model], field: str, words: str
) -> None:
    with pytest.raises(SchemaError, match=rf"^{model.__name__}\.{field}: .*{re.escape(words)}"):
        schema_of(model)
    with pytest.raises(SchemaError, match=rf"{model.__name__}\.{field}"):
        Database([Author, model])


# --- registration ---------------------------------------------------------------------


def test_registration_by_class_and_duplicate_names() -> None:
    db = Database([Author])
    assert db.add_model(Author) is Author  # the same class again is a no-op
    assert dict(db.models) == {"Author": Author}

    def other() -> type[Model]:
        class Author(Model):
            email: str = ""

        return Author

    with pytest.raises(RegistrationError, match=r"two models named 'Author'.*test_models\.Author"):
        db.add_model(other())
    with pytest.raises(RegistrationError, match="not a lexicons Model"):
        db.add_model(dict)  # type: ignore[type-var]
    with pytest.raises(RegistrationError, match="not a lexicons Model"):
        db.add_model(Model)


class Node(Model):
    parent: Ref[Node] | None = None
    sibling: Ref["Later"] | None = None  # noqa: UP037 - a forward reference by name


class Later(Model):
    node: Ref[Node] | None = None


def test_references_may_name_models_registered_later() -> None:
    db = Database([Node])
    with pytest.raises(SchemaError, match=r"Node\.sibling: references Later, which is not"):
        db.open()
    db.add_model(Later)
    db.open()
    node = db.create(Node)
    later = db.create(Later, node=node)
    assert db.create(Node, parent=node, sibling=later).sibling == later.pk


def test_an_annotation_naming_a_class_defined_later_waits_for_open() -> None:
    module = types.ModuleType("later_models")
    module.__dict__.update(Model=Model, Ref=Ref)
    sys.modules[module.__name__] = module
    try:
        code = "from __future__ import annotations\nclass Orphan(Model):\n    friend: Ref[Pal]\n"
        exec(code, module.__dict__)
        db = Database([module.Orphan])  # like @app.model above the class it names
        with pytest.raises(SchemaError, match=r"Orphan\.friend: name 'Pal' is not defined"):
            db.open()
        exec("class Pal(Model):\n    name: str = ''\n", module.__dict__)
        db.add_model(module.Pal)
        db.open()
        pal = db.create("Pal", name="p")
        assert db.create("Orphan", friend=pal).friend == pal.pk
    finally:
        del sys.modules[module.__name__]


# --- building rows --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"number": "3"}, r"Everything\.number: expected int, got str"),
        ({"number": True}, r"Everything\.number: expected int, got bool"),
        ({"ratio": "x"}, r"Everything\.ratio: expected float, got str"),
        ({"ratio": float("nan")}, r"Everything\.ratio: nan cannot be stored"),
        (
            {"ints": [1, "2"]},
            r"Everything\.ints: expected list\[int\], got list "
            r"\(Expected `int`, got `str` - at `\$\[1\]`\)",
        ),
        ({"nested": {1: [float("inf")]}}, r"Everything\.nested: inf cannot be stored"),
        ({"mapping": {1: "x"}}, r"Everything\.mapping: untyped dict keys must be str"),
        ({"items": [(1, 2)]}, r"Everything\.items: tuple values cannot be stored"),
        ({"when": "2024-01-01"}, r"Everything\.when: expected datetime \| None, got str"),
        ({"author": 5}, r"Everything\.author: expected Ref\[Author\] \| None, got int"),
        ({"colour": "red"}, r"Everything has no field colour"),
        ({"pk": ""}, r"Everything\.pk: expected a non-empty str"),
    ],
)
def test_build_rejects_a_wrong_value_naming_model_field_and_types(
    values: dict[str, Any], expected: str
) -> None:
    with pytest.raises(IntegrityError, match=expected):
        schema_of(Everything).build(values)


def test_build_fills_defaults_and_accepts_rows_for_references() -> None:
    author = Author(email="a@b")
    row = schema_of(Everything).build(
        {"author": author, "authors": [author, "x"], "by_role": {"lead": author}, "ratio": 2}
    )
    assert (row.author, row.authors, row.by_role) == (
        author.pk,
        [author.pk, "x"],
        {"lead": author.pk},
    )
    assert row.ratio == 2.0 and type(row.ratio) is float and row.items == [] and row.maybe is None


def test_a_missing_required_field_is_named() -> None:
    with pytest.raises(IntegrityError, match=r"Author\.email: a value is required"):
        schema_of(Author).build({})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
values = {
    "text": st.text(),
    "number": st.integers(),
    "ratio": st.floats(allow_nan=False, allow_infinity=False),
    "flag": st.booleans(),
    "when": st.none() | st.datetimes(timezones=st.none() | st.just(UTC)),
    "items": st.lists(json_values, max_size=3),
    "mapping": st.dictionaries(st.text(), json_values, max_size=3),
    "ints": st.lists(st.integers(), max_size=3),
    "scores": st.dictionaries(st.text(), st.floats(allow_nan=False, allow_infinity=False)),
    "tags": st.sets(st.text(), max_size=3),
}
anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(),
    st.lists(st.integers() | st.text(), max_size=2), st.tuples(st.integers()),
    st.dictionaries(st.integers() | st.text(), st.integers(), max_size=2),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({}, optional=values))
def test_any_valid_values_build_a_row_holding_them(given: dict[str, Any]) -> None:
    row = schema_of(Everything).build(dict(given))
    for name, value in given.items():
        assert getattr(row, name) == value


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(values)), anything)
def test_any_value_either_builds_a_row_that_round_trips_or_raises(name: str, value: Any) -> None:
    try:
        row = schema_of(Everything).build({name: value})
    except IntegrityError as exc:
        assert str(exc).startswith(f"Everything.{name}: ")
    else:
        assert msgspec.json.decode(msgspec.json.encode(row), type=Everything) == row


# --- written the original's way ---------------------------------------------------------


class Chat(Model):
    sent: int = 0
    body: str  # required, after a field with a default: keyword-only is inherited


class Reply(Chat):
    to: Ref[Chat]  # and again in a subclass of a subclass


def test_a_required_field_may_follow_one_with_a_default() -> None:
    chat = Chat(body="hi")
    assert (chat.sent, chat.body) == (0, "hi")
    assert Reply(body="re", to=chat.pk).to == chat.pk
    assert msgspec.convert({"body": "x"}, Chat).sent == 0
    with pytest.raises(TypeError):
        Chat("positional")  # type: ignore[misc]
    with pytest.raises(IntegrityError, match=r"Chat\.body: a value is required"):
        Database([Chat]).create(Chat, sent=1)


def test_the_original_underscore_helpers() -> None:
    chat = Chat(body="hi", sent=3)
    assert chat._to_dict() == {"pk": chat.pk, "sent": 3, "body": "hi"}
    assert list(chat._to_dict()) == chat._fields() == ["pk", "sent", "body"]
    assert Reply._fields() == ["pk", "sent", "body", "to"]
    assert (chat._name, chat["body"]) == ("Chat", "hi")
    with pytest.raises(KeyError):
        chat["_name"]
    assert (Everything()._snake_name, Author(email="")._snake_name) == ("everything", "author")

    class HTTPChatMessage(Model):
        pass

    assert HTTPChatMessage()._snake_name == "http_chat_message"


def test_to_dict_is_a_copy_that_cannot_change_the_row() -> None:
    row = Everything(ints=[1], scores={"a": 1.0}, tags={"t"}, nested={1: [2.0]})
    copied = row._to_dict()
    copied["ints"].append(2)
    copied["scores"]["b"] = 2.0
    copied["tags"].add("u")
    copied["nested"][1].append(3.0)
    copied["extra"] = True  # as the original example adds a key before sending
    assert (row.ints, row.scores, row.tags, row.nested) == ([1], {"a": 1.0}, {"t"}, {1: [2.0]})


def test_client_pk_is_a_class_option_inherited_by_subclasses() -> None:
    class Draft(Model, client_pk=True):
        text: str = ""

    class Note(Draft):
        pass

    class Closed(Note, client_pk=False):
        pass

    assert (Model._client_pk, Draft._client_pk, Note._client_pk, Closed._client_pk) == (
        False,
        True,
        True,
        False,
    )
    assert "_client_pk" not in Draft.__struct_fields__
