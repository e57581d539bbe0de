"""Handshake headers: find each registered header's value, parse it, run it, ask the gate.

A header is a check that returns a bool. Its value is looked for, in this order, in the
HTTP request headers, a cookie, the ``Sec-WebSocket-Protocol`` offer, and the query
string; names match case-insensitively everywhere. Browsers cannot set WebSocket
headers, so a web page uses one of the last three::

    @app.header
    async def Login(ws, user: str, password: str) -> bool:   # Login: {"user": ..., ...}
        ws.auth = await check_password(user, password)
        return ws.auth is not None

    new WebSocket(url, ["lexicons", "lexicons.Login." + base64url(JSON.stringify(...))])

A header the client did not send counts as ``False`` and is not run; one that raises or
whose payload does not validate counts as ``False`` too. ``gate(results)`` decides.
Credential values never reach a log line or a reason.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec
from websockets.http11 import Request

from .codecs import MSGPACK_SUBPROTOCOL
from .errors import ConfigurationError, InvalidPayload, RegistrationError
from .handlers import Handler, inspect_handler, resolve_component

__all__ = [
    "SUBPROTOCOL",
    "Header",
    "HeaderCall",
    "HeaderOutcome",
    "HeaderRegistry",
    "check_gate",
    "find_value",
    "gate_admits",
    "header_arguments",
    "run_headers",
    "run_headers_now",
    "scrub",
    "request_subprotocol",
    "select_subprotocol",
    "subprotocol_credential",
]

logger = logging.getLogger("lexicons.security")

#: The plain subprotocol a browser offers next to its credentials; the server selects it.
SUBPROTOCOL = "lexicons"
_PREFIX = SUBPROTOCOL + "."
_SELECTABLE = frozenset((SUBPROTOCOL, MSGPACK_SUBPROTOCOL))
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class Header:
    """Class-style handshake check: subclass it and define ``execute``.

    The registered name is the class name, or a ``name`` class attribute. ``execute``
    receives the payload's fields as keyword arguments (``header=`` when the value is
    not a JSON object) and ``ws``, ``sv``, ``db``; it returns whether the check passed::

        class Login(Header):
            def execute(self, ws=None, sv=None, db=None, user: str = "", **kwargs) -> bool:
                return user in db.allowed
    """

    #: The name clients send; defaults to the class name.
    name: str | None = None

    def execute(self, ws: Any = None, sv: Any = None, db: Any = None, **kwargs: Any) -> bool:
        raise NotImplementedError(f"{type(self).__name__}.execute is not defined")

    def send(self, ws: Any, payload: Any) -> Any:
        """Send ``payload`` to the connection being checked (``ws.send``), as the original's
        ``Header.send``: it arrives once the connection is admitted, and never if it is
        refused. Returns what ``ws.send`` returns."""
        return ws.send(payload)


class HeaderRegistry(Mapping[str, Handler]):
    """Headers by name in registration order, which is the order of the gate's list.

    Names must be HTTP tokens (they travel as header, cookie and subprotocol names) and
    are unique ignoring case, since every source matches them ignoring case.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def add(
        self, target: Callable[..., Any] | type[Header] | Header, name: str | None = None
    ) -> Handler:
        """Register a function, a :class:`Header` subclass or a Header instance."""
        name, func = resolve_component(target, Header, "header", name)
        if not _TOKEN.fullmatch(name):
            raise RegistrationError(
                f"header {name!r}: the name must be an HTTP token (ASCII letters, digits "
                "and !#$%&'*+-.^_`|~), since clients send it as a header, cookie or "
                "subprotocol name; pass one: @app.header('Name')"
            )
        for existing in self._handlers:
            if existing.lower() == name.lower():
                raise RegistrationError(
                    f"header {name!r} is already registered as {existing!r} "
                    "(header names match ignoring case)"
                )
        handler = inspect_handler(func, name)
        self._handlers[name] = handler
        return handler

    @property
    def handlers(self) -> tuple[Handler, ...]:
        """The registered headers, in registration order."""
        return tuple(self._handlers.values())

    def __getitem__(self, name: str) -> Handler:
        return self._handlers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)


# --- where a value comes from --------------------------------------------------------------


def _same(a: str, b: str) -> bool:
    """Names compare ignoring ASCII case only (no Unicode folding surprises)."""
    return a == b or (a.isascii() and b.isascii() and a.lower() == b.lower())


