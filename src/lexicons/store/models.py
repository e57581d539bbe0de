"""Models: the typed table schemas of the built-in store, and how their fields are read.

A model is a :class:`msgspec.Struct` with a string primary key ``pk``. Its annotated
fields are the table's columns; everything else (underscore names, methods,
properties) is model logic. Field types are read once, when the model is registered,
into a :class:`Schema` that the database uses to validate writes and plan queries::

    class User(Model):
        email: Annotated[str, Index]        # indexed: equality and ranges do not scan
        name: str = ""

    class Post(Model):
        author: Ref[User]                   # stored as the author's pk
        tags: set[str] = set()
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Generic, TypeVar

import msgspec
from typing_extensions import dataclass_transform

from ..errors import IntegrityError, SchemaError

__all__ = [
    "FieldInfo",
    "Index",
    "Model",
    "Ref",
    "Reference",
    "Schema",
    "analyze",
    "copy_value",
    "new_pk",
]

M = TypeVar("M", bound="Model")

# --- primary keys -------------------------------------------------------------------

# uuid.uuid4() costs ~3.5 µs; formatting random bytes a thousand at a time with strided
# slice copies costs ~0.2 µs per key, for the same version-4 UUID strings. Keys are
# handed out by a C iterator (chain over batches), so taking one costs no Python frame.
_BATCH = 1024
_VERSION = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
_DIGIT_AT = [j + (j >= 8) + (j >= 12) + (j >= 16) + (j >= 20) for j in range(32)]
_batch: list[str] = []


def _next_batch() -> list[str]:
    global _batch
    raw = bytearray(os.urandom(16 * _BATCH))
    raw[6::16] = raw[6::16].translate(_VERSION)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    digits = raw.hex().encode()
    out = bytearray(b"-" * (37 * _BATCH))
    for j, at in enumerate(_DIGIT_AT):
        out[at::37] = digits[j::32]
    out[36::37] = b" " * _BATCH
    _batch = out.decode().split()
    return _batch


def _forget_batch() -> None:
    # A forked worker must not hand out the keys its parent still holds: emptying the
    # list ends the iterator over it, and the next key comes from fresh random bytes.
    _batch.clear()


os.register_at_fork(after_in_child=_forget_batch)

#: Return a new random primary key: a version-4 UUID in its usual 36-character form.
new_pk: Callable[[], str] = itertools.chain.from_iterable(iter(_next_batch, None)).__next__


# --- the model base class --------------------------------------------------------------


class _ModelMeta(msgspec.StructMeta):
    """Makes every model keyword-only, as ``Model`` is, and reads ``client_pk=``.

    msgspec applies ``kw_only`` to the fields of the class that says it, not to those of
    its subclasses: without this a required field after one with a default would fail
    at class definition, as ordinary dataclass rules demand.
    """

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        /,
        *,
        client_pk: bool | None = None,
        **options: Any,
    ) -> Any:
        options.setdefault("kw_only", True)
        cls = super().__new__(mcls, name, bases, namespace, **options)
        if client_pk is not None:
            cls._client_pk = bool(client_pk)  # type: ignore[attr-defined]
        return cls


@dataclass_transform(kw_only_default=True, field_specifiers=(msgspec.field,))
class Model(
    msgspec.Struct, metaclass=_ModelMeta, kw_only=True, dict=True, forbid_unknown_fields=True
):
    """Base class of stored models: a msgspec Struct whose fields are the table's columns.

    ``pk`` is a uuid4 string made when not given. Fields are read-only: ``db.update``
    changes a stored row in place. Underscore attributes stay writable for model logic::

        class User(Model):
            email: str
            name: str = ""

    A handler parameter annotated with a model receives a new, validated row whose
    ``pk`` the server makes; ``class Note(Model, client_pk=True)`` lets clients send it.
    """

    pk: str = msgspec.field(default_factory=new_pk)
    #: Whether a client may choose ``pk`` in a payload decoded into this model.
    _client_pk: ClassVar[bool] = False

    if TYPE_CHECKING:

        def __init_subclass__(cls, *, client_pk: bool = ..., **options: Any) -> None: ...

    def __setattr__(self, name: str, value: Any) -> None:
        if name[:1] == "_":
            self.__dict__[name] = value
            return
        raise AttributeError(
            f"{type(self).__name__}.{name} is read-only: change a stored row with db.update()"
        )

    def __delattr__(self, name: str) -> None:
        if name[:1] == "_":
            del self.__dict__[name]
            return
        raise AttributeError(f"{type(self).__name__}.{name} cannot be deleted")

    # The original framework's model helpers, which its apps call.

    def __getitem__(self, name: str) -> Any:
        """``row["email"]`` is ``row.email`` (for fields only)."""
        if name not in self.__struct_fields__:
            raise KeyError(name)
        return getattr(self, name)

    def _to_dict(self) -> dict[str, Any]:
        """The row as a new dict, ``pk`` first, lists, dicts and sets copied."""
        return {name: copy_value(value) for name, value in msgspec.structs.asdict(self).items()}

    @classmethod
    def _fields(cls) -> list[str]:
        """The field names, ``pk`` first."""
        return list(cls.__struct_fields__)

    @property
    def _name(self) -> str:
        """The model's name: its class name, which is also its table's."""
        return type(self).__name__

    @property
    def _snake_name(self) -> str:
        """The model's name in snake_case: ``ChatMessage`` is ``chat_message``."""
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", self._name).lower()


