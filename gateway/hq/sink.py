"""The one small contract ``storegw hq tail`` drives: where envelopes go (SQLite, the embedded
default, :class:`~gateway.hq.consumer.HqConsumer`; or PostgreSQL,
:class:`~gateway.hq.postgres_sink.PostgresSink`). Both read envelopes with
:mod:`gateway.hq.intake` and answer a batch only after committing it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.hq.intake import Ack, Key, Origin

__all__ = ["EnvelopeSink"]


class EnvelopeSink(Protocol):
    """Stores batches of ``up/{stream}`` payloads durably and de-duplicated."""

    stored: int  # new events committed
    duplicates: int  # events held already
    rejected: int  # envelopes refused as garbage
    expired: int  # events the stores' TTLs dropped before HQ had them
    conflicts: dict[Key, set[int]]  # seqs that came again with another event id

    async def receive_many(
        self, payloads: list[bytes], *, origins: Sequence[Origin] | None = None
    ) -> list[Ack]:
        """Commit the payloads' new events; the acks (one per key touched, the committed
        contiguous watermark) may be published once this returns. Raises StorageError when
        nothing could be committed (then nothing may be acked). ``origins``: per payload, the
        ``(store, stream)`` of the topic it came on; an envelope speaking for another is
        refused as garbage."""
        ...

    def gaps(self) -> dict[Key, tuple[int, int]]:
        """Per key, the first missing seq range above the watermark, as last seen."""
        ...
