"""Slot configuration in SQLite: the file, HQ's `slots` command and local overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.errors import CommandRefusedError
from gateway.shelves.config import SlotConfig
from gateway.shelves.slots import Calibration, SlotBook
from gateway.store import Database


def config(name: str = "s-1", **changes: object) -> SlotConfig:
    values: dict[str, object] = {
        "slot": name,
        "device": "shelf-a",
        "channel": name,
        "sku": "A",
        "unit_grams": 250,
    }
    values.update(changes)
    return SlotConfig.model_validate(values)


def hq_slot(name: str = "s-1", **changes: object) -> dict[str, object]:
    return config(name, **changes).model_dump(exclude={"override"})


async def test_hq_wins_over_the_file_unless_the_file_overrides(tmp_path: Path) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        book = SlotBook(db, FakeClock())
        records = await book.apply_config([config("s-1"), config("s-2", override=True)])
        assert {name: r.source for name, r in records.items()} == {"s-1": "config", "s-2": "local"}

        statements, result = await book.hq_update(
            {"slots": [hq_slot("s-1", unit_grams=300), hq_slot("s-3")]}, {"shelf-a"}
        )
        assert result == {"set": ["s-1", "s-3"], "removed": []}
        await db.submit_atomic(statements)
        # A restart re-reads the file: HQ's values stay, the file's other slots apply.
        records = await book.apply_config([config("s-1"), config("s-2", override=True)])
        assert records["s-1"].source == "hq"
        assert records["s-1"].config.unit_grams == 300
        assert records["s-3"].source == "hq"
        assert records["s-2"].source == "local"

        with pytest.raises(CommandRefusedError, match="locally overridden"):
            await book.hq_update({"slots": [hq_slot("s-2", sku="B")]}, {"shelf-a"})
        with pytest.raises(CommandRefusedError, match="no scale device"):
            await book.hq_update({"slots": [hq_slot("s-4", device="shelf-z")]}, {"shelf-a"})
        with pytest.raises(CommandRefusedError, match=r"unit_grams"):
            await book.hq_update({"slots": [{**hq_slot("s-4"), "unit_grams": -1}]}, {"shelf-a"})
        with pytest.raises(CommandRefusedError, match="weighs s-1"):
            await book.hq_update({"slots": [hq_slot("s-4", channel="s-1")]}, {"shelf-a"})
        with pytest.raises(CommandRefusedError, match="needs args"):
            await book.hq_update({"slots": "s-1"}, {"shelf-a"})

        statements, result = await book.hq_update({"remove": ["s-3"]}, {"shelf-a"})
        await db.submit_atomic(statements)
        # A slot dropped from the file goes; a file override turned off hands it back to HQ.
        records = await book.apply_config([config("s-2")])
        assert sorted(records) == ["s-1", "s-2"]
        assert records["s-2"].source == "config"


async def test_calibration_is_kept_apart_and_survives(tmp_path: Path) -> None:
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        book = SlotBook(db, FakeClock())
        assert await book.calibrations() == {}
        await book.save_calibration("s-1", Calibration(tare_grams=61.5, gain=1.01))
    async with Database.running(tmp_path / "g.db", clock=FakeClock()) as db:
        calibration = (await SlotBook(db, FakeClock()).calibrations())["s-1"]
        assert calibration == Calibration(61.5, 1.01)
        spec = calibration.spec(config(tray_tare_grams=50))
        assert (spec.tare_grams, spec.gain) == (61.5, 1.01)
        assert Calibration().spec(config(tray_tare_grams=50)).tare_grams == 50