@dataclass(frozen=True, slots=True)
class Reference:
    """Marks a ``str`` field as holding the pk of a row of ``target`` (a model or its name)."""

    target: type[Model] | str

    @property
    def name(self) -> str:
        """The referenced model's name."""
        return self.target if isinstance(self.target, str) else self.target.__name__


class Ref(str, Generic[M]):
    """A reference to a row of another model, stored as that row's pk.

    ``author: Ref[User]`` is a ``str`` to msgspec and to type checkers; ``db.create`` and
    ``db.update`` also accept the ``User`` itself. A name works for models defined
    later: ``parent: Ref["Node"] | None = None``.
    """

    __slots__ = ()

    if not TYPE_CHECKING:

        def __class_getitem__(cls, target: Any) -> Any:
            if isinstance(target, typing.ForwardRef):
                target = target.__forward_arg__
            return Annotated[str, Reference(target)]


class _IndexMarker:
    """Marks a field as indexed: ``email: Annotated[str, Index]``.

    Equality filters on an indexed field do not scan, and range filters and sorting on it
    use its sorted order.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "Index"


#: Annotate a field with it to index it: ``email: Annotated[str, Index]``.
Index: Final = _IndexMarker()

# --- field analysis --------------------------------------------------------------------

#: Scalar types a field may hold; all are hashable and (within a type) ordered.
SCALARS: Final = (str, int, float, bool, datetime)
_NOTHING: Any = msgspec.NODEFAULT
_convert = msgspec.convert


class _Probe(msgspec.Struct):
    items: list[int] = msgspec.field(default_factory=list)


#: How msgspec keeps a ``default_factory`` in ``__struct_defaults__``.
_FACTORY: Final[type] = type(_Probe.__struct_defaults__[0])


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """What the store knows about one field, read once at registration."""

    name: str
    #: The resolved annotation, as msgspec validates it (references are ``str``).
    type: Any
    #: The type as a person reads it: ``list[Ref[User]] | None``.
    label: str
    optional: bool
    #: ``str``/``int``/``float``/``bool``/``datetime`` for a one-value field, else None.
    scalar: type | None
    #: The referenced model's name, and ``"one"``, ``"list"`` or ``"dict"``.
    ref: str | None
    ref_kind: str
    indexed: bool
    #: Extra check after msgspec's: returns an error text, or None when the value is fine.
    check: Callable[[Any], str | None] | None
    #: Whether the model gives the field no default.
    required: bool = False
    #: The type's empty value ("", 0, [], None...) that ``migrate`` gives a new required
    #: field, as the original did; NOTHING when the type has none (a datetime, a Ref).
    blank: Any = msgspec.NODEFAULT

    @property
    def orderable(self) -> bool:
        """True when values can be compared with ``<`` (sorting, ranges, ``max``)."""
        return self.scalar is not None


@dataclass(slots=True)
class Schema:
    """A model's fields, found once at registration and used by every write and query.

    Every value that enters the store is validated here, the same way on every path:
    msgspec checks types, ``Meta`` constraints and unknown fields, then :meth:`verify`
    adds what msgspec cannot (finite floats, JSON-only untyped containers, a non-empty
    pk). ``create`` and ``get_or_create`` go through :meth:`build`, ``update`` through
    :meth:`value`, and rows read back (``load``, the durable file, ``migrate``) through
    msgspec's decoder and :meth:`verify`.
    """

    name: str
    cls: type[Model]
    fields: dict[str, FieldInfo]
    names: frozenset[str]
    refs: tuple[FieldInfo, ...]
    #: (field, check) for the fields msgspec alone does not fully check.
    checks: tuple[tuple[str, Callable[[Any], str | None]], ...]
    #: One-value float fields, which must be finite (checked inline: the common case).
    floats: tuple[str, ...]
    #: Set a field on a stored row in place, past the read-only guard (used by update).
    setters: dict[str, Callable[[Any, Any], None]]
    #: Fields holding a list, dict or set of plain values (copied by hydrate).
    containers: tuple[str, ...]
    indexed: tuple[str, ...]
    #: Each field's type as msgspec validates it, ``Meta`` constraints included.
    types: dict[str, Any]
    #: Fields whose msgspec message says more than "expected X, got Y": containers and
    #: constrained values.
    detailed: frozenset[str]

    #: ``build(values)``: validate a new row's values and return the row; raises
    #: IntegrityError naming the field. msgspec checks every value in one pass; when it
    #: refuses, :meth:`value` is run field by field to name the culprit (msgspec's
    #: message is never parsed). Compiled for the model (see :func:`_compile_checks`).
    build: Callable[[dict[str, Any]], Model] = field(init=False)
    #: ``verify(row, given=all fields)``: what msgspec cannot check, on the ``given``
    #: fields of a row msgspec built; raises IntegrityError naming the field.
    verify: Callable[..., None] = field(init=False)

    def __post_init__(self) -> None:
        self.build, self.verify = _compile_checks(self)

    def value(self, name: str, value: Any) -> Any:
        """Validate one field's new value (``update``); returns it as stored."""
        info = self.fields.get(name)
        if info is None:
            raise IntegrityError(f"{self.name} has no field {name}")
        if info.ref is not None:
            value = pk_of(value, info.ref_kind)
        try:
            value = _convert(value, self.types[name])
        except msgspec.ValidationError as exc:
            detail = f" ({exc})" if name in self.detailed else ""
            raise IntegrityError(
                f"{self.name}.{name}: expected {info.label}, got {type(value).__name__}{detail}"
            ) from None
        if info.check is not None and (problem := info.check(value)):
            raise IntegrityError(f"{self.name}.{name}: {problem}")
        if name == "pk":
            self._check_pk(value)
        return value

    def _check_pk(self, pk: str) -> None:
        if not pk:  # only a given pk can be empty
            raise IntegrityError(f"{self.name}.pk: expected a non-empty str")

    def _culprit(self, values: Mapping[str, Any], exc: msgspec.ValidationError) -> IntegrityError:
        """The error naming the first field msgspec refused, found by checking each alone."""
        for name in values:
            if name not in self.names:
                return IntegrityError(f"{self.name} has no field {name}")
        for name, info in self.fields.items():
            if name in values:
                try:
                    self.value(name, values[name])
                except IntegrityError as error:
                    return error
            elif info.required:
                return IntegrityError(f"{self.name}.{name}: a value is required")
        return IntegrityError(f"{self.name}: {exc}")  # pragma: no cover - each field passed


