"""Inspect user callables once, at registration, and call them with what they ask for.

Every hook, signal, header and task receives ``ws``, ``sv`` and ``db`` by parameter name:
it declares only the ones it wants, and ``**kwargs`` receives all three. Whether the
function is async, which of the three it wants, and how to validate its payload are
worked out here once, so nothing is introspected per message.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

import msgspec
import msgspec.inspect

from .errors import InvalidPayload, RegistrationError
from .store.models import Model

__all__ = ["INJECTED", "Handler", "ModelPayload", "inspect_handler", "resolve_component"]

#: Parameter names filled by the framework rather than by the client's payload.
INJECTED = ("ws", "sv", "db")


@dataclass(frozen=True, slots=True)
class Handler:
    """What lexicons knows about one user callable, found once at registration."""

    func: Callable[..., Any]
    name: str
    is_async: bool
    #: The injected names (``ws``, ``sv``, ``db``) the callable takes.
    inject: tuple[str, ...]
    #: Validates a payload and returns the keyword arguments for ``func``.
    payload: PayloadSpec
    #: The return annotation, resolved; ``inspect.Signature.empty`` when there is none.
    returns: Any = inspect.Signature.empty

    def call(self, kwargs: dict[str, Any], ws: Any, sv: Any, db: Any) -> Any:
        """Call the function with the validated payload plus what it asked to receive.

        Returns whatever the function returns: a value, or an awaitable when it is async.
        """
        for name in self.inject:
            kwargs[name] = ws if name == "ws" else sv if name == "sv" else db
        return self.func(**kwargs)


class PayloadSpec:
    """Turns a payload (a JSON object) into keyword arguments for one callable.

    Parameters other than ``ws``/``sv``/``db`` form the payload. Their annotations are
    checked by msgspec; unannotated ones accept any JSON value. A callable whose only
    payload parameter is annotated with a :class:`msgspec.Struct` receives the whole
    payload decoded into it. Unknown fields are refused unless it takes ``**kwargs``.

    A parameter annotated with a :class:`~lexicons.Model` receives a new row whose
    ``pk`` the server makes: the payload is decoded into a copy of the model without
    ``pk`` (see :class:`ModelPayload`), unless the model says ``client_pk=True``.
    """

    __slots__ = ("_struct", "_whole", "_extra", "_json", "_msgpack", "_models")

    def __init__(
        self,
        owner: str,
        params: list[inspect.Parameter],
        hints: dict[str, Any],
        takes_extra: bool,
    ) -> None:
        self._extra = takes_extra
        self._whole: str | None = None
        #: Parameters decoded through a ModelPayload, turned into rows by ``_kwargs``.
        self._models: dict[str, ModelPayload] = {}
        hints = {name: self._payload_type(owner, name, hints) for name in hints}
        if len(params) == 1 and _is_struct(hints.get(params[0].name)):
            self._whole = params[0].name
            self._struct: type[msgspec.Struct] = hints[params[0].name]
        else:
            fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
            for p in params:
                annotation = hints.get(p.name, Any)
                if p.default is inspect.Parameter.empty:
                    fields.append((p.name, annotation))
                else:
                    fields.append((p.name, annotation, p.default))
            try:
                self._struct = msgspec.defstruct(
                    f"{owner}Payload",
                    fields,
                    kw_only=True,
                    forbid_unknown_fields=not takes_extra,
                )
                _check_types(self._struct)
            except (TypeError, ValueError) as exc:
                raise RegistrationError(
                    f"{owner}: unsupported parameter annotation: {exc}"
                ) from exc
        self._json = msgspec.json.Decoder(self._struct)
        self._msgpack = msgspec.msgpack.Decoder(self._struct)

    @property
    def struct(self) -> type[msgspec.Struct]:
        """The Struct a payload decodes as: its JSON Schema is the payload's."""
        return self._struct

    @property
    def named(self) -> bool:
        """Whether that Struct is the user's own (the one parameter's annotation), not
        one made from the parameters."""
        return self._whole is not None

    @property
    def rows(self) -> tuple[type[msgspec.Struct], ...]:
        """The Structs that new rows of models decode from: a model's fields but ``pk``,
        which the server chooses (see :class:`ModelPayload`)."""
        return tuple(shape.struct for shape in self._models.values())

    @property
    def takes_extra(self) -> bool:
        """Whether fields beyond the declared ones reach the callable (``**kwargs``)."""
        return self._extra

    def from_json(self, raw: bytes | msgspec.Raw) -> dict[str, Any]:
        """Validate a raw JSON payload; ``null`` counts as an empty object."""
        if self._extra:
            # **kwargs: keep the unknown fields too, so decode generically, then check.
            return self.from_object(_decode_any(raw))
        try:
            value = self._json.decode(raw)
        except msgspec.DecodeError as exc:  # includes ValidationError
            # ``null`` is looked for only once decoding failed: copying and stripping
            # every payload first cost 0.3 µs per message.
            if bytes(raw).strip() == b"null":
                return self.from_json(b"{}")
            raise InvalidPayload(str(exc)) from None
        return self._kwargs(value)

    def from_msgpack(self, raw: bytes | msgspec.Raw) -> dict[str, Any]:
        """Validate a raw MessagePack payload, as :meth:`from_json` does JSON; ``nil``
        counts as an empty object."""
        if self._extra:
            return self.from_object(_decode_any(raw, msgspec.msgpack.decode))
        try:
            value = self._msgpack.decode(raw)
        except msgspec.DecodeError as exc:
            if bytes(raw) == _NIL:
                return self.from_msgpack(_EMPTY_MAP)
            raise InvalidPayload(str(exc)) from None
        return self._kwargs(value)

    def from_object(self, obj: Any) -> dict[str, Any]:
        """Validate an already decoded payload (used for handshake header values)."""
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            raise InvalidPayload(f"Expected `object`, got `{type(obj).__name__}`")
        try:
            value = msgspec.convert(obj, self._struct)
        except msgspec.ValidationError as exc:
            raise InvalidPayload(str(exc)) from None
        kwargs = self._kwargs(value)
        if self._extra:
            for key, item in obj.items():
                if key not in kwargs and key not in INJECTED:
                    kwargs[key] = item
        return kwargs

    def _payload_type(self, owner: str, name: str, hints: dict[str, Any]) -> Any:
        """The type a parameter is decoded as: a model's becomes its ModelPayload."""
        annotation = hints[name]
        model, optional = _model_in(annotation)
        if model is None:
            if _nested_model(annotation):
                raise RegistrationError(
                    f"{owner}: parameter {name!r}: a Model inside {annotation!r} would let "
                    "the client choose its pk; annotate a parameter with the model itself, "
                    "or declare the model with client_pk=True"
                )
            return annotation
        if model._client_pk:
            return annotation
        shape = self._models[name] = ModelPayload(owner, model)
        return shape.struct | None if optional else shape.struct

    def _kwargs(self, value: msgspec.Struct) -> dict[str, Any]:
        if self._whole is not None:
            kwargs = {self._whole: value}
        else:
            kwargs = msgspec.structs.asdict(value)  # in C: 0.2 µs, a comprehension took 0.6
        for name, shape in self._models.items():
            if kwargs.get(name) is not None:
                kwargs[name] = shape.row(kwargs[name])
        return kwargs


