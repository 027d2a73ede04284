"""A gateway process for crash tests: appends numbered events and says which were accepted.

Usage: python -m tests.sync.producer DB PORT FIRST COUNT
Prints "accepted N" after the commit holding events up to N resolved; with COUNT 0 it only
drains the outbox and prints "drained".
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.clock import SystemClock
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.config import MqttConfig
from gateway.sync.uplink import UplinkSettings, connect_outbox
from tests.store.probes import PROBES, probes


async def main(db_path: Path, port: int, first: int, count: int) -> None:
    clock = SystemClock()
    async with Database.running(db_path, clock=clock) as db:
        outbox = Outbox(db, clock, events=PROBES)
        await outbox.open(("stock",))
        config = MqttConfig(host="127.0.0.1", port=port, tls=False, allow_plaintext=True)
        link, uplink = connect_outbox(
            outbox,
            config=config,
            store_id="s1",
            boot=db.boot,
            clock=clock,
            settings=UplinkSettings(messages_per_second=None, ack_timeout_s=2.0),
        )
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(link.run()), group.create_task(uplink.run())]
            for start in range(first, first + count, 50):
                stop = min(start + 50, first + count)
                await outbox.append_many(
                    "stock", probes("n", ({"n": n} for n in range(start, stop)))
                )
                print(f"accepted {stop - 1}", flush=True)
                await asyncio.sleep(0.005)
            while sum(state.depth for state in await outbox.states()):
                await asyncio.sleep(0.05)
            print("drained", flush=True)
            for task in tasks:
                task.cancel()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
