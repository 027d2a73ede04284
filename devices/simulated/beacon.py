"""Simulated BLE receiver: fixed beacons, shopping carts moving between zones, and phones.

Advertisements carry correctly encoded frames (iBeacon, Eddystone UID/TLM) so the decoders
downstream run on real bytes. Phones use rotating resolvable private addresses, as real phones
do, which is what the presence logic must cope with.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from devices.simulated.faults import FaultOptions, FaultState
from devices.simulated.frames import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    eddystone_tlm,
    eddystone_uid,
    ibeacon,
)
from gateway.drivers.contracts import Advertisement, DriverContext, Heartbeat, Reading

__all__ = ["FixedBeaconSim", "SimulatedBeaconOptions", "SimulatedBeaconReceiver"]

_STORE_UUID = UUID("5f0c1a2e-8d7b-4c4e-9a61-3f2b7d9e0c11")
_TICK_S = 0.1


class FixedBeaconSim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64)
    kind: Literal["ibeacon", "eddystone"] = "ibeacon"
    uuid: UUID = _STORE_UUID
    major: int = Field(1, ge=0, le=0xFFFF)
    minor: int = Field(1, ge=0, le=0xFFFF)
    namespace: str = Field("00112233445566778899", pattern=r"^[0-9a-fA-F]{20}$")
    instance: str = Field("000000000001", pattern=r"^[0-9a-fA-F]{12}$")
    tx_power: int = Field(-59, ge=-128, le=-1, description="Measured power at 1 m (dBm).")
    battery_mv: int = Field(3000, ge=0, le=5000)
    interval_s: float = Field(1.0, ge=0.02, le=60, description="Advertising interval.")
    rssi: int = Field(-65, ge=-127, le=0, description="Mean RSSI at this receiver.")


def _default_beacons() -> list[FixedBeaconSim]:
    return [
        FixedBeaconSim(id="aisle-3", kind="ibeacon", major=3, minor=1),
        FixedBeaconSim(id="entrance", kind="eddystone", instance="00000000e001", rssi=-78),
    ]


class SimulatedBeaconOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    receiver: str = Field("hci0", min_length=1)
    zone: str = Field("produce", description="The zone this receiver covers.")
    fixed_beacons: list[FixedBeaconSim] = Field(default_factory=_default_beacons)
    carts: int = Field(3, ge=0, le=500, description="Shopping carts with iBeacon tags.")
    cart_zones: list[str] = Field(
        default_factory=lambda: ["entrance", "produce", "dairy", "checkout"], min_length=1
    )
    cart_move_interval_s: float = Field(45.0, gt=0, description="Mean time in one zone.")
    cart_interval_s: float = Field(1.0, ge=0.02, le=60)
    phones: int = Field(4, ge=0, le=500, description="Shoppers' phones (private addresses).")
    phone_interval_s: float = Field(2.0, ge=0.02, le=60)
    address_rotation_s: float = Field(900.0, gt=0, description="Private address lifetime.")
    rssi_noise_db: float = Field(4.0, ge=0, le=30)
    speed: float = Field(1.0, gt=0, le=10_000)
    faults: FaultOptions = FaultOptions()


@dataclass(slots=True)
class _Emitter:
    kind: Literal["fixed", "cart", "phone"]
    address: str
    interval_s: float
    next_at: float
    index: int = 0
    zone: str = ""
    next_move: float = 0.0
    adverts: int = 0
    address_expires: float = 0.0
    spec: FixedBeaconSim | None = None
    extra: dict[str, int] = field(default_factory=dict)


class SimulatedBeaconReceiver:
    """A :class:`~gateway.drivers.contracts.BeaconReceiver` over a scripted store floor."""

    def __init__(self, context: DriverContext, options: SimulatedBeaconOptions) -> None:
        self._context = context
        self._options = options
        self._rng = random.Random(f"{options.seed}:{context.name}")  # noqa: S311 - simulation
        self._scenario_s = 0.0
        self._faults = FaultState(context.name, options.faults, context.clock.monotonic())
        self._emitters = self._build()

    def _build(self) -> list[_Emitter]:
        options, rng = self._options, self._rng
        emitters = [
            _Emitter("fixed", self._static_address(), spec.interval_s, rng.random(), spec=spec)
            for spec in options.fixed_beacons
        ]
        emitters.extend(
            _Emitter(
                "cart",
                self._static_address(),
                options.cart_interval_s,
                rng.random(),
                index=index,
                zone=rng.choice(options.cart_zones),
                next_move=rng.expovariate(1 / options.cart_move_interval_s),
            )
            for index in range(options.carts)
        )
        emitters.extend(
            _Emitter(
                "phone",
                self._private_address(),
                options.phone_interval_s,
                rng.random(),
                index=index,
                address_expires=options.address_rotation_s * (0.5 + rng.random()),
            )
            for index in range(options.phones)
        )
        return emitters

    def _static_address(self) -> str:
        first = (self._rng.randrange(256) | 0xC0) & 0xFF  # static random: top bits 11
        rest = [self._rng.randrange(256) for _ in range(5)]
        return ":".join(f"{byte:02X}" for byte in [first, *rest])

    def _private_address(self) -> str:
        first = (self._rng.randrange(256) & 0x3F) | 0x40  # resolvable private: top bits 01
        rest = [self._rng.randrange(256) for _ in range(5)]
        return ":".join(f"{byte:02X}" for byte in [first, *rest])

    async def open(self) -> None:
        await self._faults.on_open()

    async def close(self) -> None:
        return None

    async def readings(self) -> AsyncIterator[Reading]:
        clock = self._context.clock
        self._faults.started = clock.monotonic()
        elapsed = 0.0
        last_heartbeat = 0.0
        while True:
            await asyncio.sleep(_TICK_S)
            await self._faults.on_tick(clock.monotonic())
            elapsed += _TICK_S
            self._scenario_s += _TICK_S * self._options.speed
            emitted = False
            for emitter in self._emitters:
                if elapsed < emitter.next_at:
                    continue
                emitter.next_at = elapsed + emitter.interval_s * (0.9 + 0.2 * self._rng.random())
                advert = self._advertise(emitter, clock.monotonic())
                if advert is not None:
                    emitted = True
                    yield advert
            if not emitted and elapsed - last_heartbeat >= 5.0:
                last_heartbeat = elapsed
                yield Heartbeat(clock.monotonic(), "no beacons in range")

    def _advertise(self, emitter: _Emitter, monotonic: float) -> Advertisement | None:
        options, rng = self._options, self._rng
        emitter.adverts += 1
        manufacturer: dict[int, bytes] = {}
        service: dict[str, bytes] = {}
        uuids: tuple[str, ...] = ()
        tx_power: int | None = None
        if emitter.kind == "fixed":
            spec = emitter.spec
            assert spec is not None
            mean_rssi = spec.rssi
            if spec.kind == "ibeacon":
                manufacturer[APPLE_COMPANY_ID] = ibeacon(
                    spec.uuid, spec.major, spec.minor, spec.tx_power
                )
            else:
                uuids = (EDDYSTONE_SERVICE_UUID,)
                if emitter.adverts % 10 == 0:
                    service[EDDYSTONE_SERVICE_UUID] = eddystone_tlm(
                        spec.battery_mv, 21.5, emitter.adverts, self._scenario_s
                    )
                else:
                    service[EDDYSTONE_SERVICE_UUID] = eddystone_uid(
                        spec.tx_power + 41,
                        bytes.fromhex(spec.namespace),
                        bytes.fromhex(spec.instance),
                    )
        elif emitter.kind == "cart":
            if self._scenario_s >= emitter.next_move:
                emitter.zone = rng.choice(options.cart_zones)
                emitter.next_move = self._scenario_s + rng.expovariate(
                    1 / options.cart_move_interval_s
                )
            mean_rssi = -60 if emitter.zone == options.zone else -88
            manufacturer[APPLE_COMPANY_ID] = ibeacon(_STORE_UUID, 100, emitter.index, -59)
        else:
            if self._scenario_s >= emitter.address_expires:
                emitter.address = self._private_address()
                emitter.address_expires = self._scenario_s + options.address_rotation_s
            mean_rssi = -70
            manufacturer[APPLE_COMPANY_ID] = bytes([0x10, 0x05, 0x01]) + rng.randbytes(4)
            tx_power = 12
        rssi = round(mean_rssi + rng.gauss(0, options.rssi_noise_db))
        if rssi < -100:
            return None  # out of range of this receiver
        return Advertisement(
            receiver=options.receiver,
            address=emitter.address,
            rssi=max(-127, min(0, rssi)),
            monotonic=monotonic,
            observed_at=self._context.clock.utc_now(),
            manufacturer_data=manufacturer,
            service_data=service,
            service_uuids=uuids,
            tx_power=tx_power,
        )
