"""Finding drivers by name through the ``storegw.drivers`` entry-point group.

Only the drivers a configuration names are imported, so a store with just scales never pays
for importing bleak. Third parties ship drivers by declaring an entry point in their own
package; nothing scans folders.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points

from gateway.drivers.contracts import DriverPlugin
from gateway.errors import DriverConfigError

__all__ = ["ENTRY_POINT_GROUP", "DriverRegistry"]

_LOGGER = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "storegw.drivers"


class DriverRegistry:
    """Driver plugins by name; loaded lazily and cached."""

    def __init__(
        self,
        entry_points_by_name: Mapping[str, EntryPoint] | None = None,
        *,
        plugins: Mapping[str, DriverPlugin] | None = None,
    ) -> None:
        self._entry_points = dict(entry_points_by_name or {})
        self._loaded: dict[str, DriverPlugin] = dict(plugins or {})

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> DriverRegistry:
        return cls({ep.name: ep for ep in entry_points(group=group)})

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entry_points.keys() | self._loaded.keys()))

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._entry_points

    def load(self, name: str) -> DriverPlugin:
        """The plugin for ``name``. KeyError if unknown; DriverConfigError if it fails to load."""
        plugin = self._loaded.get(name)
        if plugin is not None:
            return plugin
        entry_point = self._entry_points[name]
        try:
            loaded = entry_point.load()
        except Exception as exc:  # a broken third-party package must not take the gateway down
            raise DriverConfigError(
                f"driver plugin {name!r} ({entry_point.value}) failed to import: {exc!r}"
            ) from exc
        if not isinstance(loaded, DriverPlugin):
            raise DriverConfigError(
                f"entry point {name!r} ({entry_point.value}) is not a DriverPlugin"
            )
        _LOGGER.debug("loaded driver plugin %s from %s", name, entry_point.value)
        self._loaded[name] = loaded
        return loaded
