"""The one error tree of storegw.

Every error the gateway raises on purpose derives from :class:`GatewayError`. Library errors
(sqlite3, paho, bleak, pyserial, pymodbus) are translated where they enter, with
``raise X(...) from exc``, so callers decide retry-or-give-up by type, never by message::

    GatewayError
    ├── ConfigError                 bad configuration; the process exits 78 (EX_CONFIG)
    │   └── UnknownDriverError      a device names a driver no installed plugin provides
    ├── StorageError                the SQLite database cannot be used (names the path)
    │   ├── StorageUnavailableError cannot open/write: read-only filesystem, missing directory
    │   ├── StorageFullError        disk or page budget exhausted; the transaction rolled back
    │   ├── OutboxFullError         the outbox byte budget refuses essential events
    │   ├── StorageCorruptError     quick_check failed; never silently replaced
    │   ├── StorageInUseError       another daemon holds the database's lock (exit 78)
    │   └── SchemaTooNewError       the database was written by a newer storegw
    ├── DriverError                 a device driver failed
    │   ├── DriverUnavailableError  transient (port gone, device silent): retry with backoff
    │   ├── DriverConfigError       permanent for this config: mark the driver failed, no retry
    │   └── LabelPanelMismatchError content drawn for another panel than the label's: the
    │                               label pipeline draws it again for ``panel`` (never final)
    ├── ControlError                the control socket (CLI ↔ daemon) failed
    │   ├── DaemonNotRunningError   no daemon is listening on the socket path
    │   ├── DaemonError             the daemon answered a request with an error ``code``
    │   ├── InvalidArgsError        a control command refused its arguments (``invalid_args``),
    │   │                           whichever command they reach
    │   └── ControlProtocolError    a malformed or unsupported request/response
    │       └── RequestError        a request line the daemon refuses (``bad_request``,
    │                               ``unsupported_version``), with its id when readable
    ├── LinkError                   the MQTT link to HQ failed
    │   ├── LinkDownError           not connected (or the connection dropped): retry later
    │   └── PublishRefusedError     the broker refused a publish (PUBACK reason code)
    ├── DownlinkError               a message from HQ is refused (it is acked, never applied)
    │   ├── MalformedMessageError   unreadable: too big, nested too deep, not strict JSON, bad shape
    │   ├── SignatureError          missing/unknown key, bad signature, wrong scope, expired
    │   ├── BatchRejectedError      a price batch is invalid; lists every bad item
    │   └── CommandRefusedError     understood, but cannot be carried out (e.g. a binding)
    └── ShelfError                  a technician's request on a slot cannot be carried out
                                    (unknown slot, scale moving, implausible calibration)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.drivers.contracts import LabelModel

__all__ = [
    "BatchRejectedError",
    "CommandRefusedError",
    "ConfigError",
    "ConfigIssue",
    "ControlError",
    "ControlProtocolError",
    "DaemonError",
    "DaemonNotRunningError",
    "DownlinkError",
    "DriverConfigError",
    "DriverError",
    "DriverUnavailableError",
    "GatewayError",
    "InvalidArgsError",
    "LabelPanelMismatchError",
    "LinkDownError",
    "LinkError",
    "MalformedMessageError",
    "OutboxFullError",
    "PublishRefusedError",
    "RequestError",
    "SchemaTooNewError",
    "ShelfError",
    "SignatureError",
    "StorageCorruptError",
    "StorageError",
    "StorageFullError",
    "StorageInUseError",
    "StorageUnavailableError",
    "UnknownDriverError",
]


class GatewayError(Exception):
    """Root of every error storegw raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One bad configuration key: a dotted path such as ``devices.1.options.port``."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.reason}"


class ConfigError(GatewayError):
    """The configuration is invalid; ``issues`` lists every bad key with its reason."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"invalid configuration {source}:\n{lines}")


class UnknownDriverError(ConfigError):
    """A device names a driver that no installed plugin provides."""

    def __init__(self, source: str, path: str, driver: str, known: Sequence[str]) -> None:
        self.driver = driver
        self.known = tuple(sorted(known))
        reason = f"unknown driver {driver!r}; known drivers: {', '.join(self.known) or 'none'}"
        super().__init__(source, [ConfigIssue(path, reason)])


class StorageError(GatewayError):
    """The database at ``path`` cannot be used."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"database {self.path}: {reason}")


class StorageUnavailableError(StorageError):
    """The database cannot be opened or written (read-only filesystem, missing directory)."""


class StorageFullError(StorageError):
    """The disk or the configured page budget is exhausted; the transaction was rolled back."""


class OutboxFullError(StorageError):
    """The outbox byte budget (less the alert reserve) is used up: the events were not
    accepted. Their producer keeps its own state and reports it again later."""


class StorageCorruptError(StorageError):
    """``PRAGMA quick_check`` failed. The file is kept for forensics, never replaced."""


