"""Logging for the command line: level, format (text or JSON) and dict config files.

``run``, ``shell`` and ``migrate`` configure logging once, from the settings::

    python app.py run --log-level info --log-format json
    python app.py run --log-config logging.json     # logging.config.dictConfig, JSON or YAML

The format does not depend on ``debug``: ``debug`` decides what the server logs (each
connection, signal and broadcast), ``log_level`` what is written. Without a config file,
one handler on stderr serves every logger, so the application's own warnings come out in
the same format; an application that configured logging itself keeps its handlers.
:meth:`Server.serve` leaves logging alone.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .settings import Settings

__all__ = ["TEXT_FORMAT", "JsonFormatter", "configure_logging", "load_log_config"]

#: The text format: the process id tells workers apart.
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, ``pid``, and ``exception`` when a traceback is attached.

    Usable from a dict config too: ``{"()": "lexicons.logs.JsonFormatter"}``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # json escapes newlines, so a message can never forge a second record.
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(settings: Settings) -> None:
    """Set up logging as ``settings`` say: a config file, or one stderr handler."""
    if settings.log_config is not None:
        config = load_log_config(settings.log_config)
        try:
            logging.config.dictConfig(config)
        except (ValueError, TypeError, AttributeError, ImportError) as exc:
            raise ConfigurationError(f"log_config: {settings.log_config!r}: {exc}") from None
    elif not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
        )
        logging.getLogger().addHandler(handler)
    if settings.log_config is None or settings.log_level is not None:
        logging.getLogger("lexicons").setLevel(_level(settings))


def _level(settings: Settings) -> int:
    name = settings.log_level or ("debug" if settings.debug else "info")
    return logging.getLevelNamesMapping()[name.upper()]


def load_log_config(path: str) -> dict[str, Any]:
    """Read a ``logging.config.dictConfig`` dictionary from a JSON or YAML file."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigurationError(f"log_config: cannot read {path!r}: {exc}") from None
    if file.suffix.lower() in (".yaml", ".yml"):
        config = _load_yaml(path, text)
    else:
        try:
            config = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"log_config: {path!r} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigurationError(
            f"log_config: {path!r} must hold a logging dict config (a mapping with "
            f"'version': 1), not {type(config).__name__}"
        )
    return config


def _load_yaml(path: str, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ConfigurationError(
            f"log_config: {path!r} is YAML, which needs PyYAML (pip install pyyaml); "
            "or write the same dictionary as JSON"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"log_config: {path!r} is not valid YAML: {exc}") from None
