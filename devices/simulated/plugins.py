"""The simulated drivers as plugins of the ``storegw.drivers`` entry-point group.

The supervisor builds a fresh driver on every restart; what an instance keeps across those
driver objects (open attempts counted by ``faults.fail_open_times``, what simulated labels
show) lives in the instance's ``context.memory``, not here.
"""

from __future__ import annotations

from devices.kit.plugin import driver_plugin
from devices.simulated.beacon import SimulatedBeaconOptions, SimulatedBeaconReceiver
from devices.simulated.esl import SimulatedEsl, SimulatedEslOptions
from devices.simulated.scale import SimulatedScale, SimulatedScaleOptions
from gateway.drivers.contracts import DeviceFamily

__all__ = ["BEACON", "ESL", "SCALE"]

SCALE = driver_plugin(
    SimulatedScale,
    family=DeviceFamily.SCALE,
    options=SimulatedScaleOptions,
    description="simulated smart shelf: load cells with scripted shoppers and restocking",
)

BEACON = driver_plugin(
    SimulatedBeaconReceiver,
    family=DeviceFamily.BEACON,
    options=SimulatedBeaconOptions,
    description="simulated BLE receiver: fixed beacons, carts and phones with real frames",
)

ESL = driver_plugin(
    SimulatedEsl,
    family=DeviceFamily.ESL,
    options=SimulatedEslOptions,
    description="simulated ESL access point with a sequential radio and checking-in labels",
)
