"""The AsyncAPI 3.0 document of an application.

One AsyncAPI channel is the WebSocket itself (address ``/``): every signal is a ``send``
operation whose reply, when it has one, comes back on it; broadcasts, error frames and
the framework's ``$`` messages are ``receive`` operations. Each declared lexicons channel
(a pattern's placeholders as parameters) is an AsyncAPI channel too, holding the ``$join``,
``$leave`` and ``$lagged`` notices its options imply. Message payloads are whole frames
(``{"say": {...}, "ref": ...}``); the types in them are msgspec's JSON Schema, under
``components.schemas``, in AsyncAPI's draft-07 dialect. The credentials (headers) are
security schemes of the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .._version import __version__
from .contract import (
    ERROR_CODES,
    UNKNOWN,
    ChannelContract,
    Contract,
    HeaderContract,
    Schema,
    SignalContract,
)

__all__ = ["SOCKET", "document"]

#: The AsyncAPI channel of the WebSocket connection.
SOCKET = "socket"

_REF = {"description": "the request's `ref`, when it sent one"}
_CHANNEL_NAME = {"type": "string", "minLength": 1, "maxLength": 256}
_POSITION = {
    "channel": {"type": "string"},
    "epoch": {"type": "string"},
    "offset": {"type": "integer", "minimum": 0},
}


#: A broadcast on a history channel carries the channel and the publication's offset.
_POSITION_OPTIONAL = {
    "channel": {"type": "string", "description": "on a history channel: its name"},
    "offset": {"type": "integer", "minimum": 1, "description": "on a history channel"},
}


def document(contract: Contract, *, title: str, host: str, protocol: str = "ws") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``contract``, served at ``protocol://host/``."""
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    keys = _Keys()
    for signal in contract.signals:
        _signal(signal, keys.of(signal.name), messages, operations)
    _framework(contract.channels, keys, messages, operations)
    channels: dict[str, Any] = {
        SOCKET: {
            "address": "/",
            "title": "the WebSocket connection",
            "description": "JSON text frames both ways (MessagePack in binary frames after "
            "negotiating the `lexicons.msgpack` subprotocol); a client sends "
            '`{"<signal>": {...}, "ref": ...}` or a list of such objects.',
            "messages": messages,
        }
    }
    for channel in contract.channels:
        channels[keys.of(channel.name, "channel.")] = _channel(channel)
    server: dict[str, Any] = {
        "host": host,
        "protocol": protocol,
        "pathname": "/",
        "description": _gate(contract),
    }
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": "0.0.0",
            "description": f"The WebSocket API of {title}, written by lexicons {__version__}.",
        },
        "defaultContentType": "application/json",
        "servers": {"default": server},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": dict(contract.schemas)},
    }
    if contract.headers:
        schemes = {keys.of(h.name, "header."): _scheme(h) for h in contract.headers}
        document["components"]["securitySchemes"] = schemes
        server["security"] = [{"$ref": f"#/components/securitySchemes/{k}"} for k in schemes]
    converted: dict[str, Any] = _draft07(document)
    return converted


def _draft07(node: Any) -> Any:
    """``node`` with msgspec's JSON Schema (draft 2020-12, OpenAPI's discriminator) in
    AsyncAPI's schema dialect, a superset of draft-07: a tuple's ``prefixItems`` become
    ``items`` as a list, and a discriminator the name of its property (the ``anyOf``
    it sits beside holds the variants)."""
    if isinstance(node, list):
        return [_draft07(item) for item in node]
    if not isinstance(node, dict):
        return node
    copy = {key: _draft07(value) for key, value in node.items()}
    found = node.get("discriminator")
    if isinstance(found, dict) and {"propertyName", "mapping"} <= found.keys():
        copy["discriminator"] = found["propertyName"]
    if isinstance(node.get("prefixItems"), list):
        copy["items"] = copy.pop("prefixItems")
        rest = node.get("items", True)
        if rest is not True:
            copy["additionalItems"] = _draft07(rest)
    return copy


