"""The simulated drivers as plugins of the ``storegw.drivers`` entry-point group."""

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
    description="simulated BLE receiver: fixed beacons, carts and phones",
)

ESL = DriverPlugin(
    family=DeviceFamily.ESL,
    options_model=SimulatedEslOptions,
    factory=SimulatedEsl,
    description="simulated ESL access point with a sequential radio",
)
