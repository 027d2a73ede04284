"""The simulated drivers as plugins of the ``storegw.drivers`` entry-point group.

The supervisor builds a fresh driver on every restart; two pieces of state are shared across
those driver objects (per instance name, for the life of the process): ``OPEN_ATTEMPTS``, so
``faults.fail_open_times`` counts open() calls across restarts, and ``LABEL_MEMORY``, so
simulated labels keep showing what they showed while their access point restarts. Tests that
reuse an instance name call ``OPEN_ATTEMPTS.reset()`` / ``LABEL_MEMORY.reset()``.
"""

from __future__ import annotations

from devices.simulated.beacon import SimulatedBeaconOptions, SimulatedBeaconReceiver
from devices.simulated.esl import LabelMemory, SimulatedEsl, SimulatedEslOptions
from devices.simulated.faults import OpenAttempts
from devices.simulated.scale import SimulatedScale, SimulatedScaleOptions
from gateway.drivers.contracts import DeviceFamily, DriverContext, DriverPlugin

__all__ = ["BEACON", "ESL", "LABEL_MEMORY", "OPEN_ATTEMPTS", "SCALE"]

OPEN_ATTEMPTS = OpenAttempts()
LABEL_MEMORY = LabelMemory()


def _scale(context: DriverContext, options: SimulatedScaleOptions) -> SimulatedScale:
    return SimulatedScale(context, options, open_attempts=OPEN_ATTEMPTS)


def _beacon(context: DriverContext, options: SimulatedBeaconOptions) -> SimulatedBeaconReceiver:
    return SimulatedBeaconReceiver(context, options, open_attempts=OPEN_ATTEMPTS)


def _esl(context: DriverContext, options: SimulatedEslOptions) -> SimulatedEsl:
    return SimulatedEsl(context, options, open_attempts=OPEN_ATTEMPTS, memory=LABEL_MEMORY)


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
