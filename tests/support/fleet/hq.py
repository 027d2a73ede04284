"""HQ for the fleet: the reference consumers (``storegw hq tail``) as processes, what their
database holds, and the broker's view of the fleet (connections per second from its log).

Consumers run exactly as in production, one process each, sharing the load through a
``$share`` group when there are several. The checks read the HQ database directly: every
event a store accepted must be there exactly once (:func:`exactly_once_problems`).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "HqConsumers",
    "committed_keys",
    "connection_rates",
    "exactly_once_problems",
    "process_cpu_seconds",
]

STOREGW = Path(sys.executable).with_name("storegw")
TOPIC_ROOT = "retail/v1/{store_id}/"

#: (store, stream, epoch) -> (rows, distinct seqs, lowest seq, highest seq)
KeyCounts = dict[tuple[str, str, str], tuple[int, int, int, int]]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class HqConsumers:
    """``count`` reference consumers on one database; ``database`` is a SQLite file path or a
    ``postgresql://`` URL (the PostgreSQL sink)."""

    def __init__(
        self, directory: Path, *, host: str, port: int, database: str, share_group: str | None
    ) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self.database = database
        self.share_group = share_group
        self.processes: list[subprocess.Popen[bytes]] = []
        self._cpu_of_stopped = 0.0
        self._generation = 0

    @property
    def postgres(self) -> bool:
        return self.database.startswith(("postgresql://", "postgres://"))

    def topic_filter(self) -> str:
        full = TOPIC_ROOT.replace("{store_id}", "+") + "up/#"
        return full if self.share_group is None else f"$share/{self.share_group}/{full}"

    def client_ids(self) -> list[str]:
        # The same ids every time: a consumer's persistent session (and its place in the
        # share group, and what the broker queued for it) is taken up by its successor.
        return [f"storegw-hq-{n}" for n in range(len(self.processes))]

    def start(self, count: int) -> list[str]:
        """Start ``count`` consumers; returns their client ids (to wait for their SUBSCRIBE)."""
        if count > 1 and self.share_group is None:
            raise ValueError("several consumers share the load through a $share group")
        self._generation += 1
        for number in range(count):
            config = self.directory / f"hq-{self._generation}-{number}.toml"
            share = "" if self.share_group is None else f"share_group = '{self.share_group}'\n"
            database = "" if self.postgres else f"database = '{self.database}'\n"
            config.write_text(
                f"[mqtt]\nhost = '{self.host}'\nport = {self.port}\ntls = false\n"
                f"allow_plaintext = true\nclient_id = 'storegw-hq-{number}'\n"
                f"[hq]\n{database}{share}",
                encoding="utf-8",
            )
            command = [str(STOREGW), "hq", "tail", "--quiet", "--config", str(config)]
            if self.postgres:
                command += ["--database", self.database]
            log = (self.directory / f"hq-{self._generation}-{number}.log").open("wb")
            self.processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log))
            log.close()
        return self.client_ids()

    def cpu_seconds(self) -> float:
        """CPU the consumers used, the stopped ones included."""
        return self._cpu_of_stopped + sum(process_cpu_seconds(p.pid) for p in self.processes)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"HQ consumer {process.pid} exited with {process.returncode}; see "
                    f"{self.directory}/hq-*.log"
                )

    def stop(self) -> None:
        """SIGTERM (the consumer finishes its batch and sums up), then wait."""
        for process in self.processes:
            self._cpu_of_stopped += process_cpu_seconds(process.pid)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


def committed_keys(database: str) -> KeyCounts:
    """Per (store, stream, epoch): the rows HQ holds, distinct seqs, lowest and highest."""
    query = (
        "SELECT store, stream, epoch, count(*), count(DISTINCT seq), min(seq), max(seq) "
        "FROM hq_events GROUP BY store, stream, epoch"
    )
    if database.startswith(("postgresql://", "postgres://")):
        import psycopg  # only with the PostgreSQL sink

        with psycopg.connect(database) as connection:
            rows: Iterable[Any] = connection.execute(query).fetchall()
    else:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            rows = connection.execute(query).fetchall()
    return {
        (str(r[0]), str(r[1]), str(r[2])): (int(r[3]), int(r[4]), int(r[5]), int(r[6]))
        for r in rows
    }


def exactly_once_problems(stores: list[dict[str, Any]], held: KeyCounts) -> list[str]:
    """Every event each store accepted is at HQ exactly once (seqs 1..head, no more, no
    duplicates), and HQ holds nothing else. ``stores``: the fleet's final summaries."""
    problems = []
    expected = set()
    for store in stores:
        for stream, state in store["streams"].items():
            if not state["head"]:
                continue
            key = (store["store"], stream, state["epoch"])
            expected.add(key)
            rows, distinct, low, high = held.get(key, (0, 0, 0, 0))
            if (rows, distinct, low, high) != (state["head"], state["head"], 1, state["head"]):
                problems.append(
                    f"{'/'.join(key)}: accepted seqs 1..{state['head']} (acked to "
                    f"{state['acked']}), HQ holds {rows} rows, {distinct} distinct, "
                    f"seqs {low}..{high}"
                )
    problems += [f"{'/'.join(key)}: at HQ, never accepted" for key in set(held) - expected]
    return problems


def connection_rates(log: list[str], *, client_prefix: str = "storegw-store-") -> Counter[int]:
    """New client connections per second (the broker's own log stamps) of clients whose id
    starts with ``client_prefix``."""
    per_second: Counter[int] = Counter()
    for line in log:
        stamp, _, entry = line.partition(": ")
        if entry.startswith("New client connected") and f" as {client_prefix}" in entry:
            per_second[int(stamp)] += 1
    return per_second


def wait_until(condition: Any, timeout: float, what: str) -> float:
    """Poll ``condition()`` until true; the seconds it took (TimeoutError after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - started
