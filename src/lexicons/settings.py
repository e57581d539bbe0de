"""Server settings: defaults in code, overridden by environment variables, then by flags.

Each setting is checked once, when the server starts, and a bad value raises
:class:`~lexicons.errors.ConfigurationError` naming the setting and where it came from::

    LEXICONS_PORT=abc python app.py run
    # ConfigurationError: port: 'abc' from LEXICONS_PORT is not a whole number from 0 to 65535
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from typing import Any

from .errors import ConfigurationError
from .ratelimit import RateLimit

__all__ = ["ENVIRONMENT", "LOG_FORMATS", "LOG_LEVELS", "Settings"]

#: The values ``log_level`` accepts (any case), most severe first.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")


@dataclass(slots=True)
class Settings:
    """Every setting of a :class:`~lexicons.Server`, with its default."""

    host: str = "localhost"
    port: int = 5000
    protocol: str = "ws"
    #: Log connections, signals and broadcasts (the original framework's ``debug``).
    debug: bool = True
    #: Send exception text and refusal reasons to clients. For development only: they
    #: can carry secrets. The server log has them (with the traceback) either way.
    expose_errors: bool = False
    data: str = "./"
    durable: bool = False
    #: Addresses and networks allowed to connect; ``"*"`` allows everyone.
    trust: list[str] = field(default_factory=lambda: ["*"])
    #: Reverse proxies whose ``X-Forwarded-For`` / ``Forwarded`` headers are believed.
    proxies: list[str] = field(default_factory=list)
    #: Allowed browser origins; ``None`` means same-origin only.
    origins: list[str] | None = None
    #: A directory served over plain HTTP on the same port (``None``: no files).
    static: str | None = None
    #: Broker URL for sharing channels across processes (``None``: in-process).
    broker: str | None = None
    #: Prefix of the broker's channel and key names: apps sharing one Redis differ here.
    broker_namespace: str = "lexicons"
    #: TLS for ``protocol="wss"``: an ``ssl.SSLContext``, or certificate and key files.
    ssl: SSLContext | None = None
    certfile: str | None = None
    keyfile: str | None = None
    #: Largest incoming message in bytes; a larger one closes that connection with 1009.
    max_size: int = 2**20
    #: Most connections at once; over it a handshake gets HTTP 503. ``None``: no limit.
    max_connections: int | None = None
    #: Unsent bytes a connection may queue before it is cut off (it stopped reading).
    max_buffer: int = 4 * 2**20
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    #: How long shutdown waits for connections to finish closing.
    shutdown_timeout: float = 10.0
    #: How long a running interval task may finish at shutdown before it is cancelled.
    task_grace: float = 5.0
    #: Let several processes listen on one port (``SO_REUSEPORT``), as ``--workers`` does.
    reuse_port: bool = False
    #: Server processes ``run`` starts on one port; more than one needs a ``broker``.
    workers: int = 1
    #: ``run`` restarts the server when a Python file of the app changes (development).
    reload: bool = False
    #: Level of the ``lexicons`` loggers; ``None``: ``"debug"`` with ``debug``, else ``"info"``.
    log_level: str | None = None
    #: ``"text"`` (one line per record) or ``"json"`` (one JSON object per line).
    log_format: str = "text"
    #: A ``logging`` dict config file (JSON, or YAML with PyYAML) replacing the above.
    log_config: str | None = None
    #: Serve Prometheus metrics at ``GET /metrics`` on the same port (``lexicons[metrics]``).
    metrics: bool = False
    #: Negotiate permessage-deflate with clients that offer it: fewer bytes on the wire
    #: for more CPU. Each broadcast is compressed once, not once per subscriber.
    compression: bool = False
    # Channels and connection limits.
    #: Most connections one client address may hold open (``None``: no limit); over it
    #: the handshake is answered 429.
    max_connections_per_address: int | None = None
    #: How fast one client address may open connections (``"30/min"``; ``None``: no limit).
    connection_rate: str | None = None
    #: Seconds between a process's heartbeats on the Redis broker: a process that died
    #: stops counting, and its presence members are gone, within 4 heartbeats.
    broker_heartbeat: float = 5.0
    #: Bytes of broadcasts that may wait for Redis (it is slow, frozen or reconnecting);
    #: past it a broadcast is not sent to Redis, and that is counted and logged.
    broker_queue: int = 64 * 2**20

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied, checked."""
        return dataclasses.replace(self, **changes).checked()

    def checked(self) -> Settings:
        """Return ``self`` after checking every value; raise naming the first bad one."""
        _check_port(self.port, "port")
        if self.protocol not in ("ws", "wss"):
            raise ConfigurationError(f"protocol: {self.protocol!r} is not 'ws' or 'wss'")
        self._check_tls()
        for name in ("max_size", "max_buffer"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name}: must be a positive number of bytes")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigurationError("max_connections: must be positive, or None for no limit")
        for name in ("open_timeout", "ping_timeout", "close_timeout", "shutdown_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name}: must be a positive number of seconds")
        if self.task_grace < 0:
            raise ConfigurationError("task_grace: must be a number of seconds >= 0")
        if self.ping_interval is not None and self.ping_interval <= 0:
            raise ConfigurationError("ping_interval: must be positive, or None to disable")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigurationError(f"workers: {self.workers!r} is not a whole number >= 1")
        if not self.broker_namespace or any(c.isspace() for c in self.broker_namespace):
            raise ConfigurationError(
                f"broker_namespace: {self.broker_namespace!r} must be non-empty, without spaces"
            )
        self._check_channel_limits()
        if self.static is not None and not Path(self.static).is_dir():
            raise ConfigurationError(f"static: {self.static!r} is not a directory")
        if self.reload and self.workers > 1:
            raise ConfigurationError(
                "reload: restarts one development server; it cannot be combined with "
                f"workers ({self.workers}): drop --reload or --workers"
            )
        self._check_logging()
        return self

    def _check_logging(self) -> None:
        if self.log_level is not None and self.log_level.lower() not in LOG_LEVELS:
            raise ConfigurationError(
                f"log_level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigurationError(
                f"log_format: {self.log_format!r} is not one of {', '.join(LOG_FORMATS)}"
            )
        if self.log_config is not None and not Path(self.log_config).is_file():
            raise ConfigurationError(f"log_config: {self.log_config!r} is not a file")

    @property
    def stop_within(self) -> float:
        """Seconds a clean shutdown may take before a supervisor may kill the process."""
        return self.shutdown_timeout + self.task_grace + self.close_timeout

    def _check_channel_limits(self) -> None:
        most = self.max_connections_per_address
        if most is not None and (not isinstance(most, int) or most < 1):
            raise ConfigurationError(
                "max_connections_per_address: must be a whole number >= 1, or None"
            )
        if self.connection_rate is not None:
            try:
                RateLimit.parse(self.connection_rate)
            except ConfigurationError as exc:
                raise ConfigurationError(f"connection_rate: {exc}") from None
        if not self.broker_heartbeat > 0:
            raise ConfigurationError("broker_heartbeat: must be a positive number of seconds")
        if not isinstance(self.broker_queue, int) or self.broker_queue < 1:
            raise ConfigurationError("broker_queue: must be a positive number of bytes")

    def _check_tls(self) -> None:
        """``wss`` needs a certificate; a certificate without ``wss`` is a mistake too."""
        if self.ssl is not None and not isinstance(self.ssl, SSLContext):
            raise ConfigurationError(f"ssl: {self.ssl!r} is not an ssl.SSLContext")
        if self.ssl is not None and self.certfile:
            raise ConfigurationError("ssl: give an ssl.SSLContext or certfile=, not both")
        if self.keyfile and not self.certfile:
            raise ConfigurationError("keyfile: given without certfile=")
        if self.protocol == "wss" and self.ssl is None and not self.certfile:
            raise ConfigurationError(
                "protocol: 'wss' needs TLS settings: pass ssl=<ssl.SSLContext>, "
                "or certfile= (and keyfile= unless the certificate file holds the key)"
            )
        if self.protocol == "ws" and (self.ssl is not None or self.certfile):
            # Serving plain ws:// while the operator believes TLS is on would send
            # credentials in clear text.
            raise ConfigurationError(
                "protocol: 'ws' serves without TLS, but a certificate is configured "
                "(ssl= or certfile=); set protocol='wss', or remove the certificate"
            )

    def ssl_context(self) -> SSLContext | None:
        """The TLS context to serve with, built from the certificate files when needed."""
        if self.protocol != "wss":
            return None
        if self.ssl is not None:
            return self.ssl
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(self.certfile), self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"certfile: cannot load {self.certfile!r} (keyfile {self.keyfile!r}): {exc}"
            ) from exc
        return context

    def from_environment(self, environ: Mapping[str, str] | None = None) -> Settings:
        """A copy with every ``LEXICONS_*`` variable of :data:`ENVIRONMENT` applied."""
        environ = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for variable, (name, parse) in ENVIRONMENT.items():
            if variable in environ:
                changes[name] = parse(
                    environ[variable], f"{name}: {environ[variable]!r} from {variable}"
                )
        return dataclasses.replace(self, **changes)


