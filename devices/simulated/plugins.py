"""The simulated drivers as plugins of the ``storegw.drivers`` entry-point group.

``OPEN_ATTEMPTS`` is the one piece of state shared across driver objects: the supervisor builds
a fresh driver on every restart, and ``faults.fail_open_times`` must count open() calls across
those restarts (per instance name, for the life of the process). Tests that reuse an instance
name call ``OPEN_ATTEMPTS.reset()``.
"""

from __future__ import annotations

from devices.simulated.beacon import SimulatedBeaconOptions, SimulatedBeaconReceiver
from devices.simulated.esl import SimulatedEsl, SimulatedEslOptions
from devices.simulated.faults import OpenAttempts
from devices.simulated.scale import SimulatedScale, SimulatedScaleOptions
from gateway.drivers.contracts import DeviceFamily, DriverContext, DriverPlugin

__all__ = ["BEACON", "ESL", "OPEN_ATTEMPTS", "SCALE"]

OPEN_ATTEMPTS = OpenAttempts()


def _scale(context: DriverContext, options: SimulatedScaleOptions) -> SimulatedScale:
    return SimulatedScale(context, options, open_attempts=OPEN_ATTEMPTS)


def _beacon(context: DriverContext, options: SimulatedBeaconOptions) -> SimulatedBeaconReceiver:
    return SimulatedBeaconReceiver(context, options, open_attempts=OPEN_ATTEMPTS)


def _esl(context: DriverContext, options: SimulatedEslOptions) -> SimulatedEsl:
    return SimulatedEsl(context, options, open_attempts=OPEN_ATTEMPTS)


SCALE = DriverPlugin(
    family=DeviceFamily.SCALE,
    options_model=SimulatedScaleOptions,
    factory=_scale,
    description="simulated smart shelf: load cells with scripted shoppers and restocking",
)

BEACON = DriverPlugin(
    family=DeviceFamily.BEACON,
    options_model=SimulatedBeaconOptions,
    factory=_beacon,
    description="simulated BLE receiver: fixed beacons, carts and phones with real frames",
)

ESL = DriverPlugin(
    family=DeviceFamily.ESL,
    options_model=SimulatedEslOptions,
    factory=_esl,
    description="simulated ESL access point with a sequential radio and checking-in labels",
)
