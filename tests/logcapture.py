"""A log capture for hypothesis tests: caplog spans a whole test, not one example."""

from __future__ import annotations

import logging

__all__ = ["Capture"]


class Capture(logging.Handler):
    """Collects every message logged under ``lexicons`` at any level, inside a ``with``::

    with Capture() as lines:
        ...
    assert not [line for line in lines if secret in line]
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> list[str]:
        self._logger = logging.getLogger("lexicons")
        self._level = self._logger.level
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self.lines

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
