"""Publishing a driver: :func:`driver_plugin` builds the ``PLUGIN`` of a driver module.

::

    PLUGIN = driver_plugin(
        AcmeScale,  # the driver class: AcmeScale(context, options), no I/O
        family=DeviceFamily.SCALE,
        options=AcmeOptions,
        description="ACME load-cell transmitter (Modbus RTU)",
    )

It checks what the supervisor and ``check-config`` rely on when the module is imported (the
registry turns a failed import into a configuration error naming the driver, so a mistake
shows at ``storegw check-config``, not in the field): the options model refuses unknown keys,
and a driver class has every member of its family's contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from gateway.drivers.contracts import DeviceFamily, Driver, DriverContext, DriverPlugin

__all__ = ["FAMILY_MEMBERS", "driver_plugin"]

_Options = TypeVar("_Options", bound=BaseModel)

#: What a driver of each family must have (``gateway.drivers.contracts``' protocols).
FAMILY_MEMBERS: dict[DeviceFamily, tuple[str, ...]] = {
    DeviceFamily.SCALE: ("open", "readings", "close", "channels", "zero", "tare"),
    DeviceFamily.BEACON: ("open", "readings", "close"),
    DeviceFamily.ESL: ("open", "readings", "close", "labels_per_minute", "push", "flash"),
}


def driver_plugin(
    factory: Callable[[DriverContext, _Options], Driver],
    *,
    family: DeviceFamily,
    options: type[_Options],
    description: str,
    silence_limit: float | None = None,
) -> DriverPlugin:
    """The plugin to publish under the ``storegw.drivers`` entry-point group.

    ``factory`` is usually the driver class; ``silence_limit`` overrides the family's default
    (seconds without any reading, Heartbeat included, before the supervisor restarts it).
    Raises TypeError for an options model that accepts unknown keys or a driver class
    missing a member of its family's contract.
    """
    if options.model_config.get("extra") != "forbid":
        raise TypeError(
            f"{options.__name__} must forbid unknown keys (model_config extra='forbid'), so a "
            "misspelt option is an error instead of being ignored"
        )
    if isinstance(factory, type):
        missing = [name for name in FAMILY_MEMBERS[family] if not hasattr(factory, name)]
        if missing:
            raise TypeError(
                f"{factory.__name__} lacks {', '.join(missing)} of the {family.value} contract"
            )
    return DriverPlugin(
        family=family,
        options_model=options,
        factory=factory,
        description=description,
        silence_limit=silence_limit,
    )
