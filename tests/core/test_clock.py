"""Clock: injected time, synchronisation detection, wire format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.clock import (
    ClockSyncSource,
    FakeClock,
    SystemClock,
    isoformat_utc,
    probe_kernel_sync,
)


def test_wire_format_is_utc_with_offset() -> None:
    berlin = timezone(timedelta(hours=1))
    instant = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=berlin)
    assert isoformat_utc(instant) == "2026-11-23T09:00:00.123+00:00"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        isoformat_utc(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def test_fake_clock_advances_both_times() -> None:
    clock = FakeClock()
    wall, mono = clock.utc_now(), clock.monotonic()
    clock.advance(2.5)
    assert clock.monotonic() - mono == 2.5
    assert clock.utc_now() - wall == timedelta(seconds=2.5)


def test_system_clock_follows_the_probe_and_rechecks() -> None:
    answers = iter([False, True])
    clock = SystemClock(probe=lambda: next(answers), probe_interval=0.0)
    assert clock.is_synchronized() is False
    assert clock.is_synchronized() is True


def test_probe_is_cached_between_intervals() -> None:
    calls: list[int] = []

    def probe() -> bool:
        calls.append(1)
        return True

    clock = SystemClock(probe=probe, probe_interval=3600.0)
    assert clock.is_synchronized()
    assert clock.is_synchronized()
    assert len(calls) == 1


def test_assume_trusts_the_clock_without_probing() -> None:
    def probe() -> bool:
        raise AssertionError("must not probe")

    assert SystemClock(sync=ClockSyncSource.ASSUME, probe=probe).is_synchronized()


def test_a_clock_in_the_past_is_never_synchronised() -> None:
    class BootedIn1970(SystemClock):
        def utc_now(self) -> datetime:
            return datetime(1970, 1, 1, 0, 5, tzinfo=UTC)

    clock = BootedIn1970(sync=ClockSyncSource.ASSUME, probe=lambda: True)
    assert clock.is_synchronized() is False


def test_kernel_probe_answers_a_bool() -> None:
    assert isinstance(probe_kernel_sync(), bool)


def test_events_are_flagged_while_the_clock_is_unsynchronised() -> None:
    from gateway.clock import event_stamp

    clock = FakeClock(synchronized=False)
    assert event_stamp(clock) == {"ts": "2026-11-23T09:00:00.000+00:00", "unsynced": True}
    clock.synchronized = True
    assert event_stamp(clock) == {"ts": "2026-11-23T09:00:00.000+00:00"}
