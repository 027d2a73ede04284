"""The contract between a feature and the wiring: what a feature declares at its edges, and
what the wiring gives it to build itself.

A *feature* (``shelves``, ``labels``, ``prices``; later ``presence``) is one package under
``gateway/`` that owns, like a Home Assistant integration, everything at its edges:

- its configuration section, declared in ``<package>/config.py`` and named by :attr:`section`;
- its control-socket commands (:meth:`control_handlers`: name → handler, reading their
  arguments with :mod:`gateway.control.args`);
- its HQ commands (:meth:`hq_commands`, on ``down/cmd/{name}``);
- its long-running tasks (:meth:`tasks`: task name → coroutine function);
- its block of ``storegw status`` (:meth:`status`: top-level key → JSON-ready value).

The package's ``feature.py`` builds the feature object from :class:`FeatureServices` (and what
it needs of another feature, named in its signature). ``gateway/app.py`` only wires: it builds
the features, registers what each declares with the control server and the command processor,
spawns their tasks in the root task group and composes the status from their blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.alerts import Alerts
from gateway.clock import Clock
from gateway.control.server import Handler
from gateway.drivers.contracts import DeviceFamily
from gateway.hub import ReadingHub
from gateway.store.database import Database
from gateway.store.outbox import Outbox
from gateway.sync.commands import CommandSpec

__all__ = ["Feature", "FeatureServices", "LiveDevices", "TaskFactory"]

#: What a feature's task runs: called once, when the wiring spawns it under the root group.
TaskFactory = Callable[[], Coroutine[Any, Any, None]]


class LiveDevices(Protocol):
    """The configured devices and their running drivers, as a feature may ask about them."""

    def configured(self, family: DeviceFamily) -> tuple[str, ...]:
        """The devices of ``family`` as configured now (a reload may change them)."""
        ...

    def driver(self, name: str) -> object | None:
        """The live driver of device ``name`` (for commands); None while it is not running."""
        ...


@dataclass(frozen=True, slots=True)
class FeatureServices:
    """The shared services every feature is built with."""

    database: Database
    outbox: Outbox
    alerts: Alerts
    clock: Clock
    hub: ReadingHub
    devices: LiveDevices


class Feature(Protocol):
    """A feature as the wiring sees it, once built (see the module docstring)."""

    @property
    def section(self) -> str:
        """Its configuration section (``[downlink]`` for prices), in ``<package>/config.py``."""
        ...

    def control_handlers(self) -> Mapping[str, Handler]:
        """Its control-socket commands."""
        ...

    def hq_commands(self) -> Sequence[CommandSpec]:
        """Its commands from HQ (registered while MQTT is enabled)."""
        ...

    def tasks(self) -> Mapping[str, TaskFactory]:
        """Its long-running tasks, by task name; asked once, when the drivers are started."""
        ...

    async def status(self) -> Mapping[str, object]:
        """Its top-level keys of ``storegw status``."""
        ...