def _compile_checks(schema: Schema) -> tuple[Callable[..., Model], Callable[..., None]]:
    """Generate ``build`` and ``verify`` for one model, with its checks written inline.

    Generated source, as query plans are: a create runs one Python function instead of
    a loop over checks and a call per check. Both functions share the same check lines,
    so a new row and a row read back are checked alike. Field names are identifiers
    (checked at registration); the model name and checks are passed as variables.
    """
    checks = []
    for fname in schema.floats:  # inf - inf and nan - nan are nan
        checks.append(
            f"    v = row.{fname}\n"
            f"    if v - v != 0.0 and {fname!r} in given:\n"
            f"        raise IntegrityError(name + '.{fname}: ' + finite(v))\n"
        )
    for fname, _ in schema.checks:
        checks.append(
            f"    if {fname!r} in given and (problem := extra[{fname!r}](row.{fname})):\n"
            f"        raise IntegrityError(name + '.{fname}: ' + problem)\n"
        )
    checks.append(
        "    if not row.pk:  # only a given pk can be empty\n"
        "        raise IntegrityError(name + '.pk: expected a non-empty str')\n"
    )
    refs = "".join(
        f"    if {info.name!r} in values:\n"
        f"        values[{info.name!r}] = pk_of(values[{info.name!r}], {info.ref_kind!r})\n"
        for info in schema.refs
    )
    source = (
        f"def build(values):\n{refs}"
        "    try:\n"
        "        row = convert(values, cls)\n"
        "    except ValidationError as exc:\n"
        "        raise culprit(values, exc) from None\n"
        "    given = values\n"
        f"{''.join(checks)}"
        "    return row\n"
        f"def verify(row, given=names):\n{''.join(checks)}"
    )
    namespace: dict[str, Any] = {
        "IntegrityError": IntegrityError,
        "ValidationError": msgspec.ValidationError,
        "convert": _convert,
        "cls": schema.cls,
        "culprit": schema._culprit,
        "extra": dict(schema.checks),
        "finite": _finite,
        "name": schema.name,
        "names": schema.names,
        "pk_of": pk_of,
    }
    exec(compile(source, f"<lexicons checks of {schema.name}>", "exec"), namespace)
    return namespace["build"], namespace["verify"]