class ModelPayload:
    """A model's fields without ``pk``, for payloads: the server makes every new row's pk.

    The copy has a ``pk`` field of any type so that a client that sends one gets an
    ``invalid_payload`` error naming it, not msgspec's "unknown field".
    """

    __slots__ = ("model", "struct", "_names")

    def __init__(self, owner: str, model: type[Model]) -> None:
        self.model = model
        try:
            fields = msgspec.structs.fields(model)
        except (NameError, TypeError) as exc:
            raise RegistrationError(
                f"{owner}: cannot read the fields of model {model.__name__}: {exc}"
            ) from exc
        specs: list[tuple[str, Any, Any]] = [("pk", Any, msgspec.field(default=_NO_PK))]
        for field in fields:
            if field.name == "pk":
                continue
            if field.default_factory is not msgspec.NODEFAULT:
                default = msgspec.field(default_factory=field.default_factory)
            elif field.default is not msgspec.NODEFAULT:
                default = msgspec.field(default=field.default)
            else:
                default = msgspec.field()
            specs.append((field.name, field.type, default))
        self.struct = msgspec.defstruct(
            f"{model.__name__}Payload", specs, kw_only=True, forbid_unknown_fields=True
        )
        self._names = tuple(name for name, _, _ in specs[1:])

    def row(self, value: Any) -> Model:
        """The new row for a decoded payload; InvalidPayload when the client sent a pk."""
        if value.pk is not _NO_PK:
            raise InvalidPayload(
                f"`pk` is chosen by the server: leave it out, or declare "
                f"{self.model.__name__} with client_pk=True - at `$.pk`"
            )
        return self.model(**{name: getattr(value, name) for name in self._names})


#: Marks a payload's pk as not sent (no JSON value decodes to it).
_NO_PK: Any = msgspec.UNSET


def _model_in(annotation: Any) -> tuple[type[Model] | None, bool]:
    """``(model, optional)`` when ``annotation`` is a Model or ``Model | None``."""
    if _is_model(annotation):
        return annotation, False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2 and _is_model(rest[0]):
            return rest[0], True
    return None, False


