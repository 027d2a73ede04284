"""The driver contract: what a device driver is, what it yields and what it can be told.

A driver does I/O only. It turns hardware into typed readings (weight samples, BLE
advertisements, label reports) and carries out commands (tare, push label content, flash an
LED). There is no business logic in a driver: counting items, dwell times and label planning
live in the sans-IO core.

Every driver, whatever its family, has the same lifecycle, driven by the supervisor::

    driver = plugin.create(context, options)   # cheap, no I/O
    await driver.open()                         # connect; DriverUnavailableError to retry
    async for reading in driver.readings():     # runs until cancelled or the link fails
        ...                                     # each reading also feeds the silence watchdog
    await driver.close()                        # always called, even after a failure

The supervisor builds a fresh driver object for every start. What belongs to the instance
rather than to one driver object (a count of open attempts, what simulated labels show) is
kept in the context's :class:`InstanceMemory`, which outlives the restarts.

A driver with nothing to report may yield :class:`Heartbeat` to show it is alive (for example an
ESL access point's periodic system frame), so the silence watchdog only restarts drivers that
really went quiet. Push-style hardware (callbacks) becomes an async iterator: callback → queue →
``yield``, with the callback unregistered in ``finally``.

Values are frozen dataclasses; the families' command protocols are small ``typing.Protocol``s so
that fakes satisfy them by shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from pydantic import BaseModel

    from gateway.clock import Clock

__all__ = [
    "DEFAULT_SILENCE_LIMITS",
    "Advertisement",
    "BeaconFormat",
    "BeaconId",
    "BeaconReceiver",
    "BeaconTelemetry",
    "DeviceFamily",
    "Driver",
    "DriverContext",
    "DriverPlugin",
    "FlipRestoreToken",
    "Heartbeat",
    "InstanceMemory",
    "LabelContent",
    "LabelDriver",
    "LabelModel",
    "LabelPalette",
    "LabelReport",
    "LabelReportKind",
    "PreparesFlips",
    "Reading",
    "ReceiverState",
    "ReceiverStatus",
    "ReportsDetail",
    "ScaleDriver",
    "ScaleStatus",
    "WeightSample",
]


class DeviceFamily(StrEnum):
    SCALE = "scale"
    BEACON = "beacon"
    ESL = "esl"


#: Seconds without any reading after which the supervisor restarts a driver, per family.
#: Scales stream several samples a second; BLE scanners are known to stall silently (restart
#: after ~90 s, research/ble.md); ESL access points report at least every few minutes.
DEFAULT_SILENCE_LIMITS: Mapping[DeviceFamily, float] = {
    DeviceFamily.SCALE: 30.0,
    DeviceFamily.BEACON: 90.0,
    DeviceFamily.ESL: 600.0,
}


# --- readings -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A driver is alive but has nothing to report."""

    monotonic: float
    detail: str = ""


class ScaleStatus(StrEnum):
    OK = "ok"
    OVERLOAD = "overload"
    UNDERLOAD = "underload"
    ERROR = "error"  # the device answered with an error instead of a weight


@dataclass(frozen=True, slots=True)
class WeightSample:
    """One weight reading of one channel (load cell / transmitter / scale head).

    Weights are grams whatever the device's unit. ``stable`` is the device's own motion flag,
    ``None`` when the device has none (the core then judges stability from the samples).
    """

    channel: str
    gross_grams: float | None
    net_grams: float | None
    stable: bool | None
    status: ScaleStatus
    monotonic: float
    observed_at: datetime


class BeaconFormat(StrEnum):
    """The beacon frames whose identity a receiver's driver decodes (devices/ble/frames.py)."""

    IBEACON = "ibeacon"
    ALTBEACON = "altbeacon"
    EDDYSTONE = "eddystone"  # Eddystone-UID


@dataclass(frozen=True, slots=True)
class BeaconId:
    """A beacon's broadcast identity, decoded from its frame by the receiver's driver.

    It is configured on the tag (a fixed beacon, a store-issued cart or basket tag), so it is
    what such a tag is enrolled by; it is not an address. ``key`` is canonical lower-case text:
    iBeacon ``<uuid>:<major>:<minor>``, AltBeacon ``<20-byte id as hex>``, Eddystone
    ``<namespace hex>:<instance hex>``. ``str()`` gives ``<format>:<key>``, the form used in
    configuration and on the wire.
    """

    format: BeaconFormat
    key: str

    def __str__(self) -> str:
        return f"{self.format.value}:{self.key}"


@dataclass(frozen=True, slots=True)
class BeaconTelemetry:
    """What a beacon says about itself (Eddystone-TLM): ``None`` where it reports nothing."""

    battery_mv: int | None
    temperature_c: float | None
    advert_count: int | None = None
    uptime_s: float | None = None