def copy_value(value: Any) -> Any:
    """A copy of a field's value deep enough that changing it cannot change the row."""
    kind = type(value)
    if kind is list:
        return [copy_value(item) for item in value]
    if kind is dict:
        return {key: copy_value(item) for key, item in value.items()}
    if kind is set:
        return set(value)
    return value


def pk_of(value: Any, kind: str) -> Any:
    """Accept rows where pks are expected: a row becomes its pk, in lists and dicts too."""
    if isinstance(value, Model):
        return value.pk
    if kind == "list" and isinstance(value, list):
        return [v.pk if isinstance(v, Model) else v for v in value]
    if kind == "dict" and isinstance(value, dict):
        return {k: v.pk if isinstance(v, Model) else v for k, v in value.items()}
    return value


class Unresolved(Exception):
    """An annotation names something not defined yet; analysis is retried at ``open()``."""

    def __init__(self, field: str, error: Exception) -> None:
        super().__init__(f"{field}: {error}")
        self.field = field


def analyze(cls: type[Model], models: Mapping[str, type[Model]]) -> Schema:
    """Read a model's fields; raises SchemaError naming model and field, or Unresolved."""
    name = cls.__name__
    fields: dict[str, FieldInfo] = {}
    namespace = {**models, name: cls}
    for fname, annotation, default in _declared(cls, namespace):
        where = f"{name}.{fname}"
        if fname[:1] == "_":
            raise SchemaError(
                f"{where}: underscore names are model logic, not fields; leave it "
                "unannotated (_count = 0) or annotate it ClassVar[...]"
            )
        if "__" in fname:
            raise SchemaError(f"{where}: a field name may not contain '__' (used by filters)")
        info = _field(where, fname, annotation, required=default is _NOTHING)
        if fname == "pk" and (info.type is not str):
            raise SchemaError(f"{where}: the primary key must be declared as str")
        if default is not _NOTHING:
            _check_default(where, info, default)
        fields[fname] = info
    try:  # msgspec resolves annotations itself, from the model's module
        msgspec.json.Decoder(cls)
    except NameError as exc:
        raise Unresolved(name, exc) from None
    except TypeError as exc:
        raise SchemaError(f"{name}: msgspec cannot use this model: {exc}") from None
    refs = tuple(f for f in fields.values() if f.ref is not None)
    types = {f.name: f.type for f in msgspec.structs.fields(cls)}
    return Schema(
        name=name,
        cls=cls,
        fields=fields,
        names=frozenset(fields),
        refs=refs,
        checks=tuple((f.name, f.check) for f in fields.values() if f.check not in (None, _finite)),
        floats=tuple(f.name for f in fields.values() if f.check is _finite),
        setters={name: inspect.getattr_static(cls, name).__set__ for name in fields},
        containers=tuple(f.name for f in fields.values() if f.scalar is None and f.ref is None),
        indexed=tuple(f.name for f in fields.values() if f.indexed),
        types=types,
        detailed=frozenset(
            f.name for f in fields.values() if f.scalar is None or _constrained(types[f.name])
        ),
    )


