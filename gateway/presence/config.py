"""The ``[presence]`` section: zones (receivers and an RSSI threshold), enrolled store tags and
identity keys, fixed beacons to watch, and every number of the presence logic with its default
(:class:`~gateway.presence.zone_tracker.PresenceSettings`,
:class:`~gateway.presence.visits.VisitRules`)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from gateway.presence.visits import VisitRules
from gateway.presence.zone_tracker import PresenceSettings, ZoneSpec
from gateway.section import ConfigSection

__all__ = [
    "FixedBeaconConfig",
    "IdentityKeyConfig",
    "PresenceConfig",
    "TagConfig",
    "ZoneConfig",
    "parse_beacon_id",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_FORMATS = ("ibeacon", "altbeacon", "eddystone")


def parse_beacon_id(text: str) -> str:
    """A beacon id as drivers name it (``<format>:<key>``, lower case); ValueError otherwise."""
    fmt, _, key = text.strip().lower().partition(":")
    if fmt not in _FORMATS or not key:
        raise ValueError(
            f"{text!r} is not a beacon id: <format>:<key> with format one of {', '.join(_FORMATS)}"
            " (ibeacon:<uuid>:<major>:<minor>, altbeacon:<40 hex>, eddystone:<20 hex>:<12 hex>)"
        )
    parts = key.split(":")
    hexdigits = set("0123456789abcdef")
    if fmt == "ibeacon":
        ok = len(parts) == 3 and all(p.isdigit() and int(p) <= 0xFFFF for p in parts[1:])
        ok = ok and len(parts[0]) == 36 and set(parts[0].replace("-", "")) <= hexdigits
    elif fmt == "altbeacon":
        ok = len(parts) == 1 and len(key) == 40 and set(key) <= hexdigits
    else:
        ok = len(parts) == 2 and len(parts[0]) == 20 and len(parts[1]) == 12
        ok = ok and set(parts[0] + parts[1]) <= hexdigits
    if not ok:
        raise ValueError(f"{text!r} is not a well-formed {fmt} id")
    return f"{fmt}:{key}"


class ZoneConfig(ConfigSection):
    """A zone of the store floor: the receivers that cover it and its entry threshold."""

    name: str = Field(pattern=NAME_PATTERN, description="Zone name, e.g. produce.")
    receivers: list[str] = Field(
        min_length=1,
        max_length=32,
        description="Receiver names as the beacon drivers report them (adapter or node).",
    )
    enter_rssi: float = Field(
        -65.0, ge=-110, le=0, description="Smoothed RSSI (dBm) at or above which a tag is inside."
    )


class TagConfig(ConfigSection):
    """A store-owned tag (cart, basket, badge) whose visits are reported one by one."""

    name: str = Field(pattern=NAME_PATTERN, description="Tag name sent to HQ, e.g. cart-17.")
    beacon: str = Field(description="Its beacon id, e.g. ibeacon:<uuid>:100:17.")

    @field_validator("beacon")
    @classmethod
    def _beacon_id(cls, value: str) -> str:
        return parse_beacon_id(value)


class IdentityKeyConfig(ConfigSection):
    """An enrolled device with a rotating address (an opted-in app user's phone), resolved by
    its identity resolving key: its visits are reported by this name."""

    name: str = Field(pattern=NAME_PATTERN, description="Name sent to HQ.")
    irk: str = Field(
        pattern=r"^[0-9a-fA-F]{32}$",
        description="The 16-byte identity resolving key as 32 hex digits, most significant first.",
    )


class FixedBeaconConfig(ConfigSection):
    """A beacon fixed in the store whose health is watched (last seen, battery, temperature)."""

    name: str = Field(pattern=NAME_PATTERN, description="Name, e.g. aisle-3-marker.")
    beacon: str = Field(description="Its beacon id.")
    battery_low_mv: int = Field(2500, ge=0, le=10_000, description="Alert below this (TLM).")
    missing_after_s: float = Field(
        900.0, ge=10, le=7 * 86_400, description="Alert when unheard this long."
    )

    @field_validator("beacon")
    @classmethod
    def _beacon_id(cls, value: str) -> str:
        return parse_beacon_id(value)


class PresenceConfig(ConfigSection):
    """``[presence]``: off unless zones or fixed beacons are configured."""

    count_anonymous: bool = Field(
        True,
        description="Count non-enrolled devices (pseudonymised) in the zone aggregates; "
        "false: only enrolled tags are tracked and every other advert is dropped at ingestion.",
    )
    aggregate_interval_s: float = Field(
        300.0, ge=10, le=86_400, description="Length of a zone.aggregate interval."
    )
    pseudonym_bytes: int = Field(
        8, ge=4, le=16, description="Bytes of the keyed hash that stands for a device's address."
    )
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=256)
    tags: list[TagConfig] = Field(default_factory=list, max_length=100_000)
    identity_keys: list[IdentityKeyConfig] = Field(default_factory=list, max_length=10_000)
    fixed_beacons: list[FixedBeaconConfig] = Field(default_factory=list, max_length=10_000)
    # The logic's tuning (gateway/presence/zone_tracker.py, visits.py).
    bin_s: float = Field(1.0, gt=0, le=10, description="RSSI bin: the strongest per bin.")
    ema_alpha: float = Field(0.7, gt=0, le=1, description="Weight of a new bin in the average.")
    spike_clamp_db: float = Field(10.0, ge=0, le=60, description="A bin moves at most this.")
    enter_hold_s: float = Field(2.0, ge=0, le=600, description="Inside this long to enter.")
    exit_margin_db: float = Field(6.0, ge=0, le=60, description="Below threshold by this ...")
    exit_hold_s: float = Field(3.0, ge=0, le=600, description="... this long to leave.")
    switch_margin_db: float = Field(4.0, ge=0, le=60, description="Another zone better by this")
    switch_hold_s: float = Field(3.0, ge=0, le=600, description="... this long to switch.")
    gone_factor: float = Field(3.0, ge=0, le=100, description="Gone after factor x max gap")
    gone_extra_s: float = Field(5.0, ge=0, le=600, description="... plus this,")
    gone_min_s: float = Field(10.0, gt=0, le=3600, description="... at least this,")
    gone_max_s: float = Field(60.0, gt=0, le=3600, description="... at most this.")
    merge_gap_s: float = Field(30.0, ge=0, le=3600, description="Returns within: one visit.")
    min_visit_s: float = Field(10.0, ge=0, le=3600, description="Shorter visits are dropped.")
    min_sightings: int = Field(3, ge=1, le=10_000, description="Thinner visits are dropped.")
    max_identities: int = Field(20_000, ge=1, le=1_000_000, description="Tracked at once.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for what, names in (
            ("zone", [zone.name for zone in self.zones]),
            ("tag", [tag.name for tag in self.tags] + [key.name for key in self.identity_keys]),
            ("fixed beacon", [beacon.name for beacon in self.fixed_beacons]),
            ("tag beacon id", [tag.beacon for tag in self.tags]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{what} {name!r} is configured twice")
                seen.add(name)
        fixed = {beacon.beacon for beacon in self.fixed_beacons}
        for tag in self.tags:
            if tag.beacon in fixed:
                raise ValueError(f"tag {tag.name!r} has the id of a fixed beacon: {tag.beacon}")
        if self.gone_max_s < self.gone_min_s:
            raise ValueError("gone_max_s must be at least gone_min_s")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.zones or self.fixed_beacons)

    def zone_specs(self) -> list[ZoneSpec]:
        return [ZoneSpec(z.name, tuple(z.receivers), z.enter_rssi) for z in self.zones]

    def settings(self) -> PresenceSettings:
        return PresenceSettings(
            bin_s=self.bin_s,
            ema_alpha=self.ema_alpha,
            spike_clamp_db=self.spike_clamp_db,
            enter_hold_s=self.enter_hold_s,
            exit_margin_db=self.exit_margin_db,
            exit_hold_s=self.exit_hold_s,
            switch_margin_db=self.switch_margin_db,
            switch_hold_s=self.switch_hold_s,
            gone_factor=self.gone_factor,
            gone_extra_s=self.gone_extra_s,
            gone_min_s=self.gone_min_s,
            gone_max_s=self.gone_max_s,
            max_identities=self.max_identities,
        )

    def rules(self) -> VisitRules:
        return VisitRules(self.merge_gap_s, self.min_visit_s, self.min_sightings)
