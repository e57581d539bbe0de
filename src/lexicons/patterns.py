"""Channel name patterns: ``room:{id}`` declares every channel ``room:<something>``.

A placeholder ``{name}`` matches one or more characters other than ``:``; everything
else matches itself. Matching returns the placeholders' values, which the channel's
authorization function receives by name::

    >>> ChannelPattern("game:{game}:{team}").match("game:7:red")
    {'game': '7', 'team': 'red'}
"""

from __future__ import annotations

import re

from .errors import RegistrationError
from .handlers import INJECTED

__all__ = ["ChannelPattern", "is_pattern"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def is_pattern(name: str) -> bool:
    """Whether ``name`` holds a placeholder (``{...}``)."""
    return "{" in name or "}" in name


class ChannelPattern:
    """A compiled channel name pattern."""

    __slots__ = ("text", "params", "_regex")

    def __init__(self, text: str) -> None:
        self.text = text
        params: list[str] = []
        parts: list[str] = []
        end = 0
        for found in _PLACEHOLDER.finditer(text):
            param = found.group(1)
            if not param.isidentifier() or param in params or param in (*INJECTED, "channel"):
                raise RegistrationError(
                    f"channel pattern {text!r}: {{{param}}} must be a distinct Python name "
                    "other than ws, sv, db and channel"
                )
            parts.append(self._literal(text[end : found.start()]))
            parts.append(f"(?P<{param}>[^:]+)")
            params.append(param)
            end = found.end()
        parts.append(self._literal(text[end:]))
        self.params = tuple(params)
        self._regex = re.compile("".join(parts))

    def _literal(self, part: str) -> str:
        if "{" in part or "}" in part:
            raise RegistrationError(f"channel pattern {self.text!r}: unbalanced braces")
        return re.escape(part)

    def match(self, name: str) -> dict[str, str] | None:
        """The placeholders' values if ``name`` is one of this pattern's channels."""
        found = self._regex.fullmatch(name)
        return found.groupdict() if found is not None else None

    def __repr__(self) -> str:
        return f"ChannelPattern({self.text!r})"
