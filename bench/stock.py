"""CPU of the stock logic: 500 slots at 10 Hz through SlotCounter, in-process.

Goal: < 5 % of one core. The samples (WeightSample objects, as the hub delivers them) are
generated first from scripted shelf timelines (noise, creep, picks, put-backs, leaning); then,
in the same run, two loops over the very same samples are timed with the process CPU clock:

- bare: look up the slot by (device, channel) and read the sample's fields;
- stock: the same lookup, then ``SlotCounter.feed`` (and each slot's ``tick`` once a
  simulated second, as the service does).

CPU share = CPU seconds spent / simulated seconds (the samples' real-time span).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from devices.simulated.shelf_timeline import ShelfTimeline
from gateway.drivers.contracts import WeightSample
from gateway.shelves.slot_counter import CounterSettings, SlotCounter, SlotSpec

SLOTS = 500
RATE_HZ = 10.0
SIMULATED_S = 120.0
DEVICES = 25  # 20 channels each, like RS-485 buses of multi-channel transmitters
GOAL_PERCENT = 5.0


def samples() -> tuple[list[WeightSample], dict[tuple[str, str], SlotCounter]]:
    start = datetime(2026, 11, 23, 9, tzinfo=UTC)
    per_slot = []
    counters: dict[tuple[str, str], SlotCounter] = {}
    for index in range(SLOTS):
        unit = 100.0 + 7 * (index % 50)
        timeline = ShelfTimeline(
            index, unit_grams=unit, initial_count=12, noise_grams=0.5 + (index % 4) / 2
        )
        rng = timeline.rng
        timeline.lean(rng.uniform(10, 100), rng.uniform(0.5, 8), rng.uniform(200, 2000))
        timeline.pick(rng.uniform(20, 50), 1)
        timeline.put(rng.uniform(60, 90), 1)
        device, channel = f"shelf-{index // (SLOTS // DEVICES)}", f"ch{index}"
        counters[(device, channel)] = SlotCounter(
            SlotSpec(slot=f"slot-{index}", sku="sku", unit_grams=unit, tare_grams=60.0),
            CounterSettings(),
        )
        per_slot.append(
            [
                WeightSample(
                    channel=channel,
                    gross_grams=raw,
                    net_grams=raw,
                    stable=stable,
                    status=status,
                    monotonic=t,
                    observed_at=start + timedelta(seconds=t),
                )
                for t, raw, stable, status in timeline.samples(SIMULATED_S)
            ]
        )
    # Interleaved in time, as a store's buses deliver them.
    ordered = [sample for step in zip(*per_slot, strict=True) for sample in step]
    return ordered, counters


def device_of(channel: str) -> str:
    return f"shelf-{int(channel[2:]) // (SLOTS // DEVICES)}"


def bare(stream: list[WeightSample], counters: dict[tuple[str, str], SlotCounter]) -> float:
    devices = {sample.channel: device_of(sample.channel) for sample in stream[:SLOTS]}
    started = time.process_time()
    total = 0.0
    for sample in stream:
        counter = counters.get((devices[sample.channel], sample.channel))
        if counter is not None and sample.net_grams is not None:
            total += sample.net_grams + sample.monotonic
    return time.process_time() - started


def stock(stream: list[WeightSample], counters: dict[tuple[str, str], SlotCounter]) -> float:
    devices = {sample.channel: device_of(sample.channel) for sample in stream[:SLOTS]}
    events = 0
    next_tick = 1.0
    every = list(counters.values())
    started = time.process_time()
    for sample in stream:
        if sample.monotonic >= next_tick:
            for counter in every:
                events += len(counter.tick(next_tick))
            next_tick += 1.0
        counter = counters.get((devices[sample.channel], sample.channel))
        if counter is not None:
            events += len(counter.feed(sample))
    spent = time.process_time() - started
    print(f"  stock logic reported {events} events/state changes over {SLOTS} slots")
    return spent


def main() -> None:
    print(f"generating {SLOTS} slots x {RATE_HZ:g} Hz x {SIMULATED_S:g} s ...", flush=True)
    stream, counters = samples()
    print(f"  {len(stream)} samples")
    bare_s = min(bare(stream, counters) for _ in range(3))
    stock_s = stock(stream, counters)
    bare_share = 100 * bare_s / SIMULATED_S
    stock_share = 100 * stock_s / SIMULATED_S
    per_sample_us = 1e6 * stock_s / len(stream)
    print(
        f"bare loop (lookup + read):  {bare_s:6.2f} CPU s = {bare_share:5.2f} % of one core\n"
        f"stock logic (feed + tick):  {stock_s:6.2f} CPU s = {stock_share:5.2f} % of one core "
        f"({per_sample_us:.2f} us/sample)\n"
        f"ratio stock / bare: {stock_s / bare_s:.1f}x; stock logic alone: "
        f"{stock_share - bare_share:.2f} % (goal < {GOAL_PERCENT:g} % of one core: "
        f"{'met' if stock_share < GOAL_PERCENT else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