def subprotocol_credential(name: str, value: str) -> str:
    """The subprotocol token carrying header ``name`` with ``value``, for browser clients.

    ``"lexicons." + name + "." + base64url(UTF-8 value, no padding)``; offer it together
    with :data:`SUBPROTOCOL`, which the server selects (it never echoes a credential)::

        >>> subprotocol_credential("Login", '{"user":"ada"}')
        'lexicons.Login.eyJ1c2VyIjoiYWRhIn0'

    Raises ``ValueError`` when ``name`` is not an HTTP token or ``value`` is not encodable.
    """
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not an HTTP token")
    encoded = base64.urlsafe_b64encode(value.encode("utf-8")).rstrip(b"=").decode("ascii")
    return f"{_PREFIX}{name}.{encoded}"


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol the server answers: the first offered of :data:`SUBPROTOCOL` and
    ``lexicons.msgpack`` (the client then speaks MessagePack), else None.

    Never a credential token: those are read from the offer but not selected.
    """
    for token in offered:
        if token in _SELECTABLE:
            return token
    return None


def request_subprotocol(request: Request) -> str | None:
    """The subprotocol :func:`select_subprotocol` answers to this handshake request."""
    return select_subprotocol(_offered(request))


def _from_headers(name: str, request: Request) -> str | None:
    values = request.headers.get_all(name)
    return values[0] if values else None


def _from_cookies(name: str, request: Request) -> str | None:
    # A tolerant split: SimpleCookie drops every cookie after one it cannot parse.
    for header in request.headers.get_all("Cookie"):
        for pair in header.split(";"):
            key, equals, value = pair.partition("=")
            if not equals or not _same(key.strip(), name):
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            # document.cookie writers percent-encode (encodeURIComponent); "+" stays "+".
            return unquote(value)
    return None


def _offered(request: Request) -> list[str]:
    headers = request.headers.get_all("Sec-WebSocket-Protocol")
    if not headers:  # most clients offer none
        return []
    return [token.strip() for header in headers for token in header.split(",") if token.strip()]


def _from_subprotocols(name: str, request: Request) -> str | None:
    for token in _offered(request):
        if not token[: len(_PREFIX)].lower() == _PREFIX:
            continue
        key, dot, encoded = token[len(_PREFIX) :].rpartition(".")
        if not dot or not _same(key, name):
            continue
        value = _decode_base64url(encoded)
        if value is not None:
            return value
    return None


def _decode_base64url(encoded: str) -> str | None:
    if not _BASE64URL.fullmatch(encoded) or len(encoded) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return data.decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _from_query(name: str, request: Request) -> str | None:
    _, question, query = request.path.partition("?")
    if not question:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if _same(key, name):
            return value
    return None


_SOURCES = (_from_headers, _from_cookies, _from_subprotocols, _from_query)


def find_value(name: str, request: Request) -> str | None:
    """The value the client sent for header ``name``, or None when it sent none.

    Looked for, in order, in: the HTTP headers; a cookie (percent-decoded); a
    ``lexicons.<name>.<base64url>`` subprotocol token (undecodable tokens are skipped);
    the query string (URL-decoded, first match). Names match ignoring case. Never raises
    on client input.
    """
    for source in _SOURCES:
        try:
            value = source(name, request)
        except Exception:  # a malformed source gives no value; the next one may
            value = None
        if value is not None:
            return value
    return None


# --- parsing and running ---------------------------------------------------------------------


def _decode_json(raw: str) -> tuple[bool, Any]:
    try:
        return True, msgspec.json.decode(raw)
    except Exception:  # not JSON, too deep, unencodable text: all mean "raw text"
        return False, None


def header_arguments(raw: str, handler: Handler) -> dict[str, Any]:
    """Keyword arguments for a header function from the raw value the client sent.

    A JSON object is validated against the function's parameters; anything else (a JSON
    string or number, text that is not JSON) is passed as ``header=<raw text>``, also
    validated, so a function without a ``header`` parameter refuses it. Raises
    :class:`~lexicons.errors.InvalidPayload` and nothing else.
    """
    # Only an object becomes keyword arguments; a token-like value skips the decoder and
    # the exception it would raise (JSON allows only these whitespace characters first).
    is_json, decoded = _decode_json(raw) if raw.lstrip(" \t\r\n")[:1] == "{" else (False, None)
    payload = decoded if is_json and isinstance(decoded, dict) else {"header": raw}
    try:
        return handler.payload.from_object(payload)
    except InvalidPayload:
        raise
    except Exception as exc:  # e.g. RecursionError on absurd nesting
        raise InvalidPayload(f"cannot validate: {type(exc).__name__}") from None


class HeaderOutcome(msgspec.Struct, frozen=True):
    """What one registered header gave at a handshake, in registration order.

    ``reason`` explains a ``False`` for logs and debug 403 bodies; it never contains the
    value the client sent.
    """

    name: str
    passed: bool
    reason: str | None = None
    #: Whether the client sent a value (a header not sent is not run).
    sent: bool = False


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_ENUM = re.compile(r"(Invalid (?:enum )?value) \S+")
_MAX_REASON = 200


def _secrets(raw: str, keep: Iterable[str]) -> list[str]:
    """The raw value and every string, key and number inside it, longest first.

    Names in ``keep`` (the function's own parameter names) are not secrets.
    """
    found = {raw}
    is_json, decoded = _decode_json(raw)
    stack = [decoded] if is_json else []
    while stack and len(found) < 256:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            found.add(str(item))
    found.difference_update(keep)
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(message: str, raw: str | None, keep: Iterable[str] = ()) -> str:
    """A message safe for logs: quoted text, enum values and the client's value hidden.

    Exception and validation messages often quote what they were given (``int('x')``,
    ``Invalid enum value 'x'``), so quoted segments go first; then every piece of the
    raw value still present, except the names in ``keep``. Control characters are
    escaped (no forged log lines), and the result is at most 200 characters.
    """
    text = _ENUM.sub(r"\1 ***", _QUOTED.sub("'***'", message))
    if raw is not None:
        for secret in _secrets(raw, keep):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
            else:
                text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", "***", text)
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _parameters(handler: Handler) -> set[str]:
    """The function's parameter names: safe to show, they are the server's own words."""
    try:
        return {"header", *inspect.signature(handler.func).parameters}
    except (TypeError, ValueError):
        return {"header"}


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" at {last.filename}:{last.lineno} in {last.name}"


#: The network layer's ``call(handler, kwargs)``: runs one header with ws/sv/db injected.
HeaderCall = Callable[[Handler, dict[str, Any]], Any]


async def run_headers(
    handlers: Sequence[Handler], request: Request, call: HeaderCall
) -> list[HeaderOutcome]:
    """Run each registered header the client sent, in order; one outcome per header.

    Not sent: ``False``, not run. Invalid payload: ``False``, not run. Otherwise
    ``call(handler, kwargs)`` runs it (the network layer's ``call`` injects
    ``ws``/``sv``/``db``), an awaitable result is awaited, and the header passes when the
    result is truthy (``bool(result)``, as Python's ``if`` reads it). An exception
    counts as ``False``. Never raises, except for cancellation.
    """
    outcomes = run_headers_now(handlers, request, call)
    if isinstance(outcomes, list):
        return outcomes
    return await outcomes


def run_headers_now(
    handlers: Sequence[Handler], request: Request, call: HeaderCall
) -> list[HeaderOutcome] | Awaitable[list[HeaderOutcome]]:
    """:func:`run_headers` without a coroutine while every header answers synchronously.

    Returns the outcomes directly, or, from the first header whose result is awaitable
    on, an awaitable of them. The network layer uses it to admit without a task.
    """
    outcomes: list[HeaderOutcome] = []
    for index, handler in enumerate(handlers):
        outcome = _begin(handler, request, call)
        if not isinstance(outcome, HeaderOutcome):
            return _run_rest(outcome, handlers[index + 1 :], request, call, outcomes)
        outcomes.append(outcome)
    return outcomes


async def _run_rest(
    pending: Awaitable[HeaderOutcome],
    rest: Sequence[Handler],
    request: Request,
    call: HeaderCall,
    outcomes: list[HeaderOutcome],
) -> list[HeaderOutcome]:
    outcomes.append(await pending)
    for handler in rest:
        outcome = _begin(handler, request, call)
        outcomes.append(outcome if isinstance(outcome, HeaderOutcome) else await outcome)
    return outcomes


def _begin(
    handler: Handler, request: Request, call: HeaderCall
) -> HeaderOutcome | Awaitable[HeaderOutcome]:
    """Run one header up to its result: an outcome, or an awaitable one for async headers."""
    name = handler.name
    raw = find_value(name, request)
    if raw is None:
        logger.debug("header %s: not sent", name)
        return HeaderOutcome(name, False, "not sent", sent=False)
    try:
        kwargs = header_arguments(raw, handler)
    except InvalidPayload as exc:
        reason = "invalid payload: " + scrub(exc.message or str(exc), raw, _parameters(handler))
        logger.info("header %s: %s", name, reason)
        return HeaderOutcome(name, False, reason, sent=True)
    try:
        result = call(handler, kwargs)
    except Exception as exc:
        return _raised(handler, raw, exc)
    if _awaitable(result):
        return _finish(handler, raw, result)
    return _judge(handler, raw, result)


def _awaitable(value: object) -> bool:
    """``inspect.isawaitable``, answered at once for the usual bool."""
    return type(value) is not bool and inspect.isawaitable(value)


async def _finish(handler: Handler, raw: str, pending: Awaitable[Any]) -> HeaderOutcome:
    try:
        result = await pending
    except Exception as exc:
        return _raised(handler, raw, exc)
    return _judge(handler, raw, result)


def _judge(handler: Handler, raw: str, result: Any) -> HeaderOutcome:
    try:
        passed = bool(result)
    except Exception as exc:  # a result whose __bool__ raises
        return _raised(handler, raw, exc)
    if not passed:
        reason = "returned False" if result is False else f"returned {type(result).__name__}"
        logger.debug("header %s: %s", handler.name, reason)
        return HeaderOutcome(handler.name, False, reason, sent=True)
    return HeaderOutcome(handler.name, True, None, sent=True)


def _raised(handler: Handler, raw: str, exc: Exception) -> HeaderOutcome:
    reason = f"raised {type(exc).__name__}: {scrub(str(exc), raw, _parameters(handler))}"
    logger.warning("header %s %s%s%s", handler.name, reason, _where(exc), _traceback(exc))
    return HeaderOutcome(handler.name, False, reason, sent=True)


def _traceback(exc: BaseException) -> str:
    """With debug on (this logger at DEBUG): the frames of the header's exception.

    Frames only (file, line, function, source line): the exception's own message may
    quote the credential, so it goes through :func:`scrub` in the reason instead.
    """
    if not logger.isEnabledFor(logging.DEBUG):
        return ""
    return "\nTraceback (most recent call last):\n" + "".join(
        traceback.format_list(traceback.extract_tb(exc.__traceback__))
    ).rstrip("\n")


# --- gate ----------------------------------------------------------------------------------


def check_gate(gate: object) -> Callable[[list[bool]], Any]:
    """Check the ``gate`` setting at start-up: a plain (not async) callable."""
    if not callable(gate):
        raise ConfigurationError(f"gate: {gate!r} is not callable (use all, any or a function)")
    if inspect.iscoroutinefunction(gate) or inspect.iscoroutinefunction(
        getattr(gate, "__call__", None)  # noqa: B004 - callable objects with async __call__
    ):
        raise ConfigurationError("gate: must be a plain function of a list of bools, not async")
    return gate


def gate_admits(
    gate: Callable[[list[bool]], Any], outcomes: Iterable[HeaderOutcome]
) -> tuple[bool, str | None]:
    """``(admitted, reason)``: admitted iff ``gate([passed, ...])`` is truthy.

    The gate gets one bool per registered header, in registration order. A gate that
    raises, or returns something awaitable (an async gate), rejects.
    """
    results = [outcome.passed for outcome in outcomes]
    try:
        verdict = gate(results)
        if _awaitable(verdict):
            if inspect.iscoroutine(verdict):
                verdict.close()  # never awaited otherwise: avoid the RuntimeWarning
            reason = "gate returned an awaitable; the gate must be a plain function"
            logger.warning(reason)
            return False, reason
        admitted = bool(verdict)
    except Exception as exc:
        reason = f"gate raised {type(exc).__name__}: {scrub(str(exc), None)}"
        logger.warning("%s%s", reason, _where(exc))
        return False, reason
    return (True, None) if admitted else (False, f"gate refused {results}")