class _Keys:
    """Component keys (``[A-Za-z0-9._-]+``) for names that may hold any character,
    distinct from every key given before."""

    def __init__(self) -> None:
        self._given: dict[str, str] = {}
        self._used: set[str] = set()

    def of(self, name: str, prefix: str = "") -> str:
        given = self._given.get(prefix + "\0" + name)
        if given is not None:
            return given
        base = prefix + (re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_")
        key, number = base, 1
        while key in self._used:
            number += 1
            key = f"{base}_{number}"
        self._used.add(key)
        self._given[prefix + "\0" + name] = key
        return key


def _frame(
    name: str, payload: Schema, *, ref: bool, extra: dict[str, Any] | None = None
) -> Schema:
    """The schema of a frame ``{name: payload}``, with its optional ``ref``."""
    properties: dict[str, Any] = {name: payload}
    if ref:
        properties["ref"] = _REF
    properties.update(extra or {})
    return {
        "type": "object",
        "properties": properties,
        "required": [name],
        "additionalProperties": False,
    }


def _message(name: str, summary: str, payload: Schema) -> dict[str, Any]:
    return {"name": name, "title": name, "summary": summary, "payload": payload}


def _ref(key: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{SOCKET}/messages/{key}"}


def _socket() -> dict[str, str]:
    return {"$ref": f"#/channels/{SOCKET}"}


def _signal(
    signal: SignalContract, key: str, messages: dict[str, Any], operations: dict[str, Any]
) -> None:
    name = signal.name
    summary = signal.doc or f"signal {name}"
    messages[f"{key}.request"] = _message(
        name, f"call {name}", _frame(name, signal.payload, ref=True)
    )
    operation: dict[str, Any] = {
        "action": "send",
        "channel": _socket(),
        "summary": summary,
        "messages": [_ref(f"{key}.request")],
    }
    if signal.reply is not None:
        messages[f"{key}.reply"] = _message(
            name,
            f"the reply to {name}" + (" (some requests get none)" if signal.silent else ""),
            _frame(name, signal.reply, ref=True),
        )
        operation["reply"] = {"channel": _socket(), "messages": [_ref(f"{key}.reply")]}
    operations[key] = operation
    if signal.broadcast is not None:
        messages[f"{key}.broadcast"] = _message(
            name,
            f"what {name} broadcasts to a channel's subscribers",
            _frame(name, signal.broadcast, ref=False, extra=_POSITION_OPTIONAL),
        )
        operations[f"{key}.broadcast"] = {
            "action": "receive",
            "channel": _socket(),
            "summary": f"a broadcast of {name}",
            "messages": [_ref(f"{key}.broadcast")],
        }


def _framework(
    channels: Iterable[ChannelContract],
    keys: _Keys,
    messages: dict[str, Any],
    operations: dict[str, Any],
) -> None:
    """The error frame, and the ``$`` requests and notices the channels make possible."""
    error = {
        "type": "object",
        "properties": {
            "signal": {"type": ["string", "null"]},
            "code": {
                "type": "string",
                "description": "lexicons' own codes: "
                + "; ".join(f"`{code}`: {when}" for code, when in ERROR_CODES.items())
                + "; or a handler's SignalError code",
                "examples": list(ERROR_CODES),
            },
            "message": {"type": "string"},
        },
        "required": ["signal", "code", "message"],
    }
    errors = keys.of("Errors", "lexicons.")
    messages[errors] = _message(
        "Errors",
        "the failure of a request, to its sender only",
        _frame("Errors", {"type": "array", "items": error, "minItems": 1}, ref=True),
    )
    operations[errors] = _receive(errors, "errors answered to a request")
    channels = list(channels)
    joinable = any(channel.joinable for channel in channels)
    presence = any(channel.presence for channel in channels)
    requests: dict[str, tuple[Schema, Schema]] = {}
    if joinable:
        requests["$subscribe"] = (
            _object(
                {"channel": _CHANNEL_NAME, "since": _object(_POSITION, ["epoch", "offset"])},
                ["channel"],
            ),
            _object({**_POSITION, "recovered": {"type": "boolean"}}, [*_POSITION, "recovered"]),
        )
        requests["$unsubscribe"] = (_named(), _named())
    if presence:
        member = _object({"pk": {"type": "string"}, "info": UNKNOWN}, ["pk", "info"])
        requests["$presence"] = (
            _named(),
            _object(
                {"channel": {"type": "string"}, "members": {"type": "array", "items": member}},
                ["channel", "members"],
            ),
        )
    for name, (request, reply) in requests.items():
        key = keys.of(name.lstrip("$"), "lexicons.")
        messages[f"{key}.request"] = _message(
            name, f"ask for {name}", _frame(name, request, ref=True)
        )
        messages[f"{key}.reply"] = _message(
            name, f"the answer to {name}", _frame(name, reply, ref=True)
        )
        operations[key] = {
            "action": "send",
            "channel": _socket(),
            "messages": [_ref(f"{key}.request")],
            "reply": {"channel": _socket(), "messages": [_ref(f"{key}.reply")]},
        }
    for name, summary in _notices(channels):
        key = keys.of(name.lstrip("$"), "lexicons.")
        messages[key] = _message(name, summary, _frame(name, _NOTICES[name], ref=False))
        operations[key] = _receive(key, summary)


_NOTICES = {
    "$join": {
        "type": "object",
        "properties": {"channel": {"type": "string"}, "pk": {"type": "string"}, "info": UNKNOWN},
        "required": ["channel", "pk", "info"],
    },
    "$lagged": {
        "type": "object",
        "properties": {"channel": {"type": "string"}, "dropped": {"type": "integer"}},
        "required": ["channel", "dropped"],
    },
}
_NOTICES["$leave"] = _NOTICES["$join"]


def _notices(channels: list[ChannelContract]) -> list[tuple[str, str]]:
    found = []
    if any(channel.presence for channel in channels):
        found.append(("$join", "a connection subscribed to a presence channel"))
        found.append(("$leave", "a connection left a presence channel"))
    if any(channel.policy == "drop" or channel.history for channel in channels):
        found.append(("$lagged", "publications dropped while this connection lagged"))
    return found


def _receive(key: str, summary: str) -> dict[str, Any]:
    return {"action": "receive", "channel": _socket(), "summary": summary, "messages": [_ref(key)]}


def _object(properties: dict[str, Any], required: list[str]) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _named() -> Schema:
    return _object({"channel": _CHANNEL_NAME}, ["channel"])


def _channel(channel: ChannelContract) -> dict[str, Any]:
    notes = ["clients may $subscribe" if channel.joinable else "only server code subscribes"]
    if channel.history is not None:
        count, age = channel.history
        notes.append(f"history of {count} publications" + (f" for {age:g} s" if age else ""))
    if channel.presence:
        notes.append("presence ($join, $leave, $presence)")
    notes.append(f"slow subscribers: {channel.policy}")
    result: dict[str, Any] = {
        "address": channel.name,
        "title": channel.name,
        "description": "A lexicons channel: " + "; ".join(notes) + ". Its broadcasts "
        "arrive on the connection as the messages of the signals that publish to it.",
    }
    if channel.params:
        result["parameters"] = {
            param: {"description": "one or more characters other than `:`"}
            for param in channel.params
        }
    notices = [name for name, _ in _notices([channel])]
    if notices:
        result["messages"] = {
            name.lstrip("$"): _message(name, name, _frame(name, _NOTICES[name], ref=False))
            for name in notices
        }
    return result


def _gate(contract: Contract) -> str:
    if not contract.headers:
        return "Every client is admitted (no credential headers)."
    rule = {
        "all": "every one of them must pass",
        "any": "one of them passing is enough",
        "custom": "the application's gate decides from their results",
    }[contract.gate]
    return (
        "A client sends its credentials as HTTP headers, cookies, a subprotocol offer "
        "(`lexicons.<Name>.<base64url value>` beside `lexicons`) or the query string; "
        f"{rule}."
    )


def _scheme(header: HeaderContract) -> dict[str, Any]:
    kind = "plain text" if header.text else "a JSON object"
    description = (
        f"{header.doc + ' ' if header.doc else ''}The value is {kind}, sent as the HTTP "
        f"header, a cookie or query parameter `{header.name}`, or the subprotocol "
        f"`lexicons.{header.name}.<base64url value>`."
    )
    return {
        "type": "httpApiKey",
        "name": header.name,
        "in": "header",
        "description": description,
        "x-lexicons-value": header.value,
    }