@dataclass(frozen=True, slots=True)
class Advertisement:
    """One BLE advertisement as seen by one receiver (radio adapter or remote receiver).

    ``address`` is the raw BLE address: personal data for customers' devices, so the presence
    core pseudonymises it at ingestion and never stores or publishes it.

    Drivers own the bytes: besides the raw AD fields they fill what they decoded from them —
    ``beacon`` (the frame's identity), ``measured_power`` (the frame's calibrated RSSI at 1 m)
    and ``telemetry`` — so the core never parses a frame. ``enrolled_key`` names the enrolled
    identity key (IRK) that resolves a resolvable private address, when a driver was given
    keys and one matches.
    """

    receiver: str
    address: str
    rssi: int
    monotonic: float
    observed_at: datetime
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    tx_power: int | None = None
    local_name: str | None = None
    beacon: BeaconId | None = None
    measured_power: int | None = None
    telemetry: BeaconTelemetry | None = None
    enrolled_key: str | None = None


class ReceiverState(StrEnum):
    """How a receiver behind a beacon driver is doing (a remote receiver node in a zone)."""

    ONLINE = "online"  # reporting as expected
    QUIET = "quiet"  # connected but nothing heard for longer than its limit
    OFFLINE = "offline"  # said goodbye (MQTT last will) or never reported


@dataclass(frozen=True, slots=True)
class ReceiverStatus:
    """News about one receiver of a beacon driver that serves several (remote nodes).

    ``receiver`` is the name :class:`Advertisement` readings carry in their ``receiver`` field;
    ``detail`` says why in words (``"silent for 95 s"``, ``"last will"``). The driver itself
    stays healthy while some of its receivers are not: the core shows them per receiver.
    """

    receiver: str
    state: ReceiverState
    monotonic: float
    observed_at: datetime
    detail: str = ""


class LabelPalette(StrEnum):
    BW = "bw"
    BWR = "bwr"
    BWY = "bwy"
    BWRY = "bwry"


@dataclass(frozen=True, slots=True)
class LabelModel:
    """What a label panel can show."""

    width: int
    height: int
    palette: LabelPalette
    has_led: bool = False


class LabelReportKind(StrEnum):
    SEEN = "seen"  # the label checked in (battery, signal, model); no delivery news
    CONFIRMED = "confirmed"  # the label itself reported it now shows ``content_hash``
    FAILED = "failed"  # delivery of ``content_hash`` failed on the device side


@dataclass(frozen=True, slots=True)
class LabelReport:
    """News about one label from the ESL system.

    ``CONFIRMED`` must only be reported on the label's own confirmation (for example the
    access point's "xfer complete"), never on an access point accepting an upload.
    ``evidence`` is the driver's proof in words, carried into receipts to HQ.
    """

    label_id: str
    kind: LabelReportKind
    monotonic: float
    observed_at: datetime
    content_hash: str | None = None
    evidence: str = ""
    model: LabelModel | None = None
    battery_mv: int | None = None
    rssi: int | None = None
    #: When the label is due to check in next (None: unknown); the fleet health calls a label
    #: timed out 600 s past it.
    next_checkin: datetime | None = None
    #: The label was told to sleep until woken: its silence is expected, not a fault.
    deep_sleep: bool = False


Reading: TypeAlias = WeightSample | Advertisement | ReceiverStatus | LabelReport | Heartbeat


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelContent:
    """Rendered content for one label. ``content_hash`` identifies it end to end."""

    label_id: str
    image_png: bytes
    content_hash: str
    model: LabelModel


@runtime_checkable
class Driver(Protocol):
    """Lifecycle shared by every family (see the module docstring)."""

    async def open(self) -> None:
        """Connect to the hardware. Raise DriverUnavailableError (retry) or DriverConfigError."""
        ...

    def readings(self) -> AsyncIterator[Reading]:
        """Yield readings until cancelled; raise DriverUnavailableError when the link fails."""
        ...

    async def close(self) -> None:
        """Release the hardware. Called once after ``open``, whatever happened; never raises."""
        ...


@runtime_checkable
class ReportsDetail(Protocol):
    """Optional for any driver: one line about its inner health for ``storegw status``, e.g.
    which units on a shared bus stopped answering while the driver itself keeps running."""

    @property
    def status_detail(self) -> str: ...


