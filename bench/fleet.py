"""A fleet of stores against HQ: N virtual stores speaking the real protocol, from a few
processes, against a private mosquitto and the reference consumers (`storegw hq tail`).

Each store is the gateway's own MQTT link (birth and will, persistent session, jittered
reconnects) with envelopes built by the gateway's wire code, custody from HQ's acks, and
price batches verified with the gateway's verifier and answered with receipts
(tests/support/fleet/). Stores are drawn from a realistic mix (tests/support/fleet/mix.py).

Figures, same run: sustained events/s end to end (store accepted → HQ committed → acked),
ack latency p50/p99, CPU per event (consumer, simulator, broker), scale-out 1 → 2 → 4
consumers (PostgreSQL sink only), recovery after a broker crash and a planned restart with
every store reconnecting (time until every stream flows again, the broker's peak connection
rate), a price push to every store → all applied, and every event at HQ exactly once.
Baseline: the same number of events inserted by one plain loop (PostgreSQL: COPY; SQLite:
executemany), before and after the fleet run.

    bench/fleet.py --stores 1000 --duration 30
    bench/fleet.py --quick                      # a short smoke run
    bench/fleet.py --births 10000               # bad input: 10 000 stores born at once
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fleet.baseline import baseline_rows, postgres_copy_loop, sqlite_insert_loop
from tests.support.fleet.mix import REALISTIC_MIX, mean_rate
from tests.support.fleet.scenario import FleetBench, FleetOptions, Recovery, Steady


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30.0, help="steady window, seconds")
    parser.add_argument(
        "--consumers",
        default="1,2,4",
        help="consumer counts for the scale-out phase (PostgreSQL only), e.g. 1,2,4",
    )
    parser.add_argument(
        "--database",
        default="sqlite",
        help="sqlite (a file), postgresql (a private server), or a postgresql:// URL",
    )
    parser.add_argument("--processes", type=int, default=2, help="simulator processes")
    parser.add_argument(
        "--commit-ms",
        type=float,
        default=1000.0,
        help="how often a store commits what its devices produced and sends it",
    )
    parser.add_argument("--rate-scale", type=float, default=1.0, help="factor on the mix")
    parser.add_argument(
        "--hold",
        type=float,
        default=15.0,
        help="seconds the stores hold their events before a catch-up (HQ capacity)",
    )
    parser.add_argument(
        "--ack-timeout",
        type=float,
        help="stores' ack timeout, seconds (default: the gateway's 30; --quick: 5)",
    )
    parser.add_argument("--births", type=int, help="bad input: this many stores born at once")
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    return parser.parse_args()


def print_steady(label: str, steady: Steady) -> None:
    print(
        f"{label}: offered {steady.offered_per_s:,.0f} events/s, sustained end to end "
        f"{steady.sustained_per_s:,.0f} events/s over {steady.seconds:.0f} s in "
        f"{steady.envelopes_per_s:,.0f} envelopes/s "
        f"(backlog {steady.backlog_growth_per_s:+,.0f} events/s); ack latency "
        f"p50 {_ms(steady.p50_s)}, p99 {_ms(steady.p99_s)}; CPU per event: consumer "
        f"{_us(steady.consumer_cpu_per_event_s)}, simulator "
        f"{_us(steady.fleet_cpu_per_event_s)}, broker {_us(steady.broker_cpu_per_event_s)}"
    )


def print_recovery(label: str, recovery: Recovery, stores: int) -> None:
    print(
        f"{label} ({recovery.down_s:.1f} s down), {stores} stores: all reconnected after "
        f"{recovery.reconnected_s:.1f} s, every stream flowing after {recovery.flowing_s:.1f} s "
        f"(half of them after {recovery.flowing_p50_s:.1f} s); broker: "
        f"{recovery.connections} store connections over {recovery.seconds_with_connections} "
        f"s, peak {recovery.peak_connections_per_s} connections/s"
    )


def database_url(choice: str) -> tuple[str, object | None]:
    """The database the consumers write, and the private server started for it (if any)."""
    if choice == "sqlite" or choice.startswith(("postgresql://", "postgres://")):
        return choice, None
    if choice == "postgresql":
        from tests.support.postgres import PostgresServer

        server = PostgresServer()
        server.init()
        server.start()
        return server.create_database(), server
    sys.exit(f"--database: sqlite, postgresql or a postgresql:// URL, not {choice!r}")


def baseline(url: str, directory: Path, rows: list) -> tuple[str, float]:  # type: ignore[type-arg]
    if url.startswith(("postgresql://", "postgres://")):
        return "PostgreSQL, one COPY loop", postgres_copy_loop(url, rows)
    return "SQLite, one executemany loop", sqlite_insert_loop(directory / "baseline.db", rows)


def run_births(args: argparse.Namespace, directory: Path, url: str) -> None:
    stores = args.births
    options = FleetOptions(
        stores=stores,
        processes=max(args.processes, stores // 1250),
        database=url,
        start_spread_s=0.0,
        produce=False,
        first_events=1,
    )
    print(f"bad input: {stores:,} stores born at once, one event each ({_load()})")
    with FleetBench(directory, options) as bench:
        online = bench.wait_connected(timeout=600)
        fleet = bench.fleet
        assert fleet is not None
        fleet.wait_for(lambda f: f.total("backlog") == 0, 600, "every first event acked")
        births = bench.retained_births()
        bench.consumers.check_alive()
        from tests.support.fleet.hq import connection_rates

        rates = connection_rates(bench.broker.log)
        check = bench.drain_and_check()
    print(
        f"  all {stores:,} online after {online:.1f} s (broker peak "
        f"{max(rates.values(), default=0):,} connections/s); retained births at the broker: "
        f"{births:,}; consumer and broker alive"
    )
    verdict = "exactly once" if not check.problems else f"{len(check.problems)} problem(s)"
    print(f"  HQ holds {check.events:,} events from {check.stores:,} stores: {verdict}")
    for problem in check.problems[:10]:
        print(f"    {problem}")


def run_fleet(args: argparse.Namespace, directory: Path, url: str) -> None:
    duration = 5.0 if args.quick else args.duration
    stores = min(args.stores, 50) if args.quick else args.stores
    options = FleetOptions(
        stores=stores,
        processes=args.processes,
        database=url,
        commit_interval_s=args.commit_ms / 1000,
        rate_scale=args.rate_scale,
        share_group="fleet" if url.startswith("postgres") else None,
        price_items=200,
        ack_timeout_s=args.ack_timeout or (5.0 if args.quick else 30.0),
    )
    mix = ", ".join(f"{p.share:.0%} {p.name} {p.events_per_s:g}/s" for p in REALISTIC_MIX)
    mean = mean_rate() * args.rate_scale
    print(
        f"fleet: {stores:,} stores in {options.processes} processes; mix {mix} → mean "
        f"{mean:.1f} events/s a store, {mean * stores:,.0f} offered; store group commit "
        f"{args.commit_ms:g} ms; ack timeout {options.ack_timeout_s:g} s; HQ: "
        f"{'PostgreSQL' if url.startswith('postgres') else 'SQLite'}"
    )
    print(f"this box: {os.cpu_count()} cores shared with other work; {_load()} at the start")
    rows = baseline_rows(min(200_000, max(20_000, int(mean * stores * duration))), stores)
    base_label, before = baseline(url, directory, rows)
    with FleetBench(directory, options) as bench:
        online = bench.wait_connected()
        print(f"births: all {stores:,} stores online after {online:.1f} s")
        steady = bench.steady(duration, warmup_s=2.0 if args.quick else 5.0)
        print_steady("steady, 1 consumer", steady)
        print(
            f"  one consumer core at {_us(steady.consumer_cpu_per_event_s)} an event: "
            f"{1 / steady.consumer_cpu_per_event_s:,.0f} events/s at most (this load)"
        )
        counts = tuple(int(c) for c in args.consumers.split(","))
        if not url.startswith("postgres"):
            counts = counts[:1]
        hold_s = 5.0 if args.quick else args.hold
        scaled = bench.scale_out(counts, hold_s)
        for count, catch_up in scaled.items():
            done = (
                f"all acked after {catch_up.seconds:.1f} s"
                if catch_up.drained
                else f"HQ saturated for {catch_up.seconds:.0f} s (not all acked)"
            )
            print(
                f"catch-up, {count} consumer(s): {catch_up.held:,} events held {hold_s:g} s by "
                f"the stores, {done}: "
                f"{catch_up.events_per_s:,.0f} events/s in {catch_up.envelopes_per_s:,.0f} "
                f"envelopes/s; consumer CPU {_us(catch_up.consumer_cpu_per_event_s)} an event"
            )
        if len(scaled) > 1:
            first = scaled[counts[0]].events_per_s
            print(
                "scale-out (catch-up rate): "
                + ", ".join(f"{c}: {f.events_per_s / first:.2f}x" for c, f in scaled.items())
                + f"; the limit here: {os.cpu_count()} cores shared by the consumers, "
                f"PostgreSQL, the broker and the simulated stores (their CPU: "
                f"{_us(steady.fleet_cpu_per_event_s)} an event)"
            )
        else:
            print(
                "scale-out: not measured — several consumers need the PostgreSQL sink "
                "(--database postgresql): on one SQLite file each would keep its own custody"
            )
        print_recovery("broker crash (SIGKILL)", bench.restart_broker(), stores)
        print_recovery("broker planned restart", bench.restart_broker(graceful=True), stores)
        push = bench.push_prices()
        outcomes = ", ".join(f"{n} {outcome}" for outcome, n in push.counts.items() if n)
        print(
            f"price push (storegw hq push-prices' push_to_fleet, one signed batch per store, "
            f"{options.price_items} items) to {push.stores:,} stores: the tool settled after "
            f"{push.tool_s:.1f} s ({outcomes}; exit {push.exit_code}); at the stores all "
            f"applied after {push.applied_s:.1f} s, every price.applied receipt at HQ after "
            f"{push.receipts_at_hq_s:.1f} s; refused {push.refused}"
        )
        check = bench.drain_and_check()
    verdict = "exactly once" if not check.problems else f"{len(check.problems)} problem(s)"
    print(
        f"HQ holds {check.events:,} events from {check.stores:,} stores: {verdict} "
        f"({check.resent_windows} windows re-sent after an ack timeout)"
    )
    for problem in check.problems[:10]:
        print(f"  {problem}")
    _, after = baseline(url, directory, rows)
    base = (before + after) / 2
    print(
        f"baseline ({base_label}, {len(rows):,} events, before/after): {before:,.0f} / "
        f"{after:,.0f} events/s; fleet sustained = {steady.sustained_per_s / base:.1%} of it"
    )
    print(f"this box at the end: {_load()}")


def main() -> None:
    args = parse_args()
    # A stop (timeout, kill) still stops the broker, consumers, stores and database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        directory = Path(tmp)
        url, server = database_url(args.database)
        if url == "sqlite":
            url = str(directory / "hq.db")
        try:
            if args.births:
                run_births(args, directory, url)
            else:
                run_fleet(args, directory, url)
        finally:
            if server is not None:
                server.remove()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
