"""The simulated drivers as plugins of the ``storegw.drivers`` entry-point group.

The supervisor builds a fresh driver on every restart; what an instance keeps across those
driver objects (open attempts counted by ``faults.fail_open_times``, what simulated labels
show) lives in the instance's ``context.memory``, not here.
"""

from __future__ import annotations

from devices.simulated.beacon import SimulatedBeaconOptions, SimulatedBeaconReceiver
from devices.simulated.esl import SimulatedEsl, SimulatedEslOptions
from devices.simulated.scale import SimulatedScale, SimulatedScaleOptions
from gateway.drivers.contracts import DeviceFamily, DriverPlugin

__all__ = ["BEACON", "ESL", "SCALE"]

SCALE = DriverPlugin(
    family=DeviceFamily.SCALE,
    options_model=SimulatedScaleOptions,
    factory=SimulatedScale,
    description="simulated smart shelf: load cells with scripted shoppers and restocking",
)

BEACON = DriverPlugin(
    family=DeviceFamily.BEACON,
    options_model=SimulatedBeaconOptions,
    factory=SimulatedBeaconReceiver,
    description="simulated BLE receiver: fixed beacons, carts and phones with real frames",
)

ESL = DriverPlugin(
    family=DeviceFamily.ESL,
    options_model=SimulatedEslOptions,
    factory=SimulatedEsl,
    description="simulated ESL access point with a sequential radio and checking-in labels",
)
