"""The fleet simulator against the reference consumer: a small fleet through a broker restart
and a price push, and HQ holds every event exactly once (bench/fleet.py is the big run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fleet.scenario import FleetBench, FleetOptions
from tests.waiting import patience


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_small_fleet_commits_every_event_exactly_once(tmp_path: Path) -> None:
    # A short ack timeout: envelopes the crashed broker lost are sent again soon.
    options = FleetOptions(
        stores=20, processes=2, price_items=20, start_spread_s=0.2, ack_timeout_s=3.0
    )
    with FleetBench(tmp_path, options) as bench:
        bench.wait_connected(patience(60))
        steady = bench.steady(1.0, warmup_s=0.5)
        assert steady.events > 0
        recovery = bench.restart_broker(down_s=0.2, timeout=patience(120))
        assert recovery.connections >= 20  # every store came back
        push = bench.push_prices(timeout=patience(120))
        assert push.refused == 0
        assert push.exit_code == 0  # the fleet push saw every store apply its batch
        check = bench.drain_and_check(timeout=patience(120))
    assert check.stores == 20
    assert check.events > steady.events
    assert check.problems == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_stores_born_at_once_are_all_recorded(tmp_path: Path) -> None:
    """A small birth storm (bench/fleet.py --births 10000 is the big one): every store
    connects at the same moment with one event; the broker keeps every birth, HQ every event."""
    options = FleetOptions(
        stores=200, processes=2, start_spread_s=0.0, produce=False, first_events=1
    )
    with FleetBench(tmp_path, options) as bench:
        bench.wait_connected(patience(120))
        assert bench.retained_births(timeout=patience(60)) == 200
        check = bench.drain_and_check(timeout=patience(120))
    assert check.events == 200
    assert check.problems == []
