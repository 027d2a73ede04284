"""Presence ingestion throughput: advertisements through identification (pseudonyms), the zone
tracker and the visit book on one core, against a bare loop doing only the keyed hash of each
address (the part every advert costs whatever the logic), same run, same adverts.

A busy store: 2 receivers, 300 phones with private addresses and 40 cart tags, each heard
several times a second; a tick a second as the daemon does.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.drivers.contracts import Advertisement, BeaconFormat, BeaconId
from gateway.presence.identity import IdentityRules, Pseudonyms
from gateway.presence.visits import VisitBook
from gateway.presence.zone_tracker import ZoneSpec, ZoneTracker

ADVERTS = 300_000
RATE_HZ = 2_000  # adverts per simulated second across the store


def adverts() -> list[Advertisement]:
    rng = random.Random(5)
    phones = [
        ":".join(f"{b:02X}" for b in [0x40 | rng.randrange(64), *rng.randbytes(5)])
        for _ in range(300)
    ]
    carts = [
        BeaconId(BeaconFormat.IBEACON, f"5f0c1a2e-8d7b-4c4e-9a61-3f2b7d9e0c11:100:{n}")
        for n in range(40)
    ]
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    made = []
    for n in range(ADVERTS):
        receiver = "rx-a" if n % 2 else "rx-b"
        if n % 8 == 0:
            beacon = rng.choice(carts)
            made.append(
                Advertisement(
                    receiver,
                    "C1:00:00:00:00:01",
                    rng.randint(-90, -50),
                    n / RATE_HZ,
                    at,
                    beacon=beacon,
                )
            )
        else:
            made.append(
                Advertisement(receiver, rng.choice(phones), rng.randint(-95, -55), n / RATE_HZ, at)
            )
    return made


def run_logic(items: list[Advertisement]) -> float:
    tags = {f"ibeacon:5f0c1a2e-8d7b-4c4e-9a61-3f2b7d9e0c11:100:{n}": f"cart-{n}" for n in range(40)}
    rules = IdentityRules(tags, frozenset(), frozenset(), Pseudonyms("Europe/Berlin"))
    tracker = ZoneTracker([ZoneSpec("a", ("rx-a",), -70.0), ZoneSpec("b", ("rx-b",), -70.0)])
    book = VisitBook()
    started = time.process_time()
    next_tick = 0.0
    for advert in items:
        identity = rules.identify(advert)
        if identity is None:
            continue
        changes = tracker.sight(identity.name, advert.receiver, advert.rssi, advert.monotonic)
        if advert.monotonic >= next_tick:
            changes += tracker.tick(advert.monotonic)
            book.tick(advert.monotonic, tracker.present())
            next_tick += 1.0
        for change in changes:
            book.apply(change, advert.monotonic)
    return time.process_time() - started


def run_bare(items: list[Advertisement]) -> float:
    key = b"k" * 32
    started = time.process_time()
    for advert in items:
        hmac.new(key, advert.address.upper().encode(), hashlib.sha256).digest()[:8].hex()
    return time.process_time() - started


def main() -> None:
    items = adverts()
    logic = min(run_logic(items) for _ in range(3))
    bare = min(run_bare(items) for _ in range(3))
    print(
        f"presence ingestion + logic: {ADVERTS / logic:,.0f} adverts/s "
        f"({logic / ADVERTS * 1e6:.1f} µs each)"
    )
    print(
        f"bare keyed hash per advert: {ADVERTS / bare:,.0f} adverts/s "
        f"({bare / ADVERTS * 1e6:.1f} µs each)"
    )
    print(
        f"ratio: presence at {100 * bare / logic:.0f} % of the bare hashing rate; a store's "
        f"{RATE_HZ} adverts/s cost {100 * RATE_HZ * logic / ADVERTS:.1f} % of one core"
    )


if __name__ == "__main__":
    main()
