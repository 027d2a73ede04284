"""The shelves service: hub samples in, stock events and alerts out, tare and HQ's slots."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.diagnostics import render_slot_reading, render_slots
from gateway.errors import CommandRefusedError, ShelfError
from gateway.shelves.config import SlotConfig
from gateway.sync.commands import CommandRequest
from tests.shelves.support import UNIT, shelf


async def test_picks_become_events_and_low_and_out_become_alerts(tmp_path: Path) -> None:
    async with shelf(tmp_path) as s:
        await s.hold(10, 50 + 3 * UNIT)
        await s.hold(1, 50 + 3 * UNIT + 150, stable=False)
        await s.hold(8, 50 + 2 * UNIT)
        assert s.alert_keys() == ["stock.low:s-1"]
        await s.hold(1, 50 + UNIT, stable=False)
        await s.hold(8, 50 + 0.5 * UNIT)  # half an item: ambiguous
        await s.hold(1, 50, stable=False)
        await s.hold(8, 50)  # another half: ambiguous too, but the empty tray recounts
        assert s.alert_keys() == ["stock.out:s-1"]
        await s.hold(61, 50)  # one activity interval
        events = await s.events()
        assert [(kind, body.get("kind")) for kind, body in events] == [
            ("stock.changed", "recount"),
            ("stock.changed", "pick"),
            ("stock.ambiguous", None),
            ("stock.ambiguous", None),
            ("stock.changed", "recount"),
            ("stock.activity", None),
        ]
        assert events[1][1] | {"confidence": 1} == {
            "slot": "s-1",
            "sku": "A",
            "kind": "pick",
            "before": 3,
            "after": 2,
            "delta": -1,
            "confidence": 1,
            "grams": pytest.approx(-200, abs=2),
        }
        activity = events[-1][1]["slots"]
        assert activity == [
            {
                "slot": "s-1",
                "sku": "A",
                "picks": 1,
                "picked_items": 1,
                "puts": 0,
                "put_items": 0,
                "ambiguous": 2,
            }
        ]
        listing = s.service.listing()
        assert listing[0]["count"] == 0
        assert listing[0]["state"] == "out"
        assert "OUT" in render_slots({"slots": listing})


async def test_sensor_faults_are_one_alert_with_details(tmp_path: Path) -> None:
    async with shelf(tmp_path) as s:
        await s.hold(10, 50 + 5 * UNIT)
        await s.hold(4, None)  # overload
        [alert] = [a for a in s.alerts.active() if a.key == "sensor.fault:s-1"]
        assert alert.details["faults"] == ["overload"]
        [row] = s.service.listing()
        assert (row["count"], row["state"], row["stale"], row["last_count"]) == (
            None,
            "unknown",
            True,
            5,
        )
        assert "?(5)" in render_slots({"slots": [row]})
        assert "count ?(5) (unknown), FAULT overload" in render_slot_reading(row)
        s.up["shelf-a"] = False
        await s.hold(4, None)
        [alert] = [a for a in s.alerts.active() if a.key == "sensor.fault:s-1"]
        assert alert.details["faults"] == ["disconnected", "overload"]
        s.up["shelf-a"] = True
        await s.hold(10, 50 + 5 * UNIT)
        assert "sensor.fault:s-1" not in s.alert_keys()
        [row] = s.service.listing()
        assert (row["count"], row["state"], row["stale"]) == (5, "ok", False)


async def test_tare_and_calibrate_are_software_values(tmp_path: Path) -> None:
    async with shelf(tmp_path) as s:
        await s.hold(10, 62.0)  # empty tray, a little heavier than configured
        assert (await s.service.tare("s-1"))["tare_grams"] == pytest.approx(62, abs=0.5)
        await s.hold(10, 62.0 + 1010)  # a 1 kg weight on a scale reading 1 % high
        result = await s.service.calibrate("s-1", 1000)
        assert result["gain"] == pytest.approx(1000 / 1010, rel=1e-3)
        assert (await s.service.book.calibrations())["s-1"].gain == result["gain"]
        assert s.scale.tared == []  # the device's own tare only when asked for
        with pytest.raises(ShelfError, match="s-1 holds 5 items"):  # the 1 kg is still on
            await s.service.tare("s-1", device=True)
        await s.hold(1, 62.0, stable=False)
        await s.hold(10, 62.0)  # taken off: the empty tray again
        await s.service.tare("s-1", device=True)
        assert s.scale.tared == ["ch1"]
        assert s.service.listing()[0]["tare_grams"] == 0.0
        await s.hold(0.5, 500, stable=False)
        with pytest.raises(ShelfError, match="moving"):
            await s.service.tare("s-1")
        with pytest.raises(ShelfError, match="no slot"):
            await s.service.tare("s-9")
        assert "moving" in render_slot_reading(s.service.reading("s-1"))


async def test_a_tare_is_for_the_empty_tray(tmp_path: Path) -> None:
    async with shelf(tmp_path) as s:
        with pytest.raises(ShelfError, match="no count and no weight level yet"):
            await s.service.tare("s-1", device=True)
        await s.hold(10, 50 + 3 * UNIT)
        for device in (False, True):
            with pytest.raises(ShelfError, match=r"s-1 holds 3 items: .*--force"):
                await s.service.tare("s-1", device=device)
        assert s.scale.tared == []
        assert s.service.listing()[0]["count"] == 3
        await s.hold(1, 50 + 2 * UNIT, stable=False)
        await s.hold(8, 50 + 2.5 * UNIT)  # half an item gone: the count is unknown
        assert s.service.listing()[0]["count"] is None
        with pytest.raises(ShelfError, match=r"count unknown, 500 g above its tare"):
            await s.service.tare("s-1")
        # The technician knows the tray is empty and the tray weight wrong: forced, it is.
        result = await s.service.tare("s-1", force=True)
        assert result["tare_grams"] == pytest.approx(50 + 2.5 * UNIT, abs=0.5)
        await s.hold(10, 50 + 2.5 * UNIT)
        assert s.service.listing()[0]["count"] == 0
        await s.service.tare("s-1")  # empty by its count: no --force needed


async def test_a_tare_looks_at_the_weight_on_the_tray_not_only_at_the_count(
    tmp_path: Path,
) -> None:
    """The count follows a put-back only after ``rise_hold_s`` (10 s): items just put on an
    empty slot are on the tray while the count still says 0. A tare then would make them the
    tray and the slot read empty for good."""
    async with shelf(tmp_path) as s:
        await s.hold(10, 50)
        assert s.service.listing()[0]["count"] == 0
        await s.hold(1, 50 + 4 * UNIT, stable=False)  # four items put on
        await s.hold(3, 50 + 4 * UNIT)  # still, but not counted yet
        assert s.service.listing()[0]["count"] == 0
        for device in (False, True):
            with pytest.raises(ShelfError, match=r"s-1 counts 0 items but 800 g lie on it"):
                await s.service.tare("s-1", device=device)
        assert s.scale.tared == []
        assert s.service.listing()[0]["tare_grams"] == 50.0
        await s.hold(10, 50 + 4 * UNIT)
        assert s.service.listing()[0]["count"] == 4  # the put-back, counted in the end


async def test_hq_slots_command_reconfigures_after_commit(tmp_path: Path) -> None:
    async with shelf(tmp_path) as s:
        spec = s.service.command()
        assert spec.changes_state
        slot = SlotConfig.model_validate(
            {"slot": "s-2", "device": "shelf-a", "channel": "ch2", "sku": "B", "unit_grams": 90}
        ).model_dump(exclude={"override"})
        request = CommandRequest.model_validate(
            {
                "v": 1,
                "type": "command",
                "id": "c-1",
                "name": "slots",
                "args": {"slots": [slot]},
                "scope": {"stores": ["s"]},
                "issued_at": "2026-11-23T09:00:00+00:00",
            }
        )
        result = await spec.handler(request)
        assert result.result == {"set": ["s-2"], "removed": []}
        await s.service.book._db.submit_atomic(list(result.statements))
        await s.service.tick(s.clock.monotonic())
        assert [row["slot"] for row in s.service.listing()] == ["s-1", "s-2"]
        assert s.service.listing()[1]["source"] == "hq"
        bad = request.model_copy(update={"args": {"slots": [{**slot, "device": "nope"}]}})
        with pytest.raises(CommandRefusedError, match="no scale device"):
            await spec.handler(bad)