class StorageInUseError(StorageError):
    """Another process holds the database's lock: a second daemon configured on the same
    database. ``holder_pid`` is that process's pid when it could be read."""

    def __init__(self, path: Path | str, holder_pid: int | None, lock_path: Path | str) -> None:
        self.holder_pid = holder_pid
        self.lock_path = str(lock_path)
        holder = f"pid {holder_pid}" if holder_pid is not None else "pid unknown"
        super().__init__(
            path,
            f"in use by another storegw daemon ({holder}, lock {self.lock_path}); "
            "stop that one, or give each daemon its own [storage] path",
        )


class SchemaTooNewError(StorageError):
    """The database schema is newer than this storegw understands."""

    def __init__(self, path: Path | str, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            path,
            f"schema version {found} is newer than this storegw supports ({supported}); "
            "upgrade storegw or restore a matching backup",
        )


class DriverError(GatewayError):
    """A device driver failed; ``driver`` is the configured instance name when known."""

    def __init__(self, message: str, *, driver: str | None = None) -> None:
        self.driver = driver
        super().__init__(f"{driver}: {message}" if driver else message)


class DriverUnavailableError(DriverError):
    """Transient: the device or its link is unavailable. The supervisor retries with backoff."""


class DriverConfigError(DriverError):
    """Permanent for this configuration: the supervisor marks the driver failed, no retry."""


class LabelPanelMismatchError(DriverError):
    """An ESL driver refuses content drawn for another panel than the label's. ``panel`` is
    the label's panel as the ESL system knows it (None: it does not say): the label pipeline
    draws the content again for that panel. Not a configuration error: a label may be bound
    before it ever checked in, or have its panel swapped."""

    def __init__(
        self,
        message: str,
        *,
        label: str,
        panel: LabelModel | None,
        driver: str | None = None,
    ) -> None:
        self.label = label
        self.panel = panel
        super().__init__(message, driver=driver)


class ControlError(GatewayError):
    """The control socket between the CLI and the daemon failed."""


class DaemonNotRunningError(ControlError):
    """Nothing listens on the control socket: the daemon is not running (or another path)."""

    def __init__(self, socket_path: Path | str, reason: str) -> None:
        self.socket_path = str(socket_path)
        super().__init__(
            f"storegw daemon is not running (no answer on {self.socket_path}: {reason})"
        )


class DaemonError(ControlError):
    """The daemon answered with an error (client side); ``code`` is one of the control
    protocol's error codes (``invalid_args``, ``internal``, ``busy``...)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class InvalidArgsError(ControlError):
    """A control command's arguments are wrong: missing, of the wrong type, or naming
    something the command cannot act on. The daemon answers ``invalid_args`` with the message
    (not logged: the caller's mistake, not the daemon's)."""


class ControlProtocolError(ControlError):
    """A malformed or unsupported control request or response."""


class RequestError(ControlProtocolError):
    """A request line the daemon answers with an error ``code`` (``bad_request``,
    ``unsupported_version``) before any handler sees it; ``request_id`` when it could be read."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        self.code = code
        self.request_id = request_id
        super().__init__(message)


class LinkError(GatewayError):
    """The MQTT link to HQ failed."""


class LinkDownError(LinkError):
    """Not connected, or the connection dropped before the broker answered."""


class PublishRefusedError(LinkError):
    """The broker answered a publish with a failure reason code (e.g. 0x87 not authorised)."""

    def __init__(self, topic: str, reason_code: int, reason: str) -> None:
        self.topic = topic
        self.reason_code = reason_code
        self.reason = reason
        super().__init__(f"broker refused publish to {topic}: 0x{reason_code:02X} {reason}")


class DownlinkError(GatewayError):
    """A message from HQ is refused: acknowledged to the broker (so it is not redelivered
    forever), never applied, and reported with its reason."""


class MalformedMessageError(DownlinkError):
    """A message from HQ cannot be read at all: larger than the cap, nested too deep, not
    strict JSON (NaN, Infinity, a number beyond a double, invalid UTF-8) or not the shape its
    topic needs. Raised out of a handler, the link acknowledges and counts it."""


class SignatureError(DownlinkError):
    """No valid HQ signature for this store: unknown key, bad signature, wrong scope, not yet
    valid or expired, or unsigned while HQ keys are configured."""


class BatchRejectedError(DownlinkError):
    """A price batch failed validation. ``version`` is None when even that was unreadable;
    ``problems`` lists every bad item (``{"item": index or sku, "reason": ...}``)."""

    def __init__(
        self,
        version: int | None,
        problems: Sequence[Mapping[str, Any]],
        *,
        header: Any = None,
    ) -> None:
        self.version = version
        self.problems = [dict(problem) for problem in problems]
        self.header = header  # the part's valid header when only its items were bad
        shown = "; ".join(f"{p.get('item', '-')}: {p.get('reason')}" for p in self.problems[:5])
        more = f" (+{len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"price batch v{version} rejected: {shown}{more}")


class CommandRefusedError(DownlinkError):
    """A command (from HQ or the CLI) is understood but cannot be carried out, e.g. binding a
    label that already shows another SKU. The reason goes back to whoever asked."""


class ShelfError(GatewayError):
    """A technician's request on a slot cannot be carried out (unknown slot, moving...)."""
