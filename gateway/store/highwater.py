"""The outbox's high-water marks, kept outside the database: per stream, its epoch and a seq
at or above every seq that has left the store.

A database restored from a copy, or one whose WAL was lost, keeps its epoch but goes back to
a lower ``next_seq``: new events would get seqs HQ already holds (with other ids), and HQ,
which de-duplicates on (store, stream, epoch, seq), would drop them. The database cannot see
that from the inside, so these marks live in a small file beside it (``<database>.highwater``),
written before a seq beyond them is published. At open, a stream whose head is at or below its
mark, or whose epoch is not the mark's, went back in time (:func:`went_back`) and starts a new
epoch (:meth:`gateway.store.outbox.Outbox.open`).

The file is replaced atomically (a temporary file renamed over it) but not fsynced: it guards
against a database that is older than the running system's own record, which a power cut does
not produce (the database is written with ``synchronous = FULL``); a mark lost to one is only
lower, never a false alarm.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HighWater", "HighWaterFile", "went_back"]

_LOGGER = logging.getLogger(__name__)

_VERSION = 1


@dataclass(frozen=True, slots=True)
class HighWater:
    """Every seq of ``epoch`` that may have left the store is at most ``seq``."""

    epoch: str
    seq: int


def went_back(epoch: str, next_seq: int, mark: HighWater | None) -> bool:
    """True when a stream at ``epoch`` whose next event gets ``next_seq`` is behind its mark:
    it would give out a seq that may have left already, or it is in an older epoch than the
    one that was sending (a copy from before an epoch change). No mark: nothing to compare."""
    if mark is None:
        return False
    return mark.epoch != epoch or mark.seq >= next_seq


class HighWaterFile:
    """The marks of one database (its epoch names it: a mark file left by another database
    says nothing about this one)."""

    def __init__(self, path: Path, database_epoch: str) -> None:
        self.path = path
        self._database_epoch = database_epoch
        self._failing = False  # log a failing write once, and its recovery once

    @classmethod
    def beside(cls, database: Path, database_epoch: str) -> HighWaterFile:
        return cls(database.with_name(database.name + ".highwater"), database_epoch)

    def load(self) -> dict[str, HighWater]:
        """The marks, or none when the file is missing, unreadable or another database's."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            _LOGGER.warning("cannot read %s (%s): a restore would go unnoticed", self.path, exc)
            return {}
        try:
            data = json.loads(text)
            if data["v"] != _VERSION or data["database"] != self._database_epoch:
                return {}
            return {
                str(stream): HighWater(_text(mark["epoch"]), _count(mark["seq"]))
                for stream, mark in data["streams"].items()
            }
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            _LOGGER.warning("ignoring %s, not a high-water file: %s", self.path, exc)
            return {}

    def save(self, marks: Mapping[str, HighWater]) -> bool:
        """Replace the file with ``marks``; False (logged once) if it cannot be written — the
        uplink goes on: a missing mark only leaves a restore to HQ's watermark to notice."""
        text = json.dumps(
            {
                "v": _VERSION,
                "database": self._database_epoch,
                "streams": {
                    stream: {"epoch": mark.epoch, "seq": mark.seq}
                    for stream, mark in sorted(marks.items())
                },
            },
            separators=(",", ":"),
        )
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.write_text(text, encoding="utf-8")
            temporary.replace(self.path)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                _LOGGER.error(
                    "cannot write %s (%s): a restored database would only be noticed by HQ's "
                    "watermark",
                    self.path,
                    exc,
                )
            return False
        if self._failing:
            self._failing = False
            _LOGGER.info("%s is written again", self.path)
        return True


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"not an epoch: {value!r}")
    return value


def _count(value: object) -> int:
    if type(value) is not int or value < 0:
        raise TypeError(f"not a seq: {value!r}")
    return value
