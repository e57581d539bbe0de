"""Admit or refuse a handshake: trust, then origin, then headers, then the gate.

The order is the security: an untrusted source or a disallowed browser origin is refused
before any header function runs, so a cookie a browser attached to a cross-site
handshake never reaches application code. The network layer calls :func:`admit` with
the parsed request and answers ``403`` itself when ``allowed`` is false::

    admission = await admit(request, peer=peer, trust=trust, origins=origins,
                            headers=registry.handlers, gate=gate, call=call, secure=tls)
    if not admission.allowed:
        reply(admission.status, admission.detail if expose_errors else admission.reason)

:func:`admit_now` is the same check without a coroutine while every header answers
synchronously: it returns the :class:`Admission`, or an awaitable once a header is async.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypedDict

import msgspec
from typing_extensions import Unpack
from websockets.http11 import Request

from .handlers import Handler
from .headers import HeaderCall, HeaderOutcome, gate_admits, run_headers_now
from .security import Origins, Trust, redact

__all__ = ["Admission", "Checks", "admit", "admit_now"]

logger = logging.getLogger("lexicons.security")

#: ``Admission.status`` of an admitted handshake (the upgrade goes ahead).
SWITCHING_PROTOCOLS = 101
FORBIDDEN = 403


class Admission(msgspec.Struct, frozen=True):
    """The verdict on one handshake.

    ``reason`` is short; ``detail`` adds each header's reason, for logs and, with
    ``expose_errors``, for the 403 body. Neither holds a credential.
    """

    allowed: bool
    #: 101 when admitted, 403 when refused.
    status: int
    reason: str
    #: The client's address (after the trusted-proxy rule), for logs and the connection.
    address: str
    outcomes: tuple[HeaderOutcome, ...] = ()
    #: Why the gate refused (its result or its exception), when it did.
    gate_reason: str | None = None

    @property
    def detail(self) -> str:
        """``reason`` followed by each failed header's reason and the gate's."""
        parts = [f"{o.name}: {o.reason}" for o in self.outcomes if not o.passed and o.reason]
        if self.gate_reason:
            parts.append(self.gate_reason)
        return f"{self.reason} ({'; '.join(parts)})" if parts else self.reason


def _single(request: Request, name: str) -> tuple[bool, str | None]:
    """``(ok, value)`` of a header that may appear at most once."""
    values = request.headers.get_all(name)
    if len(values) > 1:
        return False, None
    return True, values[0] if values else None


class Checks(TypedDict):
    """What :func:`admit_now` checks a handshake against (its keyword arguments)."""

    #: The socket's remote address (a trusted proxy's, behind one).
    peer: str
    trust: Trust
    origins: Origins
    #: The registered headers, in registration order (the order of the gate's list).
    headers: Sequence[Handler]
    gate: Callable[[list[bool]], Any]
    #: ``call(handler, kwargs)`` runs one header with ``ws``/``sv``/``db`` injected.
    call: HeaderCall
    #: Whether the socket itself is TLS (a ``Host`` without a port then means 443).
    secure: bool


async def admit(request: Request, **checks: Unpack[Checks]) -> Admission:
    """:func:`admit_now`, awaited: the verdict on a handshake, for callers in a coroutine."""
    verdict = admit_now(request, **checks)
    return verdict if isinstance(verdict, Admission) else await verdict


def admit_now(request: Request, **checks: Unpack[Checks]) -> Admission | Awaitable[Admission]:
    """Decide on a handshake: trust -> origin -> headers -> gate, stopping at the first no.

    Returns the :class:`Admission` directly while every header answers synchronously (no
    task at the handshake), otherwise an awaitable of it. Every refusal is logged once,
    with the client's address and the path with its query values hidden: an untrusted
    address at WARNING (visible with ``debug`` off), the others at INFO. Never raises,
    except for cancellation.
    """
    trust, gate, path = checks["trust"], checks["gate"], request.path
    address = trust.client_address(checks["peer"], request.headers)
    if not trust.admits(address):
        logger.warning(
            "refused %s %s: untrusted address; to let it connect, add it to the trust "
            "setting: --trust, LEXICONS_TRUST or Server(trust=[...])",
            address,
            _Redacted(path),
        )
        return Admission(False, FORBIDDEN, "untrusted address", address)

    ok_origin, origin = _single(request, "Origin")
    if not ok_origin:
        logger.info("refused %s %s: several Origin headers", address, _Redacted(path))
        return Admission(False, FORBIDDEN, "origin not allowed", address)
    if origin is not None:
        ok_host, host = _single(request, "Host")  # read only when there is an Origin to match
        origins = checks["origins"]
        if not origins.admits(origin, host if ok_host else None, checks["secure"]):
            _log_origin_refusal(address, path, origin, origins, host if ok_host else None)
            return Admission(False, FORBIDDEN, "origin not allowed", address)

    outcomes = run_headers_now(checks["headers"], request, checks["call"])
    if isinstance(outcomes, list):
        return _decide(gate, outcomes, address, path)
    return _decide_later(gate, outcomes, address, path)


def _log_origin_refusal(
    address: str, path: str, origin: str, origins: Origins, host: str | None
) -> None:
    """Say why a page's origin was refused and which setting allows it: the browser
    shows its user nothing but close code 1006."""
    # Neither value is a credential; ascii() escapes anything that could forge a line.
    if origins.same_origin:
        seen = "no single Host header" if host is None else f"Host {ascii(host)[:120]}"
        why = f"is not this server's own ({seen})"
    else:
        why = "is not in the origins setting"
    logger.info(
        "refused %s %s: origin %s %s; to let pages from it connect, list it in the origins "
        "setting: --origins, LEXICONS_ORIGINS or Server(origins=[...])",
        address,
        _Redacted(path),
        ascii(origin)[:120],
        why,
    )


class _Redacted:
    """A request path shown redacted, computed only if a log line is actually written."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __str__(self) -> str:
        return redact(self.path)


async def _decide_later(
    gate: Callable[[list[bool]], Any],
    pending: Awaitable[list[HeaderOutcome]],
    address: str,
    path: str,
) -> Admission:
    return _decide(gate, await pending, address, path)


def _decide(
    gate: Callable[[list[bool]], Any],
    outcomes: list[HeaderOutcome],
    address: str,
    path: str,
) -> Admission:
    admitted, gate_reason = gate_admits(gate, outcomes)
    if not admitted:
        admission = Admission(
            False, FORBIDDEN, "refused by gate", address, tuple(outcomes), gate_reason
        )
        logger.info("refused %s %s: %s", address, _Redacted(path), admission.detail)
        return admission
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("admitted %s %s", address, _Redacted(path))
    return Admission(True, SWITCHING_PROTOCOLS, "admitted", address, tuple(outcomes))
