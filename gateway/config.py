"""Configuration: one TOML file plus ``STOREGW_`` environment overrides (``__`` nests).

``load_config(path)`` returns a validated :class:`GatewaySettings`; every problem, from TOML
syntax to a driver's own options, is collected into one :class:`~gateway.errors.ConfigError`
listing each bad key by its dotted path (``devices.1.options.port``) and reason, so a technician
fixes them all in one go. Environment variables win over the file (for example
``STOREGW_MQTT__PORT=1884``). Durations are seconds, suffixed ``_s``.

This module only composes: each section's model belongs to the package that uses it and turns it
into that package's domain objects (``[mqtt]`` :mod:`gateway.sync.config`, ``[storage]`` and
``[outbox]`` :mod:`gateway.store.config`, ``[downlink]`` :mod:`gateway.prices.config`,
``[labels]`` :mod:`gateway.labels.config`, ``[control]`` :mod:`gateway.control.config`,
``[supervisor]`` and ``[[devices]]`` :mod:`gateway.drivers.config`, ``[shelves]``
:mod:`gateway.shelves.config`, ``[presence]`` :mod:`gateway.presence.config`). Here are the
gateway-wide sections only the wiring reads (``[store]``, ``[clock]``, ``[logging]``), loading,
the checks that span sections (a slot names a configured scale) and the resolution of each
device's driver and options through the registry.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.clock import ClockSyncSource
from gateway.control.config import ControlConfig
from gateway.drivers.config import DeviceConfig, ResolvedDevice, SupervisorConfig
from gateway.drivers.contracts import DeviceFamily
from gateway.drivers.registry import DriverRegistry
from gateway.errors import ConfigError, ConfigIssue, DriverConfigError, UnknownDriverError
from gateway.labels.config import LabelsConfig
from gateway.presence.config import PresenceConfig
from gateway.prices.config import DownlinkConfig
from gateway.section import ConfigSection
from gateway.shelves.config import ShelvesConfig
from gateway.store.config import OutboxConfig, StorageConfig
from gateway.sync.config import MqttConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ClockConfig",
    "GatewaySettings",
    "LoggingConfig",
    "StoreConfig",
    "load_config",
    "parse_config",
    "resolve_devices",
    "slot_device_issues",
]

DEFAULT_CONFIG_PATH = Path("/etc/storegw/gateway.toml")

_LOG_LEVEL = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class StoreConfig(ConfigSection):
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


class ClockConfig(ConfigSection):
    sync: ClockSyncSource = ClockSyncSource.AUTO


class LoggingConfig(ConfigSection):
    level: _LOG_LEVEL = "INFO"
    levels: dict[str, _LOG_LEVEL] = Field(default_factory=dict)


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
    presence: PresenceConfig = PresenceConfig()

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