def _constrained(tp: Any) -> bool:
    """Whether a field's type carries ``msgspec.Meta`` constraints (``Annotated[int, ...]``)."""
    if typing.get_origin(tp) is Annotated:
        return any(isinstance(m, msgspec.Meta) for m in tp.__metadata__) or _constrained(
            tp.__origin__
        )
    return any(_constrained(arg) for arg in typing.get_args(tp))


def _declared(cls: type[Model], namespace: dict[str, Any]) -> Iterable[tuple[str, Any, Any]]:
    """Yield (name, resolved annotation, default) for each struct field, one by one."""
    owners: dict[str, type] = {}
    for klass in reversed(cls.__mro__):
        for fname in vars(klass).get("__annotations__", {}):
            owners[fname] = klass
    defaults = dict(
        zip(
            cls.__struct_fields__[len(cls.__struct_fields__) - len(cls.__struct_defaults__) :],
            cls.__struct_defaults__,
            strict=True,
        )
    )
    for fname in cls.__struct_fields__:
        owner = owners[fname]
        raw = vars(owner)["__annotations__"][fname]
        shim = types.SimpleNamespace(__annotations__={fname: raw}, __module__=owner.__module__)
        module = sys.modules.get(owner.__module__)
        globalns = dict(vars(module)) if module else {}
        try:
            hint = typing.get_type_hints(shim, globalns, namespace, include_extras=True)[fname]
        except NameError as exc:
            raise Unresolved(f"{cls.__name__}.{fname}", exc) from None
        except Exception as exc:
            raise SchemaError(
                f"{cls.__name__}.{fname}: cannot read the annotation: {exc}"
            ) from exc
        default = defaults.get(fname, _NOTHING)
        if isinstance(default, _FACTORY):
            default = default.factory()  # type: ignore[attr-defined]
        yield fname, hint, default


