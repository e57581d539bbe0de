"""Flags and settings of the commands, and their order of precedence, without serving."""

from __future__ import annotations

import argparse
import errno
import os
import socket
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lexicons import ConfigurationError, Server
from lexicons.commands import FLAGS, _explain, build_parser, settings_for
from lexicons.settings import ENVIRONMENT, Settings


def parse(*argv: str, command: str = "run") -> argparse.Namespace:
    return build_parser("app.py", target=False).parse_args([command, *argv])


def test_every_environment_variable_has_a_flag_of_the_same_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert set(FLAGS) == {name for name, _ in ENVIRONMENT.values()}
    with pytest.raises(SystemExit):
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    for variable, (name, _) in ENVIRONMENT.items():
        assert variable == "LEXICONS_" + name.upper()
        assert "--" + name.replace("_", "-") in text and f"({variable})" in text


def test_shell_and_migrate_take_only_the_flags_that_apply() -> None:
    assert parse("--data", "d", "--log-level", "debug", command="shell").data == "d"
    with pytest.raises(SystemExit):
        parse("--port", "80", command="migrate")


@given(
    layers=st.lists(st.one_of(st.none(), st.integers(0, 65535)), min_size=4, max_size=4),
)
def test_code_then_run_then_environment_then_flags(layers: list[int | None]) -> None:
    """Each source of a setting overrides the one before it."""
    server, run, environment, flag = layers
    app = Server(**({} if server is None else {"port": server}))
    code = {} if run is None else {"port": run}
    environ = {} if environment is None else {"LEXICONS_PORT": str(environment)}
    args = parse() if flag is None else parse("--port", str(flag))
    with mock.patch.dict(os.environ, environ):
        if environment is None:
            os.environ.pop("LEXICONS_PORT", None)
        settings = settings_for(app, args, code)
    given_values = [value for value in layers if value is not None]
    assert settings.port == (given_values[-1] if given_values else 5000)


def test_boolean_flags_turn_settings_on_and_off(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Server()
    assert settings_for(app, parse()).expose_errors is False
    assert settings_for(app, parse("--expose-errors")).expose_errors is True
    monkeypatch.setenv("LEXICONS_EXPOSE_ERRORS", "1")
    assert settings_for(app, parse()).expose_errors is True
    assert settings_for(app, parse("--no-expose-errors")).expose_errors is False


def test_list_flags_are_comma_separated() -> None:
    args = parse("--origins", "https://a.example, http://localhost:3000", "--trust", "10.0.0.0/8")
    settings = settings_for(Server(), args)
    assert settings.origins == ["https://a.example", "http://localhost:3000"]
    assert settings.trust == ["10.0.0.0/8"]


def test_certfile_flag_means_tls_unless_the_protocol_flag_says_otherwise() -> None:
    settings = settings_for(Server(), parse("--certfile", "cert.pem", "--keyfile", "key.pem"))
    assert (settings.protocol, settings.certfile, settings.keyfile) == (
        "wss",
        "cert.pem",
        "key.pem",
    )
    with pytest.raises(ConfigurationError, match="protocol: 'ws' serves without TLS"):
        settings_for(Server(), parse("--certfile", "cert.pem", "--protocol", "ws"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-size", "big"], "max_size: 'big' from --max-size is not a whole number"),
        (["--port", "99999"], "port: '99999' from --port is not a whole number from 0"),
        (["--log-format", "xml"], "log_format: 'xml' is not one of text, json"),
        (["--reload", "--workers", "2"], "reload: .* cannot be combined with workers"),
    ],
)
def test_a_bad_flag_names_its_setting(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings_for(Server(), parse(*argv))


def test_an_unknown_setting_given_to_run_is_named_with_the_closest_one() -> None:
    with pytest.raises(ConfigurationError, match="'prot' is not a setting; did you mean 'port'"):
        settings_for(Server(), parse(), {"prot": 1})
    with pytest.raises(ConfigurationError, match="'zzz' is not a setting$"):
        settings_for(Server(), parse(), {"zzz": 1})


@pytest.mark.parametrize(
    ("error", "settings", "names"),
    [
        (OSError(errno.EADDRINUSE, "address in use"), Settings(port=5000), "port: 5000"),
        (OSError(errno.EADDRNOTAVAIL, "cannot assign"), Settings(host="10.9.9.9"), "host:"),
        (socket.gaierror(-2, "Name or service not known"), Settings(host="nohost"), "host:"),
        (OSError(errno.EACCES, "permission denied"), Settings(port=80), "port: 80 needs"),
    ],
)
def test_start_errors_name_the_setting_that_fixes_them(
    error: OSError, settings: Settings, names: str
) -> None:
    explained = _explain(error, settings)
    assert explained.startswith(names)
    setting = names.split(":")[0]
    assert f"--{setting}, LEXICONS_{setting.upper()} or Server({setting}=...)" in explained


def test_other_start_errors_are_shown_as_they_are() -> None:
    error = ConfigurationError("broker: cannot use Redis")
    assert _explain(error, Settings()) == "broker: cannot use Redis"
