"""TypeScript declarations of an application, translated from its JSON Schema.

:func:`declarations` writes one interface or type per named schema and the ``App`` type the
JavaScript client takes (``new Client<App>(url)``), so that a call with a wrong payload
fails to type-check. :func:`ts_type` translates the JSON Schema subset msgspec emits:
``$ref``, ``anyOf``/``oneOf``/``allOf``, ``enum``/``const``, ``type`` (a name or a list),
objects (``properties``, ``required``, ``additionalProperties``), arrays (``items``,
``prefixItems``). Validation keywords (lengths, bounds, patterns) have no TypeScript
equivalent and are dropped. An object with properties is closed unless its
``additionalProperties`` says otherwise: msgspec ignores unknown fields, so a field the
schema does not name is a mistake worth a type error (a payload of a handler with
``**kwargs`` says ``additionalProperties: true`` and gets an index signature).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from .contract import ERROR_CODES, REF_PREFIX, ChannelContract, Contract, Schema, SignalContract

__all__ = ["declarations", "reserved_names", "ts_type"]

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_PRIMITIVES = {"string": "string", "integer": "number", "number": "number"}
_PRIMITIVES |= {"boolean": "boolean", "null": "null"}

#: Names a schema may not take in the declarations: TypeScript's own type names and
#: keywords, and the names this module declares.
_TAKEN = frozenset(
    "App ErrorCode Record Array Promise Date Map Set Object String Number Boolean Symbol "
    "any unknown never string number boolean symbol object bigint undefined null void this "
    "type interface enum class extends implements keyof typeof infer is as in of new "
    "function var let const import export default declare namespace module".split()
)
_INDENT = "  "


def declarations(contract: Contract, *, title: str = "the application") -> str:
    """The ``.d.ts`` text of ``contract``: its named types, ``ErrorCode`` and ``App``."""
    names = reserved_names(contract.schemas)
    lines = [
        f"// TypeScript declarations of {title}, written by `lexicons types`: do not edit.",
        "",
        "/** The codes of error frames: lexicons' own, or a handler's SignalError code. */",
        "export type ErrorCode =",
        *_error_codes(),
    ]
    for name, schema in contract.schemas.items():
        lines += ["", *_declaration(names[name], schema, names)]
    lines += ["", *_app(contract, names)]
    return "\n".join(lines) + "\n"


def reserved_names(schemas: Iterable[str]) -> dict[str, str]:
    """The TypeScript name of each schema name: itself unless TypeScript or this module
    already uses it, else with ``_`` appended until it is free."""
    names: dict[str, str] = {}
    used = set(_TAKEN)
    ordered = sorted(schemas)
    used |= {name for name in ordered if _IDENTIFIER.fullmatch(name)} - _TAKEN
    for name in ordered:
        if name not in _TAKEN and _IDENTIFIER.fullmatch(name):
            names[name] = name
            continue
        free = re.sub(r"[^A-Za-z0-9_$]", "_", name)
        free = free if _IDENTIFIER.fullmatch(free) else "_" + free
        while free in used:
            free += "_"
        used.add(free)
        names[name] = free
    return names


def ts_type(schema: Schema, names: Mapping[str, str], depth: int = 0) -> str:
    """The TypeScript type of a JSON Schema; ``names`` maps schema names to type names."""
    if "$ref" in schema:
        return names[schema["$ref"].removeprefix(REF_PREFIX)]
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return _join(" | ", (ts_type(s, names, depth) for s in schema[union]))
    if "allOf" in schema:
        return _join(" & ", (_wrap(ts_type(s, names, depth)) for s in schema["allOf"]))
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return _join(" | ", (json.dumps(value) for value in schema["enum"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return _join(" | ", (ts_type({**schema, "type": k}, names, depth) for k in kind))
    if kind == "array":
        return _array(schema, names, depth)
    if kind == "object":
        return _object(schema, names, depth)
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    return "unknown"


def _join(separator: str, parts: Iterable[str]) -> str:
    unique = list(dict.fromkeys(parts))
    return separator.join(unique) if unique else "never"


def _wrap(text: str) -> str:
    """``text`` parenthesised when it is a union or intersection at its top level."""
    level = 0
    for index, char in enumerate(text):
        if char in "{[(<":
            level += 1
        elif char in "}])>":
            level -= 1
        elif level == 0 and char in "|&" and text[index - 1] == " ":
            return f"({text})"
    return text


def _array(schema: Schema, names: Mapping[str, str], depth: int) -> str:
    items = schema.get("items")
    prefix = schema.get("prefixItems")
    if prefix is None:
        inner = "unknown" if items in (None, True) else ts_type(items, names, depth)
        return f"{_wrap(inner)}[]"
    least = schema.get("minItems", len(prefix))
    parts = [
        ts_type(item, names, depth) + ("" if index < least else "?")
        for index, item in enumerate(prefix)
    ]
    if items is not False and schema.get("maxItems") != len(prefix):
        rest = "unknown" if items in (None, True) else ts_type(items, names, depth)
        parts.append(f"...{_wrap(rest)}[]")
    return f"[{', '.join(parts)}]"


def _object(schema: Schema, names: Mapping[str, str], depth: int) -> str:
    properties: Mapping[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    if not properties:
        if extra is False:
            return "Record<string, never>"
        value = "unknown" if extra is True else ts_type(extra, names, depth)
        return f"{{ [key: string]: {value} }}"
    members = _members(schema, names, depth + 1)
    if schema.get("additionalProperties", False) is not False:
        # Each declared property must fit the index signature: only unknown does.
        members.append(f"{_INDENT * (depth + 1)}[key: string]: unknown;")
    return "{\n" + "\n".join(members) + "\n" + _INDENT * depth + "}"


def _members(schema: Schema, names: Mapping[str, str], depth: int) -> list[str]:
    required = set(schema.get("required", ()))
    lines = []
    for key, value in schema.get("properties", {}).items():
        lines += _comment(value.get("description", ""), depth)
        optional = "" if key in required else "?"
        lines.append(f"{_INDENT * depth}{_key(key)}{optional}: {ts_type(value, names, depth)};")
    return lines


def _key(key: str) -> str:
    return key if _IDENTIFIER.fullmatch(key) else json.dumps(key)


def _comment(text: str, depth: int) -> list[str]:
    if not text:
        return []
    return [f"{_INDENT * depth}/** {' '.join(text.split()).replace('*/', '* /')} */"]


def _declaration(name: str, schema: Schema, names: Mapping[str, str]) -> list[str]:
    lines = _comment(schema.get("description", ""), 0)
    body = ts_type(schema, names)
    if schema.get("type") == "object" and body.startswith("{\n"):
        return [*lines, f"export interface {name} {body}"]
    return [*lines, f"export type {name} = {body};"]


def _error_codes() -> list[str]:
    codes = [f"{_INDENT}| {json.dumps(code)}" for code in sorted(ERROR_CODES)]
    return [*codes, f"{_INDENT}| (string & {{}});"]


def _app(contract: Contract, names: Mapping[str, str]) -> list[str]:
    """``App``: a type alias, not an interface, so that it meets the client's ``AppTypes``
    index signatures."""
    signals = [_signal(signal, names) for signal in contract.signals]
    messages = [
        f"{_INDENT * 2}{_key(signal.name)}: {message};"
        for signal in contract.signals
        if (message := _message(signal, names)) is not None
    ]
    # Hooks and handlers may send any other name (ws.send, sv.broadcast): unknown payloads.
    messages.append(f"{_INDENT * 2}[message: string]: unknown;")
    channels = [_channel(channel) for channel in contract.channels if channel.joinable]
    return [
        "/** The signals, messages and joinable channels, for `new Client<App>(url)`. */",
        "export type App = {",
        f"{_INDENT}signals: {_block(signals)};",
        f"{_INDENT}messages: {_block(messages)};",
        f"{_INDENT}channels: {_block(channels)};",
        "};",
    ]


def _block(lines: list[str]) -> str:
    return ("{\n" + "\n".join(lines) + f"\n{_INDENT}}}") if lines else "{}"


def _signal(signal: SignalContract, names: Mapping[str, str]) -> str:
    payload = ts_type(signal.payload, names, 3)
    if signal.reply is None:
        reply = "null"
    else:
        reply = ts_type(signal.reply, names, 3)
        if signal.silent and reply != "unknown":
            reply += " | null"
    return "\n".join(
        [
            *_comment(signal.doc, 2),
            f"{_INDENT * 2}{_key(signal.name)}: {{",
            f"{_INDENT * 3}payload: {payload};",
            f"{_INDENT * 3}reply: {reply};",
            f"{_INDENT * 2}}};",
        ]
    )


def _message(signal: SignalContract, names: Mapping[str, str]) -> str | None:
    """What a client receives under a signal's name: its replies and its broadcasts."""
    kinds = [kind for kind in (signal.reply, signal.broadcast) if kind is not None]
    if not kinds:
        return None
    return _join(" | ", (ts_type(kind, names, 2) for kind in kinds))


def _channel(channel: ChannelContract) -> str:
    if not channel.params:
        return f"{_INDENT * 2}{_key(channel.name)}: unknown;"
    template = re.sub(r"\{[^{}]*\}", "\0", channel.name)
    literal = "${string}".join(
        part.replace("\\", "\\\\").replace("`", "\\`").replace("$", "\\$")
        for part in template.split("\0")
    )
    return f"{_INDENT * 2}[channel: `{literal}`]: unknown;"
