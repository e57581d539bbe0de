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
    ChannelContract,
    Contract,
    HeaderContract,
    Schema,
    SignalContract,
)
from .frames import Framework, framework

__all__ = ["SOCKET", "document"]

#: The AsyncAPI channel of the WebSocket connection.
SOCKET = "socket"

_REF = {"description": "the request's `ref`, when it sent one"}


def document(contract: Contract, *, title: str, host: str, protocol: str = "ws") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``contract``, served at ``protocol://host/``."""
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    keys = _Keys()
    own = framework()
    for signal in contract.signals:
        _signal(signal, keys.of(signal.name), own.publication, messages, operations)
    _framework(contract.channels, own, keys, messages, operations)
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
        channels[keys.of(channel.name, "channel.")] = _channel(channel, keys)
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
        "components": {"schemas": {**contract.schemas, **own.schemas}},
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
    signal: SignalContract,
    key: str,
    publication: dict[str, Schema],
    messages: dict[str, Any],
    operations: dict[str, Any],
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
            _frame(name, signal.broadcast, ref=False, extra=publication),
        )
        operations[f"{key}.broadcast"] = {
            "action": "receive",
            "channel": _socket(),
            "summary": f"a broadcast of {name}",
            "messages": [_ref(f"{key}.broadcast")],
        }


def _framework(
    channels: Iterable[ChannelContract],
    own: Framework,
    keys: _Keys,
    messages: dict[str, Any],
    operations: dict[str, Any],
) -> None:
    """The error frame, and the ``$`` requests and notices the channels make possible."""
    for name in _used(list(channels)):
        sends, receives = own.messages[name]
        key = keys.of(name.lstrip("$"), "lexicons.")
        summary = _SUMMARIES[name]
        if sends is None:
            messages[key] = _message(name, summary, _frame(name, receives, ref=name == "Errors"))
            operations[key] = _receive(key, summary)
            continue
        messages[f"{key}.request"] = _message(name, summary, _frame(name, sends, ref=True))
        messages[f"{key}.reply"] = _message(
            name, f"the answer to {name}", _frame(name, receives, ref=True)
        )
        operations[key] = {
            "action": "send",
            "channel": _socket(),
            "summary": summary,
            "messages": [_ref(f"{key}.request")],
            "reply": {"channel": _socket(), "messages": [_ref(f"{key}.reply")]},
        }


_SUMMARIES = {
    "Errors": "the failure of a request, to its sender only",
    "$subscribe": "join a channel, recovering what was missed since a position",
    "$unsubscribe": "leave a channel",
    "$presence": "list the members of a presence channel",
    "$join": "a connection subscribed to a presence channel",
    "$leave": "a connection left a presence channel",
    "$lagged": "publications dropped while this connection lagged",
}


def _used(channels: list[ChannelContract]) -> list[str]:
    """The framework's messages that channels like these make possible."""
    used = ["Errors"]
    if any(channel.joinable for channel in channels):
        used += ["$subscribe", "$unsubscribe"]
    if any(channel.presence for channel in channels):
        used += ["$presence", "$join", "$leave"]
    if any(channel.policy == "drop" or channel.history for channel in channels):
        used.append("$lagged")
    return used


def _receive(key: str, summary: str) -> dict[str, Any]:
    return {"action": "receive", "channel": _socket(), "summary": summary, "messages": [_ref(key)]}


def _channel(channel: ChannelContract, keys: _Keys) -> dict[str, Any]:
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
    notices = [name[1:] for name in _used([channel]) if name in ("$join", "$leave", "$lagged")]
    if notices:
        # The connection's own messages: they arrive there, naming this channel.
        result["messages"] = {name: _ref(keys.of(name, "lexicons.")) for name in notices}
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
