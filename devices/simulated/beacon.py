"""Simulated BLE receiver: fixed beacons, shopping carts moving between zones, and phones.

Advertisements carry correctly encoded frames (iBeacon, Eddystone UID/TLM; see
:mod:`devices.ble.frames`) and, like every beacon driver, what the decoders make of them
(:mod:`devices.ble.beacon_fields`). RSSI follows a
log-distance path-loss model from each emitter's simulated distance, plus Gaussian noise;
adverts below the receiver's sensitivity are not heard. Phones use resolvable private
addresses that rotate (about every 15 minutes of scenario time), as real phones do.

Adverts are scheduled on the radio's own timeline (each emitter's interval, jittered), paced in
real time; cart moves and address rotation run on scenario time (``speed`` times radio time). The
values depend only on the seed, the instance name and the number of adverts taken.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from devices.ble.beacon_fields import beacon_fields
from devices.ble.frames import (
    APPLE_COMPANY_ID,
    EDDYSTONE_SERVICE_UUID,
    eddystone_tlm,
    eddystone_uid,
    ibeacon,
)
from devices.kit.simulated import SimulatedDriver, SimulatedOptions
from gateway.drivers.contracts import Advertisement, DriverContext, Heartbeat, Reading

__all__ = ["FixedBeaconSim", "ReceiverSim", "SimulatedBeaconOptions", "SimulatedBeaconReceiver"]

_STORE_UUID = UUID("5f0c1a2e-8d7b-4c4e-9a61-3f2b7d9e0c11")
_SENSITIVITY_DBM = -100  # weaker adverts are lost, as on a real adapter
_PHONE_POWER_1M = -62  # typical phone, unknown to the receiver (no tx_power in its adverts)
_CATCH_UP_S = 1.0  # when the consumer lags more than this, skip ahead instead of bursting


class FixedBeaconSim(BaseModel):
    """A beacon fixed in the store (aisle marker, entrance), iBeacon or Eddystone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, description="Name, for people (not on air).")
    kind: Literal["ibeacon", "eddystone"] = Field("ibeacon", description="Frame format.")
    uuid: UUID = Field(_STORE_UUID, description="iBeacon proximity UUID.")
    major: int = Field(1, ge=0, le=0xFFFF, description="iBeacon major.")
    minor: int = Field(1, ge=0, le=0xFFFF, description="iBeacon minor.")
    namespace: str = Field(
        "00112233445566778899", pattern=r"^[0-9a-fA-F]{20}$", description="Eddystone namespace."
    )
    instance: str = Field(
        "000000000001", pattern=r"^[0-9a-fA-F]{12}$", description="Eddystone instance."
    )
    tx_power: int = Field(-59, ge=-100, le=-1, description="Measured power at 1 m (dBm).")
    battery_mv: int = Field(3000, ge=0, le=0xFFFF, description="Battery (Eddystone TLM).")
    temperature_c: float = Field(21.0, ge=-40, le=85, description="Temperature (TLM).")
    tlm_every: int = Field(10, ge=2, le=1000, description="Every Nth Eddystone frame is TLM.")
    interval_s: float = Field(1.0, ge=0.02, le=60, description="Advertising interval.")
    distance_m: float = Field(3.0, gt=0, le=200, description="Distance from this receiver.")


def _default_beacons() -> list[FixedBeaconSim]:
    return [
        FixedBeaconSim(id="aisle-3", kind="ibeacon", major=3, minor=1),
        FixedBeaconSim(id="entrance", kind="eddystone", instance="00000000e001", distance_m=12),
    ]