def _nested_model(annotation: Any, seen: frozenset[Any] = frozenset()) -> bool:
    """Whether a Model that would let the client choose its pk hides inside ``annotation``."""
    if _is_model(annotation):
        return not annotation._client_pk
    if annotation in seen:
        return False
    seen = seen | {annotation}
    inner = list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        try:
            inner = [field.type for field in msgspec.structs.fields(annotation)]
        except (NameError, TypeError):
            return False  # msgspec reports an unusable Struct when it builds the decoder
    return any(_nested_model(arg, seen) for arg in inner)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Model)


def _check_types(struct: type[msgspec.Struct]) -> None:
    """Raise TypeError when a field's type is one msgspec cannot decode from JSON."""
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, msgspec.inspect.CustomType):
            raise TypeError(f"type {node.cls.__qualname__!r} cannot be decoded from JSON")
        if id(node) in seen or not isinstance(node, msgspec.inspect.Type):
            return
        seen.add(id(node))
        for value in vars(node).values() if hasattr(node, "__dict__") else _slots(node):
            for item in value if isinstance(value, tuple) else (value,):
                walk(item.type if isinstance(item, msgspec.inspect.Field) else item)

    walk(msgspec.inspect.type_info(struct))


def _slots(node: Any) -> list[Any]:
    return [getattr(node, name) for name in node.__struct_fields__]


_NIL = b"\xc0"
_EMPTY_MAP = b"\x80"


def _decode_any(raw: bytes | msgspec.Raw, decode: Callable[..., Any] = msgspec.json.decode) -> Any:
    try:
        return decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidPayload(str(exc)) from None


def _is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def resolve_component(
    target: Any, base: type, kind: str, name: str | None = None
) -> tuple[str, Callable[..., Any]]:
    """The name and callable of a function, or of a class-style component of ``base``.

    A subclass of ``base`` is instantiated; its ``execute`` is the callable and its name
    is ``name``, else its ``name`` attribute, else the class name. A function is named
    after itself unless ``name`` is given.
    """
    if isinstance(target, type) and issubclass(target, base):
        target = target()
    if isinstance(target, base):
        if getattr(type(target), "execute", None) is getattr(base, "execute", None):
            raise RegistrationError(f"{kind} {type(target).__name__}: define execute()")
        name = name or getattr(target, "name", None) or type(target).__name__
        func: Callable[..., Any] = target.execute  # type: ignore[attr-defined]
    else:
        name = name or getattr(target, "__name__", None)
        func = target
    if not name or not isinstance(name, str):
        raise RegistrationError(f"{kind} {target!r} needs a name")
    return name, func


def inspect_handler(func: Callable[..., Any], name: str, *, payload: bool = True) -> Handler:
    """Inspect ``func`` once: async or not, what to inject, how to validate its payload.

    Raises :class:`RegistrationError` naming ``name`` when the signature cannot be served
    (positional-only or ``*args`` parameters, an annotation msgspec cannot check, or,
    with ``payload=False`` as for hooks and tasks, a required parameter other than
    ``ws``/``sv``/``db``).
    """
    if not callable(func):
        raise RegistrationError(f"{name}: {func!r} is not callable")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"{name}: cannot read the signature: {exc}") from exc
    try:
        hints = get_type_hints(_annotated(func), include_extras=True)  # keep Annotated metadata
    except Exception as exc:
        # Ignoring the annotations would silently drop their validation: refuse instead.
        raise RegistrationError(
            f"{name}: cannot resolve the parameter annotations ({exc}); define the types "
            "they name at module level, or import them there"
        ) from exc
    returns = hints.pop("return", inspect.Signature.empty)
    inject: list[str] = []
    params: list[inspect.Parameter] = []
    takes_extra = False
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            takes_extra = True
        elif p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
            raise RegistrationError(
                f"{name}: parameter {p.name!r} must be passable by keyword "
                "(lexicons calls handlers with keyword arguments)"
            )
        elif p.name in INJECTED:
            inject.append(p.name)
        elif not payload and p.default is p.empty:
            raise RegistrationError(
                f"{name}: lexicons cannot supply parameter {p.name!r}; "
                "it passes only ws, sv and db here"
            )
        else:
            params.append(p)
    if takes_extra:
        inject = list(INJECTED)
    return Handler(
        func=func,
        name=name,
        is_async=_is_async(func),
        inject=tuple(inject),
        payload=PayloadSpec(name, params, hints, takes_extra),
        returns=returns,
    )


def _annotated(func: Callable[..., Any]) -> Callable[..., Any]:
    """The function whose annotations describe ``func``'s parameters."""
    if isinstance(func, functools.partial):
        return _annotated(func.func)
    if inspect.isroutine(func) or isinstance(func, type):
        return func
    return type(func).__call__  # a callable object


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


async def resolve(value: Any) -> Any:
    """Await ``value`` when a handler returned an awaitable; used on the async path."""
    if inspect.isawaitable(value):
        return await value
    return value
