"""SIGHUP: the configuration read again, and what of it applies while the daemon runs.

A file that does not validate is refused and the running configuration kept. Otherwise the
devices are handed to :meth:`~gateway.drivers.supervisor.Supervisor.apply` (only changed drivers
restart), logging levels change at once, and a change to any other section is logged as
taking effect at the next restart — the settings the daemon goes on with keep those sections
as they were, so ``storegw status`` shows what runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.config import GatewaySettings, load_config
from gateway.drivers.config import ResolvedDevice
from gateway.drivers.registry import DriverRegistry
from gateway.drivers.supervisor import Supervisor
from gateway.errors import ConfigError
from gateway.hub import ReadingHub

__all__ = ["Reload", "ReloadOutcome", "reload_config"]

_LOGGER = logging.getLogger(__name__)

#: Sections that apply at once; a change to any other waits for the next restart.
_LIVE_SECTIONS = frozenset({"devices", "logging"})


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    at: datetime
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Reload:
    """What the daemon goes on with (the running configuration again when refused)."""

    settings: GatewaySettings
    devices: tuple[ResolvedDevice, ...]
    outcome: ReloadOutcome


def reload_config(
    path: Path,
    *,
    running: GatewaySettings,
    devices: tuple[ResolvedDevice, ...],
    registry: DriverRegistry,
    environ: Mapping[str, str] | None,
    supervisor: Supervisor,
    hub: ReadingHub,
    now: datetime,
) -> Reload:
    """Read ``path`` again and apply what applies now (see the module docstring)."""
    try:
        settings, loaded = load_config(path, registry=registry, environ=environ)
    except ConfigError as exc:
        _LOGGER.error("reload refused, keeping the running configuration: %s", exc)
        return Reload(running, devices, ReloadOutcome(now, ok=False, detail=str(exc)))
    changed_sections = [
        name
        for name in GatewaySettings.model_fields
        if name not in _LIVE_SECTIONS and getattr(settings, name) != getattr(running, name)
    ]
    if changed_sections:
        _LOGGER.warning(
            "reload: changes to [%s] take effect at the next restart",
            "], [".join(changed_sections),
        )
    if settings.logging != running.logging:
        root = logging.getLogger()
        root.setLevel(settings.logging.level)
        for name, level in settings.logging.levels.items():
            logging.getLogger(name).setLevel(level)
    applied = supervisor.apply(loaded)
    for name in applied.stopped:
        hub.forget(name)
    detail = (
        f"started {list(applied.started)}, restarted {list(applied.restarted)}, "
        f"stopped {list(applied.stopped)}, unchanged {len(applied.unchanged)}"
    )
    _LOGGER.info("configuration reloaded: %s", detail)
    kept = settings.model_copy(update={name: getattr(running, name) for name in changed_sections})
    return Reload(kept, loaded, ReloadOutcome(now, ok=True, detail=detail))
