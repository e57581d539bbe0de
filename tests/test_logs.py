"""Logging of the commands: levels from the settings, JSON lines, dict config files."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons import ConfigurationError, Settings
from lexicons.logs import JsonFormatter, configure_logging, load_log_config


@pytest.fixture
def clean_logging() -> Iterator[logging.Logger]:
    """The root logger, restored afterwards with the ``lexicons`` level. pytest adds its
    capture handlers when the test starts: a test that needs a bare root clears it."""
    root, lexicons = logging.getLogger(), logging.getLogger("lexicons")
    saved = list(root.handlers), lexicons.level
    yield root
    root.handlers[:] = saved[0]
    lexicons.setLevel(saved[1])


def record(message: str, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("lexicons", logging.INFO, __file__, 1, message, None, exc_info)  # type: ignore[arg-type]


@given(st.text())
def test_a_json_record_is_one_line_whatever_the_message(message: str) -> None:
    line = JsonFormatter().format(record(message))
    assert "\n" not in line and "\r" not in line
    entry = json.loads(line)
    assert entry["message"] == message
    assert (entry["level"], entry["logger"]) == ("INFO", "lexicons")
    assert entry["time"].endswith("+00:00")


def test_a_json_record_carries_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        entry = json.loads(JsonFormatter().format(record("failed", sys.exc_info())))
    assert (
        entry["exception"].startswith("Traceback") and "RuntimeError: boom" in entry["exception"]
    )


@pytest.mark.parametrize(
    ("settings", "level"),
    [
        (Settings(debug=True), logging.DEBUG),
        (Settings(debug=False), logging.INFO),
        (Settings(debug=True, log_level="WARNING"), logging.WARNING),
        (Settings(debug=False, log_level="error"), logging.ERROR),
    ],
)
def test_the_level_follows_debug_unless_given(
    clean_logging: logging.Logger, settings: Settings, level: int
) -> None:
    configure_logging(settings)
    assert logging.getLogger("lexicons").level == level


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_one_stderr_handler_in_the_chosen_format(
    clean_logging: logging.Logger, log_format: str
) -> None:
    clean_logging.handlers.clear()
    configure_logging(Settings(log_format=log_format))
    (handler,) = clean_logging.handlers
    assert isinstance(handler.formatter, JsonFormatter) is (log_format == "json")


def test_an_app_that_configured_logging_keeps_its_handlers(clean_logging: logging.Logger) -> None:
    mine = logging.NullHandler()
    clean_logging.handlers[:] = [mine]
    configure_logging(Settings(log_format="json"))
    assert clean_logging.handlers == [mine]


def test_a_config_file_replaces_the_handlers(
    clean_logging: logging.Logger, tmp_path: Path
) -> None:
    config = tmp_path / "logging.json"
    config.write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {"j": {"()": "lexicons.logs.JsonFormatter"}},
                "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "j"}},
                "root": {"handlers": ["h"], "level": "WARNING"},
                "disable_existing_loggers": False,
            }
        )
    )
    clean_logging.handlers.clear()
    configure_logging(Settings(log_config=str(config)))
    (handler,) = clean_logging.handlers
    assert isinstance(handler.formatter, JsonFormatter)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", "{not json", "is not valid JSON"),
        ("list.json", "[1, 2]", "must hold a logging dict config"),
        ("bad.yaml", "a: [1", "is not valid YAML"),
    ],
)
def test_a_bad_config_file_names_the_setting_and_the_file(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=f"log_config: '{path}'.*{message}"):
        load_log_config(str(path))


def test_a_config_dictconfig_refuses_names_the_file(
    clean_logging: logging.Logger, tmp_path: Path
) -> None:
    path = tmp_path / "logging.json"
    path.write_text(json.dumps({"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}))
    with pytest.raises(ConfigurationError, match="log_config: .*logging.json"):
        configure_logging(Settings(log_config=str(path)))


def test_yaml_without_pyyaml_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    path = tmp_path / "logging.yml"
    path.write_text("version: 1\n")
    with pytest.raises(ConfigurationError, match=r"needs PyYAML \(pip install pyyaml\)"):
        load_log_config(str(path))
