"""Slot configuration: the effective value of every slot, with where it came from.

Slots come from the configuration file (``[[shelves.slots]]``) and from HQ (the signed
``slots`` command). SQLite holds the effective value with its source:

- ``config`` — from the file; HQ may replace it, and HQ's value then survives restarts;
- ``local`` — from the file with ``override = true``: a local override HQ cannot change;
- ``hq`` — from HQ. HQ wins over the file unless the file's slot is an override.

A technician's tare and calibration are software values kept apart (``slot_calibration``):
they survive configuration changes, and the device's own (EEPROM) tare is never touched for
them.

:func:`merge_config` and :func:`decide_hq_update` are the rules (no I/O); :class:`SlotBook`
applies them to SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from gateway.clock import Clock, isoformat_utc
from gateway.errors import CommandRefusedError
from gateway.shelves.config import SlotConfig
from gateway.shelves.slot_counter import SlotSpec
from gateway.store.database import Database

__all__ = [
    "Calibration",
    "SlotBook",
    "SlotRecord",
    "SlotSource",
    "decide_hq_update",
    "merge_config",
]

SlotSource = Literal["config", "local", "hq"]
Statement = tuple[str, Sequence[Any]]

_UPSERT = (
    "INSERT INTO slots (slot, config, source, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (slot) DO UPDATE SET config = excluded.config, source = excluded.source, "
    "updated_at = excluded.updated_at"
)
_DELETE = "DELETE FROM slots WHERE slot = ?"


@dataclass(frozen=True, slots=True)
class SlotRecord:
    config: SlotConfig
    source: SlotSource
    updated_at: str

    @property
    def slot(self) -> str:
        return self.config.slot

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.config.model_dump(exclude={"override"}),
            "source": self.source,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Calibration:
    """A technician's software tare (None: the configured tray tare) and gain."""

    tare_grams: float | None = None
    gain: float = 1.0

    def spec(self, config: SlotConfig) -> SlotSpec:
        return SlotSpec(
            slot=config.slot,
            sku=config.sku,
            unit_grams=config.unit_grams,
            tolerance=config.tolerance,
            item_spread=config.item_spread,
            tare_grams=config.tray_tare_grams if self.tare_grams is None else self.tare_grams,
            gain=self.gain,
            min_count=config.min_count,
            max_count=config.max_count,
        )


def _source_of(config: SlotConfig) -> SlotSource:
    return "local" if config.override else "config"


def _upsert(config: SlotConfig, source: SlotSource, now: str) -> Statement:
    return (_UPSERT, (config.slot, config.model_dump_json(), source, now))


def merge_config(
    stored: Mapping[str, SlotRecord], configured: Sequence[SlotConfig], now: str
) -> list[Statement]:
    """What the file changes in the stored slots: HQ's values stay unless the file overrides."""
    statements: list[Statement] = []
    for config in configured:
        current = stored.get(config.slot)
        if current is not None and current.source == "hq" and not config.override:
            continue  # HQ wins over the file
        source = _source_of(config)
        if current is None or current.config != config or current.source != source:
            statements.append(_upsert(config, source, now))
    named = {config.slot for config in configured}
    statements.extend(
        (_DELETE, (slot,))
        for slot, record in stored.items()
        if record.source != "hq" and slot not in named
    )
    return statements


def decide_hq_update(
    stored: Mapping[str, SlotRecord],
    args: Mapping[str, Any],
    devices: Collection[str],
    now: str,
) -> tuple[list[Statement], list[str], list[str]]:
    """HQ's ``slots`` command {slots: [...], remove: [...]}: all of it or nothing.

    Returns the statements and the slots set and removed; raises
    :class:`CommandRefusedError` naming every problem."""
    raw_slots = args.get("slots", [])
    raw_remove = args.get("remove", [])
    if (
        not isinstance(raw_slots, list)
        or not isinstance(raw_remove, list)
        or set(args)
        - {
            "slots",
            "remove",
        }
    ):
        raise CommandRefusedError("slots needs args {slots: [slot objects], remove: [slot ids]}")
    problems: list[str] = []
    updates: list[SlotConfig] = []
    for index, raw in enumerate(raw_slots):
        try:
            config = SlotConfig.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            problems.append(f"slots.{index}.{where}: {first['msg']}")
            continue
        if config.override:
            problems.append(f"slots.{index}: override is for local configuration only")
        if config.device not in devices:
            problems.append(f"slot {config.slot}: no scale device {config.device!r}")
        updates.append(config)
    removals = [str(slot) for slot in raw_remove]
    for slot in [config.slot for config in updates] + removals:
        current = stored.get(slot)
        if current is not None and current.source == "local":
            problems.append(f"slot {slot} is locally overridden; a technician must lift that")
    channels = {
        (record.config.device, record.config.channel): slot
        for slot, record in stored.items()
        if slot not in removals
    }
    for config in updates:
        owner = channels.get((config.device, config.channel))
        if owner is not None and owner != config.slot:
            problems.append(f"slot {config.slot}: {config.device}/{config.channel} weighs {owner}")
        channels[(config.device, config.channel)] = config.slot
    if problems:
        raise CommandRefusedError("slots refused: " + "; ".join(problems))
    statements = [_upsert(config, "hq", now) for config in updates]
    statements += [(_DELETE, (slot,)) for slot in removals if slot in stored]
    return statements, [config.slot for config in updates], removals


class SlotBook:
    """The stored slots and calibrations."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._db = database
        self._clock = clock

    def _now(self) -> str:
        return isoformat_utc(self._clock.utc_now())

    async def records(self) -> dict[str, SlotRecord]:
        rows = await self._db.fetchall("SELECT * FROM slots ORDER BY slot")
        return {
            str(row["slot"]): SlotRecord(
                SlotConfig.model_validate(json.loads(row["config"])),
                row["source"],
                str(row["updated_at"]),
            )
            for row in rows
        }

    async def apply_config(self, configured: Sequence[SlotConfig]) -> dict[str, SlotRecord]:
        """Bring the file's slots in (start-up, reload); returns the effective slots."""
        statements = merge_config(await self.records(), configured, self._now())
        if statements:
            await self._db.submit_atomic(statements)
        return await self.records()

    async def hq_update(
        self, args: Mapping[str, Any], devices: Collection[str]
    ) -> tuple[list[Statement], dict[str, Any]]:
        """Decide HQ's ``slots`` command; the caller commits the statements with the
        command's record."""
        statements, updated, removed = decide_hq_update(
            await self.records(), args, devices, self._now()
        )
        return statements, {"set": updated, "removed": removed}

    async def calibrations(self) -> dict[str, Calibration]:
        rows = await self._db.fetchall("SELECT slot, tare_grams, gain FROM slot_calibration")
        return {
            str(row["slot"]): Calibration(
                None if row["tare_grams"] is None else float(row["tare_grams"]),
                float(row["gain"]),
            )
            for row in rows
        }

    async def save_calibration(self, slot: str, calibration: Calibration) -> None:
        await self._db.submit(
            "INSERT INTO slot_calibration (slot, tare_grams, gain, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (slot) DO UPDATE SET "
            "tare_grams = excluded.tare_grams, gain = excluded.gain, "
            "updated_at = excluded.updated_at",
            (slot, calibration.tare_grams, calibration.gain, self._now()),
        )
