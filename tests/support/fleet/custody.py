"""A virtual store's outbox, kept in memory: one :class:`StreamOutbox` per stream.

It does what the gateway's SQLite outbox and uplink do for custody (gateway/store/outbox.py,
gateway/sync/uplink.py), without the disk: events accepted in runs (one run per group commit)
get gapless seqs in the store's epoch; envelopes are read from a cursor that every new
connection and every ack timeout (:class:`~gateway.sync.uplink.CustodyTimer`, the gateway's
own) rewinds to HQ's watermark; an ack drops what it covers and records, per event, the time
from its acceptance to HQ's ack (:class:`LatencyHistogram`). Sans-IO: times come from the
caller.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from gateway.sync.uplink import CustodyTimer
from gateway.wire.encoding import WireBatch, wire_batch

__all__ = ["LatencyHistogram", "StreamOutbox"]

_BUCKET_RATIO = 1.05  # 5 % wide buckets: quantiles within 5 %
_FIRST_BUCKET_S = 0.0005
_BUCKETS = 320  # up to ~3 000 s


class LatencyHistogram:
    """Counts of latencies in logarithmic buckets: mergeable across processes (a plain list)."""

    def __init__(self, counts: list[int] | None = None) -> None:
        self.counts = counts if counts is not None else [0] * _BUCKETS

    @staticmethod
    def bucket(seconds: float) -> int:
        if seconds <= _FIRST_BUCKET_S:
            return 0
        index = int(math.log(seconds / _FIRST_BUCKET_S, _BUCKET_RATIO)) + 1
        return min(index, _BUCKETS - 1)

    def add(self, seconds: float, weight: int = 1) -> None:
        self.counts[self.bucket(seconds)] += weight

    def merge(self, counts: list[int]) -> None:
        for index, count in enumerate(counts):
            if count:
                self.counts[index] += count

    @property
    def total(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """The upper edge of the bucket holding quantile ``q`` (None when empty)."""
        total = self.total
        if not total:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return _FIRST_BUCKET_S * _BUCKET_RATIO**index
        return _FIRST_BUCKET_S * _BUCKET_RATIO ** (_BUCKETS - 1)


@dataclass(slots=True)
class _Run:
    first: int
    texts: list[str]
    accepted_at: float

    @property
    def last(self) -> int:
        return self.first + len(self.texts) - 1


@dataclass(slots=True)
class StreamOutbox:
    """One stream's events beyond HQ's watermark, and where the sending stands."""

    stream: str
    epoch: str
    ack_timeout_s: float = 30.0
    head: int = 0  # the last seq accepted
    acked: int = 0  # HQ's watermark
    cursor: int = 0  # the last seq handed to the link on this connection
    awaiting_hq: list[int] = field(default_factory=list)  # seq_to of envelopes sent, not acked
    latencies: LatencyHistogram = field(default_factory=LatencyHistogram)
    acked_events: int = 0  # events HQ took custody of (each once)
    _runs: list[_Run] = field(default_factory=list)
    _firsts: list[int] = field(default_factory=list)
    _start: int = 0  # runs before it are acked (compacted now and then)
    timer: CustodyTimer = field(init=False)

    def __post_init__(self) -> None:
        self.timer = CustodyTimer(self.ack_timeout_s)

    @property
    def backlog(self) -> int:
        return self.head - self.acked

    def accept(self, texts: list[str], now: float) -> None:
        """One group commit's events (stored event objects, no seq) take the next seqs."""
        if not texts:
            return
        run = _Run(self.head + 1, texts, now)
        self._runs.append(run)
        self._firsts.append(run.first)
        self.head = run.last

    def set_ack_timeout(self, seconds: float, now: float) -> None:
        """From ``now`` on: the envelopes waiting for HQ start their wait again."""
        self.ack_timeout_s = seconds
        self.timer = CustodyTimer(seconds)
        for seq_to in self.awaiting_hq:
            self.timer.pubacked(seq_to, now)

    def rewind(self) -> None:
        """A new connection: everything HQ has not acknowledged goes again."""
        self.cursor = self.acked
        self.awaiting_hq.clear()
        self.timer = CustodyTimer(self.ack_timeout_s)

    def next_batch(self, max_events: int, window: int) -> WireBatch | None:
        """The next envelope's events after the cursor (None: nothing to send, or the window
        towards HQ is full); moves the cursor over them."""
        if self.cursor >= self.head or len(self.awaiting_hq) >= window:
            return None
        index = bisect.bisect_right(self._firsts, self.cursor + 1, lo=self._start) - 1
        runs: list[tuple[int, list[str]]] = []
        wanted = max_events
        seq = self.cursor + 1
        while wanted and index < len(self._runs):
            run = self._runs[index]
            offset = seq - run.first
            texts = run.texts[offset : offset + wanted]
            runs.append((seq, texts))
            wanted -= len(texts)
            seq += len(texts)
            index += 1
        batch = wire_batch(self.stream, runs)
        if batch is None:
            return None
        self.cursor = batch.seq_to
        self.awaiting_hq.append(batch.seq_to)
        return batch

    def pubacked(self, seq_to: int, now: float) -> None:
        self.timer.pubacked(seq_to, now)

    def acknowledge(self, epoch: str, seq: int, now: float) -> int:
        """HQ's watermark ``seq`` in ``epoch``: drops what it covers, records each event's time
        from acceptance to now. Returns how many events it newly covered (0 for another
        epoch, a stale ack, or one beyond the head)."""
        if epoch != self.epoch or seq <= self.acked or seq > self.head:
            return 0
        covered = seq - self.acked
        while self._start < len(self._runs):
            run = self._runs[self._start]
            if run.first > seq:
                break
            taken = min(run.last, seq) - max(run.first, self.acked + 1) + 1
            if taken > 0:
                self.latencies.add(now - run.accepted_at, taken)
            if run.last > seq:
                break
            self._start += 1
        self.acked = seq
        self.acked_events += covered
        self.cursor = max(self.cursor, seq)
        self.awaiting_hq = [last for last in self.awaiting_hq if last > seq]
        self.timer.watermark_moved(seq, now)
        self._compact()
        return covered

    def check_timeout(self, now: float) -> bool:
        """HQ's watermark did not cover an envelope in time: the cursor goes back to it."""
        if not self.timer.expired(now):
            return False
        self.timer.rewound()
        self.cursor = self.acked
        self.awaiting_hq.clear()
        return True

    def _compact(self) -> None:
        if self._start > 256 and self._start * 2 > len(self._runs):
            del self._runs[: self._start]
            del self._firsts[: self._start]
            self._start = 0