def _check_port(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ConfigurationError(f"{name}: {value!r} is not a whole number from 0 to 65535")


def parse_int(text: str, where: str) -> int:
    """Parse a whole number, or raise naming the setting."""
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{where} is not a whole number") from None


def parse_port(text: str, where: str) -> int:
    """Parse a TCP port (0 picks a free one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"{where} is not a whole number from 0 to 65535")
    return port


def parse_bool(text: str, where: str) -> bool:
    """Parse ``1/0``, ``true/false``, ``yes/no``, ``on/off``."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{where} is not a boolean (use 1/0, true/false, yes/no)")


def parse_list(text: str, where: str) -> list[str]:
    """Parse a comma-separated list, ignoring blanks."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_str(text: str, where: str) -> str:
    return text


def parse_float(text: str, where: str) -> float:
    """Parse a number (of seconds)."""
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"{where} is not a number") from None


#: Environment variables and the setting each one overrides.
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "LEXICONS_HOST": ("host", parse_str),
    "LEXICONS_PORT": ("port", parse_port),
    "LEXICONS_PROTOCOL": ("protocol", parse_str),
    "LEXICONS_DEBUG": ("debug", parse_bool),
    "LEXICONS_EXPOSE_ERRORS": ("expose_errors", parse_bool),
    "LEXICONS_DATA": ("data", parse_str),
    "LEXICONS_DURABLE": ("durable", parse_bool),
    "LEXICONS_TRUST": ("trust", parse_list),
    "LEXICONS_PROXIES": ("proxies", parse_list),
    "LEXICONS_ORIGINS": ("origins", parse_list),
    "LEXICONS_STATIC": ("static", parse_str),
    "LEXICONS_BROKER": ("broker", parse_str),
    "LEXICONS_BROKER_NAMESPACE": ("broker_namespace", parse_str),
    "LEXICONS_WORKERS": ("workers", parse_int),
    "LEXICONS_CERTFILE": ("certfile", parse_str),
    "LEXICONS_KEYFILE": ("keyfile", parse_str),
    "LEXICONS_MAX_SIZE": ("max_size", parse_int),
    "LEXICONS_MAX_CONNECTIONS": ("max_connections", parse_int),
    "LEXICONS_RELOAD": ("reload", parse_bool),
    "LEXICONS_LOG_LEVEL": ("log_level", parse_str),
    "LEXICONS_LOG_FORMAT": ("log_format", parse_str),
    "LEXICONS_LOG_CONFIG": ("log_config", parse_str),
    "LEXICONS_METRICS": ("metrics", parse_bool),
    "LEXICONS_COMPRESSION": ("compression", parse_bool),
    "LEXICONS_MAX_CONNECTIONS_PER_ADDRESS": ("max_connections_per_address", parse_int),
    "LEXICONS_CONNECTION_RATE": ("connection_rate", parse_str),
    "LEXICONS_BROKER_HEARTBEAT": ("broker_heartbeat", parse_float),
    "LEXICONS_BROKER_QUEUE": ("broker_queue", parse_int),
}
