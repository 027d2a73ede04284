"""Configuration: one TOML file plus ``STOREGW_`` environment overrides (``__`` nests).

``load_config(path)`` returns a validated :class:`GatewaySettings`; every problem, from TOML
syntax to a driver's own options, is collected into one :class:`~gateway.errors.ConfigError`
listing each bad key by its dotted path (``devices.1.options.port``) and reason, so a
technician fixes them all in one go. Environment variables win over the file (for example
``STOREGW_MQTT__PORT=1884``). Durations are seconds, suffixed ``_s``.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.clock import ClockSyncSource
from gateway.drivers.contracts import DeviceFamily, DriverPlugin
from gateway.drivers.registry import DriverRegistry
from gateway.errors import ConfigError, ConfigIssue, DriverConfigError, UnknownDriverError
from gateway.shelves.slot_counter import CounterSettings
from gateway.store.budget import BufferBudget
from gateway.store.outbox import STREAM_NAME_PATTERN
from gateway.sync.signing import KEY_ID_PATTERN, Verifier, decode_public_key

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ClockConfig",
    "ControlConfig",
    "DeviceConfig",
    "DownlinkConfig",
    "GatewaySettings",
    "LabelsConfig",
    "LoggingConfig",
    "MqttConfig",
    "OutboxConfig",
    "ResolvedDevice",
    "ShelvesConfig",
    "SlotConfig",
    "StorageConfig",
    "StoreConfig",
    "SupervisorConfig",
    "load_config",
    "resolve_devices",
]

DEFAULT_CONFIG_PATH = Path("/etc/storegw/gateway.toml")

_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
_LOG_LEVEL = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(_Section):
    id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Store id; also a level of every MQTT topic.",
    )
    timezone: str = Field("UTC", description="IANA time zone of the store, e.g. Europe/Berlin.")
    locale: str = Field(
        "en_GB",
        description="CLDR locale of the store's labels (money, unit prices, dates, words), "
        "e.g. de_DE.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        from gateway.labels.localization import parse_locale  # Babel's data: loaded when used

        return parse_locale(value)


class ClockConfig(_Section):
    sync: ClockSyncSource = ClockSyncSource.AUTO


class MqttConfig(_Section):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(8883, ge=1, le=65535)
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = True
    allow_plaintext: bool = False
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    keepalive_s: int = Field(60, ge=5, le=3600)
    topic_root: str = "retail/v1/{store_id}/"
    custody: Literal["hq", "broker"] = "hq"
    ack_timeout_s: float = Field(30.0, gt=0, le=3600)
    catchup_messages_per_s: float | None = Field(200.0, gt=0)
    max_events_per_message: int = Field(500, ge=1, le=10_000)
    max_message_bytes: int = Field(128 * 1024, ge=1024, le=64 * 1024 * 1024)
    hq_window_messages: int = Field(
        100, ge=1, le=100_000, description="Envelopes per stream sent ahead of HQ's ack."
    )
    health_interval_s: float = Field(60.0, ge=1, le=3600)

    @field_validator("ca_file", "client_cert", "client_key")
    @classmethod
    def _tls_file_exists(cls, value: Path | None) -> Path | None:
        # A missing file is certain to fail every connection. One this user may not read is
        # left to the daemon (check-config may run as another user); its error names it.
        if value is not None:
            try:
                info = value.stat()
            except (FileNotFoundError, NotADirectoryError):
                raise ValueError(f"{value}: no such file") from None
            except OSError:
                return value
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"{value} is not a file")
        return value

    @field_validator("topic_root")
    @classmethod
    def _topic_root_shape(cls, value: str) -> str:
        if not value.endswith("/") or "{store_id}" not in value or any(c in value for c in "+#"):
            raise ValueError("must end with '/', contain {store_id} and no wildcards")
        return value

    @model_validator(mode="after")
    def _plaintext_is_explicit(self) -> Self:
        if not self.tls and not self.allow_plaintext:
            raise ValueError("tls = false needs allow_plaintext = true (never a silent fallback)")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together (mTLS)")
        return self


class StorageConfig(_Section):
    path: Path = Path("/var/lib/storegw/gateway.db")
    commit_interval_s: float = Field(0.05, gt=0, le=5, description="Group-commit window.")
    commit_max_rows: int = Field(500, ge=1, le=100_000)
    busy_timeout_s: float = Field(5.0, gt=0, le=120)
    maintenance_interval_s: float = Field(
        300.0, ge=1, le=86400, description="Incremental vacuum + WAL checkpoint period."
    )


class OutboxConfig(_Section):
    budget_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Byte budget of the buffered events (about 1M stock events by default).",
    )
    alert_reserve_bytes: int = Field(
        4 * 1024 * 1024, ge=0, description="Top of the budget only alerts may use."
    )
    shed_detail_at: float = Field(
        0.7, gt=0, le=1, description="Fraction of the budget at which dwell detail is dropped."
    )
    shed_aggregate_at: float = Field(
        0.9, gt=0, le=1, description="Fraction at which dwell aggregates are dropped too."
    )
    ttl_s: dict[str, float] = Field(
        default_factory=lambda: {"dwell": 7 * 86400.0},
        description="Per stream: seconds an event may wait for HQ before it expires.",
    )
    expiry_interval_s: float = Field(60.0, ge=1, le=86400)

    @field_validator("ttl_s")
    @classmethod
    def _ttl_shape(cls, value: dict[str, float]) -> dict[str, float]:
        for stream, seconds in value.items():
            if re.fullmatch(STREAM_NAME_PATTERN, stream) is None:
                raise ValueError(f"{stream!r} is not a stream name")
            if not seconds > 0:
                raise ValueError(f"ttl_s.{stream} must be > 0 seconds")
        return value

    @model_validator(mode="after")
    def _budget_consistent(self) -> Self:
        try:
            self.budget()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self

    def budget(self) -> BufferBudget:
        return BufferBudget(
            budget_bytes=self.budget_bytes,
            alert_reserve_bytes=self.alert_reserve_bytes,
            shed_detail_at=self.shed_detail_at,
            shed_aggregate_at=self.shed_aggregate_at,
        )


class DownlinkConfig(_Section):
    hq_public_keys: dict[str, str] = Field(
        default_factory=dict,
        description="HQ's Ed25519 public keys by key id (base64, 32 bytes); empty = unsigned.",
    )
    groups: list[str] = Field(
        default_factory=list, description="Groups this store belongs to (batch scopes)."
    )
    parts_timeout_s: float = Field(600.0, gt=0, le=86400)
    resync_interval_s: float = Field(60.0, ge=1, le=86400)
    price_history_days: float = Field(90.0, gt=0, le=3650)
    was_price: Literal["hq", "lowest_30_days"] = Field(
        "hq",
        description="A promotion's \"was\" price: only HQ's, or else the prior price: the "
        "lowest applied in the 30 days before the reduction began, earlier promotions included "
        "(EU Price Indication Directive art. 6a).",
    )

    @field_validator("hq_public_keys")
    @classmethod
    def _keys_decode(cls, value: dict[str, str]) -> dict[str, str]:
        for kid, key in value.items():
            if re.fullmatch(KEY_ID_PATTERN, kid) is None:
                raise ValueError(f"key id {kid!r} must match {KEY_ID_PATTERN}")
            try:
                decode_public_key(key)
            except ValueError as exc:
                raise ValueError(f"hq_public_keys.{kid}: {exc}") from None
        return value

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: list[str]) -> list[str]:
        for group in value:
            if re.fullmatch(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", group) is None:
                raise ValueError(f"group {group!r} is not a valid name")
        return value

    def verifier(self) -> Verifier:
        return Verifier({kid: decode_public_key(key) for kid, key in self.hq_public_keys.items()})


class LabelsConfig(_Section):
    """The label pipeline: jobs, scheduled flips, SLA, reconciliation, audit."""

    sla_s: float = Field(
        900.0, gt=0, le=7 * 86400, description="A label must be confirmed this long after due."
    )
    lookahead_s: float = Field(
        900.0, ge=10, le=86400, description="Scheduled flips are pre-rendered this far ahead."
    )
    flip_tolerance_s: float = Field(
        120.0,
        ge=0,
        le=86400,
        description="A flip finishing later than this after its "
        "effective time is announced as late (label.flip_late) ahead of time.",
    )
    reconcile_interval_s: float = Field(
        300.0, ge=5, le=86400, description="Should-show vs last confirmed, every this often."
    )
    confirm_timeout_s: float = Field(
        600.0, ge=5, le=86400, description="A pushed job unconfirmed this long is retried."
    )
    retry_initial_s: float = Field(10.0, gt=0, le=3600, description="First retry backoff.")
    retry_max_s: float = Field(600.0, gt=0, le=86400, description="Backoff cap.")
    queue_ahead_s: float = Field(
        5.0, gt=0, le=600, description="Seconds of radio work kept queued per ESL driver."
    )
    audit_retention_days: float = Field(
        90.0, gt=0, le=3650, description="Forwarded audit rows older than this are pruned."
    )
    default_model: str = Field(
        "296x128:bwr",
        pattern=r"^\d{2,4}x\d{2,4}:(bw|bwr|bwy|bwry)$",
        description="Panel of labels whose driver reports no model (WIDTHxHEIGHT:PALETTE).",
    )
    font: Path = Field(
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), description="Regular font."
    )
    bold_font: Path = Field(
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"), description="Bold font."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be >= retry_initial_s")
        return self


_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class ControlConfig(_Section):
    socket: Path = Path("/run/storegw/control.sock")
    max_connections: int = Field(
        32,
        ge=1,
        le=1000,
        description="Control connections served at once; more are answered busy.",
    )

    @field_validator("socket")
    @classmethod
    def _fits_a_unix_socket(cls, value: Path) -> Path:
        length = len(os.fsencode(value))
        if length > _SUN_PATH_MAX:
            raise ValueError(
                f"{value} is {length} bytes long; a unix socket path holds at most "
                f"{_SUN_PATH_MAX}: choose a shorter path"
            )
        return value


class LoggingConfig(_Section):
    level: _LOG_LEVEL = "INFO"
    levels: dict[str, _LOG_LEVEL] = Field(default_factory=dict)


class SupervisorConfig(_Section):
    backoff_initial_s: float = Field(1.0, gt=0, le=600)
    backoff_max_s: float = Field(60.0, gt=0, le=3600)
    start_timeout_s: float = Field(30.0, gt=0, le=600)
    stop_timeout_s: float = Field(5.0, gt=0, le=60)
    healthy_after_s: float = Field(
        60.0, gt=0, description="Running this long without failure resets the backoff."
    )
    shutdown_budget_s: float = Field(
        20.0, gt=0, le=300, description="Whole graceful stop; keep below TimeoutStopSec."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


class DeviceConfig(_Section):
    name: str = Field(pattern=_NAME_PATTERN)
    driver: str = Field(min_length=1)
    enabled: bool = True
    silence_limit_s: float | None = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


SLOT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class SlotConfig(_Section):
    """One shelf slot: which load cell weighs it and what it holds."""

    slot: str = Field(pattern=SLOT_NAME_PATTERN, description="Slot id, e.g. aisle3-shelf2-left.")
    device: str = Field(pattern=_NAME_PATTERN, description="The scale device ([[devices]] name).")
    channel: str = Field(min_length=1, max_length=64, description="The device's channel.")
    sku: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    unit_grams: float = Field(gt=0, le=1_000_000, description="Weight of one item.")
    tolerance: float = Field(
        0.25, gt=0, lt=0.5, description="How far from a whole number of items a change may be."
    )
    item_spread: float = Field(
        0.02, ge=0, lt=0.5, description="How much single items (and look-alikes) differ."
    )
    tray_tare_grams: float = Field(
        0.0, ge=-1_000_000, le=1_000_000, description="Reading with the empty tray on."
    )
    min_count: int = Field(0, ge=0, le=1_000_000, description="Reorder point (low stock).")
    max_count: int | None = Field(None, ge=1, le=1_000_000, description="Capacity.")
    override: bool = Field(False, description="A local override: HQ cannot change this slot.")

    @model_validator(mode="after")
    def _min_below_max(self) -> Self:
        if self.max_count is not None and self.max_count < self.min_count:
            raise ValueError("max_count must be >= min_count")
        return self


class ShelvesConfig(_Section):
    """Stock logic tuning shared by every slot, and the slots themselves."""

    window_s: float = Field(0.8, gt=0, le=10, description="Moving window of the motion test.")
    settle_s: float = Field(1.0, ge=0, le=60, description="A drop holds this long: a pick.")
    rise_hold_s: float = Field(
        10.0, ge=0, le=600, description="A rise holds this long: a put (outlasts leaning)."
    )
    motion_k: float = Field(4.0, gt=0, le=100, description="Stable: spread <= k x idle noise.")
    noise_floor_grams: float = Field(0.25, gt=0, le=1000)
    recount_interval_s: float = Field(60.0, ge=1, le=86400)
    zero_track_grams_per_h: float = Field(30.0, ge=0, le=10_000)
    zero_band: float = Field(0.1, ge=0, lt=0.5)
    no_data_s: float = Field(10.0, gt=0, le=3600)
    stuck_s: float = Field(300.0, ge=0, le=86400, description="0 disables the stuck check.")
    fault_on_s: float = Field(2.0, ge=0, le=600)
    fault_off_s: float = Field(5.0, ge=0, le=600)
    low_hold_s: float = Field(30.0, ge=0, le=86400)
    clear_hold_s: float = Field(30.0, ge=0, le=86400)
    hysteresis_items: int = Field(1, ge=1, le=1000)
    activity_interval_s: float = Field(
        900.0, ge=1, le=86400, description="Period of the stock.activity counts."
    )
    slots: list[SlotConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen: set[str] = set()
        channels: dict[tuple[str, str], str] = {}
        for index, slot in enumerate(self.slots):
            if slot.slot in seen:
                raise ValueError(f"slots.{index}: duplicate slot {slot.slot!r}")
            seen.add(slot.slot)
            where = (slot.device, slot.channel)
            if where in channels:
                raise ValueError(
                    f"slots.{index}: {slot.device}/{slot.channel} already weighs slot "
                    f"{channels[where]!r}"
                )
            channels[where] = slot.slot
        return self

    def counter_settings(self) -> CounterSettings:
        names = CounterSettings.__dataclass_fields__
        return CounterSettings(**{name: getattr(self, name) for name in names})


class GatewaySettings(BaseSettings):
    """The whole configuration. Build it with :func:`load_config`."""

    model_config = SettingsConfigDict(
        env_prefix="STOREGW_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    store: StoreConfig
    clock: ClockConfig = ClockConfig()
    mqtt: MqttConfig = MqttConfig()
    storage: StorageConfig = StorageConfig()
    outbox: OutboxConfig = OutboxConfig()
    downlink: DownlinkConfig = DownlinkConfig()
    labels: LabelsConfig = LabelsConfig()
    control: ControlConfig = ControlConfig()
    logging: LoggingConfig = LoggingConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    devices: list[DeviceConfig] = Field(default_factory=list)
    shelves: ShelvesConfig = ShelvesConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 - signature fixed by pydantic
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which arrives as init kwargs.
        return (env_settings, init_settings)


@dataclass(frozen=True, slots=True)
class ResolvedDevice:
    """A configured device with its plugin loaded and its options validated by that plugin."""

    config: DeviceConfig
    plugin: DriverPlugin
    options: BaseModel

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def silence_limit(self) -> float:
        return self.config.silence_limit_s or self.plugin.default_silence_limit


def _issues_from(error: ValidationError, prefix: Sequence[str | int] = ()) -> list[ConfigIssue]:
    issues = []
    for detail in error.errors(include_url=False):
        path = ".".join(str(part) for part in (*prefix, *detail["loc"]))
        issues.append(ConfigIssue(path, detail["msg"]))
    return issues


def load_config(
    path: Path,
    *,
    registry: DriverRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[GatewaySettings, tuple[ResolvedDevice, ...]]:
    """Read, validate and resolve the configuration at ``path``; ConfigError lists every issue.

    ``environ`` replaces ``os.environ`` for the ``STOREGW_`` overrides (tests, reload).
    """
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, [ConfigIssue("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", f"not valid TOML: {exc}")]) from exc
    return parse_config(data, source=source, registry=registry, environ=environ)


def parse_config(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    registry: DriverRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[GatewaySettings, tuple[ResolvedDevice, ...]]:
    """Validate an already-parsed TOML document (see :func:`load_config`).

    Device entries are checked even when other sections are invalid, so one run reports
    every problem.
    """
    issues: list[ConfigIssue] = []
    settings: GatewaySettings | None = None
    saved = None
    if environ is not None:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(environ)
    try:
        settings = GatewaySettings(**data)
    except ValidationError as exc:
        issues.extend(_issues_from(exc))
    finally:
        if saved is not None:
            os.environ.clear()
            os.environ.update(saved)
    if settings is not None:
        devices = list(enumerate(settings.devices))
    else:
        devices = _devices_that_validate(data.get("devices"))
    try:
        resolved = resolve_devices(devices, registry or DriverRegistry.from_entry_points(), source)
    except ConfigError as exc:
        issues.extend(exc.issues)
        resolved = ()
    if settings is not None:
        issues.extend(slot_device_issues(settings, resolved))
    if issues or settings is None:
        raise ConfigError(source, issues)
    return settings, resolved


def slot_device_issues(
    settings: GatewaySettings, resolved: Sequence[ResolvedDevice]
) -> list[ConfigIssue]:
    """Every slot must name a configured scale device."""
    configured = {device.name for device in settings.devices}
    families = {device.name: device.plugin.family for device in resolved}
    issues = []
    for index, slot in enumerate(settings.shelves.slots):
        path = f"shelves.slots.{index}.device"
        if slot.device not in configured:
            known = ", ".join(sorted(configured)) or "none"
            issues.append(
                ConfigIssue(
                    path,
                    f"slot {slot.slot!r} maps to device {slot.device!r}, which is not in "
                    f"[[devices]] (configured: {known})",
                )
            )
        elif families.get(slot.device, DeviceFamily.SCALE) is not DeviceFamily.SCALE:
            issues.append(
                ConfigIssue(path, f"device {slot.device!r} is not a scale (slot {slot.slot!r})")
            )
    return issues


def _devices_that_validate(raw: object) -> list[tuple[int, DeviceConfig]]:
    if not isinstance(raw, list):
        return []
    valid = []
    for index, entry in enumerate(raw):
        try:
            valid.append((index, DeviceConfig.model_validate(entry)))
        except ValidationError:
            continue  # already reported by the settings validation
    return valid


def resolve_devices(
    devices: Sequence[tuple[int, DeviceConfig]],
    registry: DriverRegistry,
    source: str = "<config>",
) -> tuple[ResolvedDevice, ...]:
    """Check names are unique, load each enabled device's plugin and validate its options
    with the plugin's own model. ``devices`` pairs each entry with its index in the file."""
    issues: list[ConfigIssue] = []
    resolved: list[ResolvedDevice] = []
    seen: dict[str, int] = {}
    for index, device in devices:
        duplicate = device.name in seen
        if duplicate:
            issues.append(
                ConfigIssue(
                    f"devices.{index}.name",
                    f"duplicate device name {device.name!r} (also devices.{seen[device.name]})",
                )
            )
            # Its driver and options are still checked below: renaming it must not reveal
            # a second round of errors.
        else:
            seen[device.name] = index
        if not device.enabled:
            continue
        if device.driver not in registry:
            unknown = UnknownDriverError(
                source, f"devices.{index}.driver", device.driver, registry.names()
            )
            issues.extend(unknown.issues)
            continue
        try:
            plugin = registry.load(device.driver)
        except DriverConfigError as exc:
            issues.append(ConfigIssue(f"devices.{index}.driver", str(exc)))
            continue
        try:
            options = plugin.options_model.model_validate(device.options)
        except ValidationError as exc:
            issues.extend(_issues_from(exc, ("devices", index, "options")))
            continue
        if not duplicate:
            resolved.append(ResolvedDevice(device, plugin, options))
    if issues:
        raise ConfigError(source, issues)
    return tuple(resolved)