class ReceiverSim(BaseModel):
    """One receiver of a shared floor: its name and the zone it covers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, description="Receiver name.")
    zone: str = Field(min_length=1, max_length=64, description="The zone it covers.")


class SimulatedBeaconOptions(SimulatedOptions):
    """Options of ``simulated.beacon``."""

    receiver: str = Field("hci0", min_length=1, max_length=64, description="Receiver name.")
    zone: str = Field("produce", min_length=1, description="The zone this receiver covers.")
    receivers: list[ReceiverSim] = Field(
        default_factory=list,
        max_length=32,
        description="A shared floor: several receivers hearing the same carts and phones, each "
        "advert once per receiver in range (replaces receiver/zone when given).",
    )
    fixed_beacons: list[FixedBeaconSim] = Field(
        default_factory=_default_beacons, max_length=1000, description="Fixed beacons in range."
    )
    carts: int = Field(3, ge=0, le=1000, description="Shopping carts with iBeacon tags.")
    cart_zones: list[str] = Field(
        default_factory=lambda: ["entrance", "produce", "dairy", "checkout"],
        min_length=1,
        description="Zones the carts wander between.",
    )
    cart_move_interval_s: float = Field(
        45.0, gt=0, le=86_400, description="Mean time a cart stays in one zone."
    )
    cart_interval_s: float = Field(1.0, ge=0.02, le=60, description="Cart tags' interval.")
    cart_uuid: UUID = Field(_STORE_UUID, description="Cart tags' iBeacon UUID.")
    cart_major: int = Field(100, ge=0, le=0xFFFF, description="Cart tags' major; minor = cart.")
    phones: int = Field(4, ge=0, le=1000, description="Shoppers' phones (private addresses).")
    phone_interval_s: float = Field(2.0, ge=0.02, le=60, description="Phones' interval.")
    address_rotation_s: float = Field(
        900.0, gt=0, le=86_400, description="Mean lifetime of a phone's private address."
    )
    rssi_noise_db: float = Field(4.0, ge=0, le=30, description="Std-dev of RSSI noise.")
    path_loss_exponent: float = Field(2.2, ge=1.5, le=5, description="Indoor path loss.")
    heartbeat_s: float = Field(5.0, gt=0, le=60, description="Heartbeat when nothing is heard.")
    speed: float = Field(
        1.0, gt=0, le=100_000, description="Scenario time compression (carts, rotation)."
    )


@dataclass(slots=True)
class _Emitter:
    kind: Literal["fixed", "cart", "phone"]
    address: str
    interval_s: float
    distance_m: float
    index: int = 0
    spec: FixedBeaconSim | None = None
    zone: str = ""
    next_move: float = 0.0  # scenario time
    address_expires: float = 0.0  # scenario time
    adverts: int = 0
    uptime_offset_s: float = 0.0
    distances: dict[str, float] = field(default_factory=dict)  # per receiver (shared floor)


class SimulatedBeaconReceiver(SimulatedDriver[SimulatedBeaconOptions]):
    """A :class:`~gateway.drivers.contracts.BeaconReceiver` over a scripted store floor."""

    def __init__(self, context: DriverContext, options: SimulatedBeaconOptions) -> None:
        super().__init__(context, options)
        self._rng = self._random()
        self._radio_s = 0.0  # time on the radio's own timeline
        self._emitters = self._build()
        # (due on the radio timeline, emitter index): a stable order for equal times
        self._due = [(self._rng.uniform(0, e.interval_s), i) for i, e in enumerate(self._emitters)]
        heapq.heapify(self._due)
        self._identity_keys: dict[str, bytes] = {}

    def set_identity_keys(self, keys: Mapping[str, bytes]) -> None:
        """Keep the enrolled identity keys (the simulated phones do not use IRKs yet)."""
        self._identity_keys = dict(keys)

    @property
    def _scenario_s(self) -> float:
        return self._radio_s * self._options.speed

    def _build(self) -> list[_Emitter]:
        options, rng = self._options, self._rng
        emitters = [
            _Emitter(
                "fixed",
                self._static_address(),
                spec.interval_s,
                spec.distance_m,
                spec=spec,
                uptime_offset_s=rng.uniform(3_600, 90 * 86_400),
            )
            for spec in options.fixed_beacons
        ]
        for index in range(options.carts):
            cart = _Emitter("cart", self._static_address(), options.cart_interval_s, 0.0, index)
            self._move_cart(cart)
            emitters.append(cart)
        emitters.extend(
            _Emitter(
                "phone",
                self._private_address(),
                options.phone_interval_s,
                rng.uniform(1.0, 20.0),
                index,
                address_expires=self._rotation_gap(),
            )
            for index in range(options.phones)
        )
        return emitters

    def _static_address(self) -> str:
        first = self._rng.randrange(256) | 0xC0  # static random address: top bits 11
        return ":".join(f"{b:02X}" for b in [first, *self._rng.randbytes(5)])

    def _private_address(self) -> str:
        first = (self._rng.randrange(256) & 0x3F) | 0x40  # resolvable private: top bits 01
        return ":".join(f"{b:02X}" for b in [first, *self._rng.randbytes(5)])

    def _rotation_gap(self) -> float:
        return self._options.address_rotation_s * self._rng.uniform(0.8, 1.2)

    @property
    def _receivers(self) -> list[ReceiverSim]:
        options = self._options
        return options.receivers or [ReceiverSim(name=options.receiver, zone=options.zone)]

    def _move_cart(self, cart: _Emitter) -> None:
        options, rng = self._options, self._rng
        cart.zone = rng.choice(options.cart_zones)
        for receiver in self._receivers:
            near = cart.zone == receiver.zone
            cart.distances[receiver.name] = (
                rng.uniform(1.0, 4.0 if options.receivers else 8.0)
                if near
                else rng.uniform(15.0, 40.0)
            )
        cart.distance_m = cart.distances[self._receivers[0].name]
        cart.next_move = self._scenario_s + rng.expovariate(1.0 / options.cart_move_interval_s)

    async def readings(self) -> AsyncIterator[Reading]:
        loop = asyncio.get_running_loop()
        clock = self._context.clock
        heartbeat_s = self._options.heartbeat_s
        self.faults.start()
        origin = loop.time() - self._radio_s  # loop time at radio time 0
        last_yield = loop.time()
        while True:
            deadline = last_yield + heartbeat_s
            if self._due:
                deadline = min(deadline, origin + self._due[0][0])
            await self.faults.sleep_until(deadline)
            now = loop.time()
            if self._due and now >= origin + self._due[0][0]:
                due, index = heapq.heappop(self._due)
                emitter = self._emitters[index]
                self._radio_s = due
                jitter = self._rng.uniform(0.0, 0.01)  # BLE adds 0-10 ms to each interval
                heapq.heappush(self._due, (due + emitter.interval_s + jitter, index))
                if now - (origin + due) > _CATCH_UP_S:
                    origin = now - due
                for advert in self._advertise(emitter, clock.monotonic()):
                    last_yield = now
                    yield advert
            if now - last_yield >= heartbeat_s:
                last_yield = now
                yield Heartbeat(clock.monotonic(), "no advertisement heard")

    def _advertise(self, emitter: _Emitter, monotonic: float) -> list[Advertisement]:
        options, rng = self._options, self._rng
        emitter.adverts += 1
        manufacturer: dict[int, bytes] = {}
        service: dict[str, bytes] = {}
        uuids: tuple[str, ...] = ()
        tx_power: int | None = None
        power_1m = -59
        if emitter.kind == "fixed":
            spec = emitter.spec
            assert spec is not None
            power_1m = spec.tx_power
            if spec.kind == "ibeacon":
                manufacturer[APPLE_COMPANY_ID] = ibeacon(
                    spec.uuid, spec.major, spec.minor, spec.tx_power
                )
            else:
                uuids = (EDDYSTONE_SERVICE_UUID,)
                if emitter.adverts % spec.tlm_every == 0:
                    service[EDDYSTONE_SERVICE_UUID] = eddystone_tlm(
                        spec.battery_mv,
                        spec.temperature_c + rng.gauss(0.0, 0.2),
                        emitter.adverts,
                        emitter.uptime_offset_s + self._scenario_s,
                    )
                else:
                    service[EDDYSTONE_SERVICE_UUID] = eddystone_uid(
                        spec.tx_power + 41,  # Eddystone states the power at 0 m
                        bytes.fromhex(spec.namespace),
                        bytes.fromhex(spec.instance),
                    )
        elif emitter.kind == "cart":
            if self._scenario_s >= emitter.next_move:
                self._move_cart(emitter)
            manufacturer[APPLE_COMPANY_ID] = ibeacon(
                options.cart_uuid, options.cart_major, emitter.index, power_1m
            )
        else:
            if self._scenario_s >= emitter.address_expires:
                emitter.address = self._private_address()
                emitter.address_expires = self._scenario_s + self._rotation_gap()
            # Shoppers walk about: a bounded random walk of the distance.
            emitter.distance_m = min(30.0, max(0.5, emitter.distance_m + rng.gauss(0.0, 0.3)))
            power_1m = _PHONE_POWER_1M
            manufacturer[APPLE_COMPANY_ID] = bytes([0x10, 0x05, 0x01]) + rng.randbytes(4)
            tx_power = 12  # phones state their radiated power, not a 1 m reference
        decoded = beacon_fields(manufacturer, service)
        adverts: list[Advertisement] = []
        for receiver in self._receivers:
            distance = self._distance(emitter, receiver.name)
            path_loss = 10 * options.path_loss_exponent * math.log10(distance)
            rssi = round(power_1m - path_loss + rng.gauss(0.0, options.rssi_noise_db))
            if rssi < _SENSITIVITY_DBM:
                continue
            adverts.append(
                Advertisement(
                    receiver=receiver.name,
                    address=emitter.address,
                    rssi=min(0, rssi),
                    monotonic=monotonic,
                    observed_at=self._context.clock.utc_now(),
                    manufacturer_data=manufacturer,
                    service_data=service,
                    service_uuids=uuids,
                    tx_power=tx_power,
                    beacon=decoded.beacon,
                    measured_power=decoded.measured_power,
                    telemetry=decoded.telemetry,
                )
            )
        return adverts

    def _distance(self, emitter: _Emitter, receiver: str) -> float:
        """The emitter's distance from ``receiver``: carts by their zone, phones on a walk of
        their own per receiver (shared floor), fixed beacons where configured."""
        if not self._options.receivers or emitter.kind == "fixed":
            return emitter.distance_m
        if emitter.kind == "cart":
            return emitter.distances.get(receiver, emitter.distance_m)
        walked = emitter.distances.get(receiver)
        if walked is None:
            walked = self._rng.uniform(1.0, 20.0)
        walked = min(30.0, max(0.5, walked + self._rng.gauss(0.0, 0.3)))
        emitter.distances[receiver] = walked
        return walked