@runtime_checkable
class ScaleDriver(Driver, Protocol):
    """Weight sensors: yields :class:`WeightSample`; zero and tare on request."""

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels (slots' load cells) this driver instance reads."""
        ...

    async def zero(self, channel: str) -> None: ...

    async def tare(self, channel: str) -> None: ...


@runtime_checkable
class BeaconReceiver(Driver, Protocol):
    """BLE receivers: yields :class:`Advertisement` (and :class:`ReceiverStatus` when it serves
    several receivers).

    The one thing it can be told is which identity resolving keys (IRKs) are enrolled, so it
    can fill :attr:`Advertisement.enrolled_key` for a resolvable private address one of them
    resolves. Keys are 16 bytes, named by their enrolment key; the call replaces the whole set,
    takes effect for the next advertisement and must not block.
    """

    def set_identity_keys(self, keys: Mapping[str, bytes]) -> None: ...


@runtime_checkable
class LabelDriver(Driver, Protocol):
    """Electronic shelf labels: yields :class:`LabelReport`; pushes content, flashes LEDs."""

    @property
    def labels_per_minute(self) -> float:
        """Sustained delivery rate the radio manages, so the core can plan scheduled flips."""
        ...

    async def push(self, content: LabelContent) -> None:
        """Hand content to the ESL system. Returning means *accepted*, not shown: the label's
        confirmation arrives later as a ``CONFIRMED`` :class:`LabelReport`."""
        ...

    async def flash(self, label_id: str, *, seconds: float = 10.0) -> None: ...


#: What an ESL system needs to put its labels' check-ins back after a flip's window (e.g. the
#: access point's own ``maxsleep``): a flat JSON object, kept by the core in SQLite.
FlipRestoreToken: TypeAlias = dict[str, str | int | float | bool | None]


@runtime_checkable
class PreparesFlips(Protocol):
    """Optional for ESL drivers whose labels sleep between check-ins (an access point's tags):
    new content reaches a label only when it next checks in, so ahead of a scheduled flip the
    core asks the driver to shorten that sleep for the flip's window, and afterwards to put it
    back.

    ``checkin_interval_s`` is the longest a label sleeps between check-ins now: the core calls
    ``prepare_flip`` at least that long before the window starts. ``prepare_flip`` may be
    called again (another or a longer window: the window grows, and the interval saved the
    first time is the one put back); it returns the settings to put back as a
    :data:`FlipRestoreToken` (those from before the first call, on every call), or None when
    the driver keeps them itself (``context.memory``: they survive driver restarts, not
    process restarts). The core stores the first token of a window with the window's end and,
    after the window — also after any number of process restarts, and at start for a window
    that ended while the gateway was down — calls ``restore_checkins(token)``; without a token
    it calls ``restore_checkins()``, which puts back what the driver kept and does nothing
    when none is kept. A token the driver cannot read (the core passes ``{}`` when the stored
    one was unreadable) makes it put back the ESL system's default. ``restore_checkins``
    returns None when it put back what the token says, else one sentence saying what it put
    back instead (the core raises it as an alert). Both raise ``DriverUnavailableError`` when
    the ESL system refuses or cannot be reached (the core retries at its next pass).
    """

    @property
    def checkin_interval_s(self) -> float: ...

    async def prepare_flip(
        self, window_start: datetime, window_end: datetime
    ) -> FlipRestoreToken | None: ...

    async def restore_checkins(self, token: FlipRestoreToken | None = None) -> str | None: ...


# --- plugins ------------------------------------------------------------------------------

_Kept = TypeVar("_Kept")


class InstanceMemory:
    """State of one driver instance that outlives its driver objects.

    The supervisor builds a new driver object on every restart and hands each the same memory
    (one per instance name, for the supervisor's life: a restart, a changed configuration or
    the device removed and added again all keep it; a new process starts empty). Objects are
    kept by type::

        attempts = context.memory.keep(OpenAttempts)  # the same object on every restart

    Keep only what the hardware itself would remember across a reconnect; everything else
    belongs to the driver object. Used from the event loop's thread only.
    """

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: dict[type[Any], object] = {}

    def keep(self, kind: type[_Kept], factory: Callable[[], _Kept] | None = None) -> _Kept:
        """The instance's ``kind`` object, made by ``factory`` (default ``kind()``) the first
        time it is asked for."""
        kept = self._kept.get(kind)
        if kept is None:
            kept = self._kept[kind] = (factory or kind)()
        if not isinstance(kept, kind):
            raise TypeError(f"{kind.__name__} memory holds a {type(kept).__name__}")
        return kept


@dataclass(frozen=True, slots=True)
class DriverContext:
    """What a driver instance is given besides its options: its name, the injected clock and
    its :class:`InstanceMemory` (a fresh one unless the supervisor hands over the instance's)."""

    name: str
    clock: Clock
    memory: InstanceMemory = field(default_factory=InstanceMemory)


@dataclass(frozen=True, slots=True)
class DriverPlugin:
    """A driver as published under the ``storegw.drivers`` entry-point group.

    ``options_model`` validates the instance's ``[devices.options]`` table (pydantic, extra keys
    forbidden); ``factory`` builds a driver from a context and validated options, without I/O.
    """

    family: DeviceFamily
    options_model: type[BaseModel]
    factory: Callable[[DriverContext, Any], Driver]
    description: str = ""
    silence_limit: float | None = None

    @property
    def default_silence_limit(self) -> float:
        return self.silence_limit or DEFAULT_SILENCE_LIMITS[self.family]

    def create(self, context: DriverContext, options: BaseModel) -> Driver:
        return self.factory(context, options)