def _split(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """Strip ``Annotated`` from a type; return it with the metadata found."""
    if typing.get_origin(tp) is Annotated:
        return tp.__origin__, tuple(tp.__metadata__)
    return tp, ()


def _unoptional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
        raise TypeError("a union of several types is not supported (only X | None)")
    return tp, False


def _reference(tp: Any) -> Reference | None:
    _, meta = _split(tp)
    return next((m for m in meta if isinstance(m, Reference)), None)


def _field(where: str, fname: str, annotation: Any, required: bool = False) -> FieldInfo:
    tp, meta = _split(annotation)
    try:
        inner, optional = _unoptional(tp)
    except TypeError as exc:
        raise SchemaError(f"{where}: {exc}") from None
    inner, meta2 = _split(inner)
    meta = meta + meta2
    indexed = any(m is Index for m in meta)
    ref = next((m for m in meta if isinstance(m, Reference)), None)
    kind, scalar = "", None
    check: Callable[[Any], str | None] | None = None
    if ref is not None:
        kind, scalar, label = "one", str, f"Ref[{ref.name}]"
    elif (origin := typing.get_origin(inner)) is list and (r := _reference(_arg(inner, 0))):
        ref, kind, label = r, "list", f"list[Ref[{r.name}]]"
    elif origin is dict and (r := _reference(_arg(inner, 1))):
        if _arg(inner, 0) is not str:
            raise SchemaError(f"{where}: a dict of references needs str keys")
        ref, kind, label = r, "dict", f"dict[str, Ref[{r.name}]]"
    elif inner in SCALARS:
        scalar, label = inner, inner.__name__
        check = _finite if inner is float else None
    else:
        try:
            label, floats, loose = _value_type(inner)
        except TypeError as exc:
            raise SchemaError(f"{where}: {exc}") from None
        check = _json_value if loose else _finite_deep if floats else None
    if indexed and scalar is None:
        raise SchemaError(f"{where}: only one-value fields ({label}) can be indexed")
    stored: Any = str if ref is not None and kind == "one" else inner
    if ref is not None and kind != "one":
        stored = list[str] if kind == "list" else dict[str, str]
    if optional:
        stored = stored | None
        label = f"{label} | None"
        check = _skip_none(check) if check else None
    target = ref.name if ref is not None else None
    blank = None if optional else _BLANKS.get(kind or scalar or typing.get_origin(inner) or inner)
    return FieldInfo(
        fname,
        stored,
        label,
        optional,
        scalar,
        target,
        kind,
        indexed,
        check,
        required,
        _NOTHING if blank is None and not optional else blank,
    )


#: Empty values by field kind: one reference has none; lists, dicts and sets are copied.
_BLANKS: Final[dict[Any, Any]] = {
    str: "",
    int: 0,
    float: 0.0,
    bool: False,
    list: [],
    dict: {},
    set: set(),
    "list": [],
    "dict": {},
}


def _arg(tp: Any, i: int) -> Any:
    args = typing.get_args(tp)
    return args[i] if len(args) > i else None


def _value_type(tp: Any) -> tuple[str, bool, bool]:
    """Check a type nested in a container; returns (label, holds floats, holds any JSON)."""
    tp, meta = _split(tp)
    if any(isinstance(m, Reference) for m in meta):
        raise TypeError("references may only be a field, a list or a dict of references")
    tp, optional = _unoptional(tp)
    tail = " | None" if optional else ""
    if tp in SCALARS:
        return tp.__name__ + tail, tp is float, False
    if tp in (list, dict, set):
        return tp.__name__ + tail, False, True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, set) and len(args) == 1:
        if origin is set and _unoptional(_split(args[0])[0])[0] not in SCALARS:
            raise TypeError(f"set items must be one of str, int, float, bool, datetime: {tp}")
        label, floats, loose = _value_type(args[0])
        return f"{origin.__name__}[{label}]{tail}", floats, loose
    if origin is dict and len(args) == 2:
        if args[0] not in (str, int):
            raise TypeError(f"dict keys must be str or int: {tp}")
        label, floats, loose = _value_type(args[1])
        return f"dict[{args[0].__name__}, {label}]{tail}", floats, loose
    if isinstance(tp, type) and issubclass(tp, Model):
        raise TypeError(f"declare a reference as Ref[{tp.__name__}] (stored as its pk)")
    raise TypeError(
        f"unsupported type {tp!r}; use str, int, float, bool, datetime, list, dict, set, "
        "their typed forms, X | None, or Ref[Model]"
    )


def _check_default(where: str, info: FieldInfo, default: Any) -> None:
    try:
        msgspec.convert(default, info.type)
    except msgspec.ValidationError as exc:
        raise SchemaError(
            f"{where}: the default {default!r} is not of type {info.label}: {exc}"
        ) from None
    if info.check is not None and (problem := info.check(default)):
        raise SchemaError(f"{where}: the default {default!r}: {problem}")


# --- value checks msgspec does not make (the JSON files must hold every value exactly) -


def _finite(value: float) -> str | None:
    return None if math.isfinite(value) else f"{value!r} cannot be stored (not a finite number)"


def _finite_deep(value: Any) -> str | None:
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        value = value.values()
    if isinstance(value, (list, set, type({}.values()))):
        for item in value:
            if isinstance(item, (float, list, dict, set)) and (problem := _finite_deep(item)):
                return problem
    return None


def _json_value(value: Any) -> str | None:
    """Untyped containers hold JSON: str keys, and no tuples or objects that JSON changes."""
    if value is None or type(value) in (str, int, bool):
        return None
    if type(value) is float:
        return _finite(value)
    if type(value) in (list, set):
        for item in value:
            if problem := _json_value(item):
                return problem
        return None
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                return f"untyped dict keys must be str, got {type(key).__name__}"
            if problem := _json_value(item):
                return problem
        return None
    return f"{type(value).__name__} values cannot be stored in an untyped container"


def _skip_none(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def optional(value: Any) -> str | None:
        return None if value is None else check(value)

    return optional
