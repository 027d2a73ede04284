"""The folder where a simulated ESL system draws its shelf: one PNG per label, plus an index.

What a technician (or a test) opens to see what every label really shows:

- ``<label_id>.png``: exactly the bytes the label shows; no file means a blank panel;
- ``shelf.json``: every label's content hash, model, since when it shows it and its battery;
- ``index.html``: the PNGs as a grid that reloads itself, for a browser opened on the folder;
- ``shelf.journal``: what changed since ``shelf.json`` was last written, one JSON line per
  label change, appended the moment the label shows it (removed whenever the index is
  rewritten). The index is rewritten at most twice a second; the journal is what lets a new
  process (:meth:`ShelfFolder.load`) find exactly what every label showed when the previous one
  died, as physical labels keep their picture through a gateway crash.

Every file is replaced atomically (a hidden temporary file in the same folder, then
``os.replace``), so a reader never sees half an image. Writes are synchronous and never
fsync'ed, on purpose: a label image is a few kilobytes and the folder is a view of the
simulation, not a record, so a write costs well under a millisecond of the event loop, whereas
a thread per write would cost more than the write and could not be cancelled with the driver.
Only the index grows with the shelf, and the driver rate-limits its rewrites. A journal line is
one ``write`` on an ``O_APPEND`` file: a process killed at any instant leaves whole lines (a
torn last line, after a power cut, is skipped on load).

One folder belongs to one driver instance: two access points drawing into the same folder
would overwrite each other's index.
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import LabelModel
from gateway.errors import DriverConfigError, DriverError, DriverUnavailableError

__all__ = ["INDEX_HTML", "SHELF_JOURNAL", "SHELF_JSON", "ShelfEntry", "ShelfFolder"]

_LOGGER = logging.getLogger(__name__)

SHELF_JSON = "shelf.json"
SHELF_JOURNAL = "shelf.journal"
INDEX_HTML = "index.html"
_REFRESH_S = 5  # the browser view reloads this often

# Errors no retry can heal: the folder is misconfigured (a file, no permission, read-only).
_PERMANENT = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR}


@dataclass(frozen=True, slots=True)
class ShelfEntry:
    """One label as the index shows it."""

    label_id: str
    model: LabelModel
    content_hash: str | None  # None: blank panel
    shown_at: datetime | None  # when it began showing this; None: not since the start
    battery_mv: int


class ShelfFolder:
    """Writes a shelf's label images and index into ``path`` (created when missing).

    Every failure is a :class:`~gateway.errors.DriverError` naming the folder:
    :class:`DriverConfigError` when the folder cannot be used as configured (not a directory,
    no permission, read-only filesystem), :class:`DriverUnavailableError` otherwise (a full
    disk may be freed).
    """

    def __init__(self, path: Path, *, driver: str) -> None:
        self._path = path
        self._driver = driver

    @property
    def path(self) -> Path:
        return self._path

    def image_path(self, label_id: str) -> Path:
        return self._path / f"{label_id}.png"

    def prepare(self, shown: Iterable[tuple[str, bytes | None]]) -> None:
        """Create the folder and make its images match ``(label id, png or None)`` pairs:
        a label showing nothing loses any image an earlier run left behind."""
        try:
            self._path.mkdir(parents=True, exist_ok=True)
            present = {entry.name for entry in self._path.iterdir()}
        except OSError as exc:
            raise self._error(exc, "create or list it") from exc
        for label_id, png in shown:
            if png is not None or f"{label_id}.png" in present:
                self.show(label_id, png)

    def show(self, label_id: str, png: bytes | None) -> None:
        """The label now shows ``png`` (None: blank, its image is removed)."""
        name = f"{label_id}.png"
        if png is not None:
            self._replace(name, png)
            return
        try:
            (self._path / name).unlink(missing_ok=True)
        except OSError as exc:
            raise self._error(exc, f"remove {name}") from exc

    def journal(self, entry: ShelfEntry) -> None:
        """Record that the label now shows ``entry`` (until the next :meth:`write_index`)."""
        line = json.dumps({"label": entry.label_id, **_shelf_record(entry)}) + "\n"
        try:
            fd = os.open(self._path / SHELF_JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._error(exc, f"append to {SHELF_JOURNAL}") from exc

    def write_index(self, entries: Iterable[ShelfEntry], *, updated_at: datetime) -> None:
        """Rewrite ``shelf.json`` and ``index.html`` for ``entries``; the journal, now in the
        index, is removed."""
        listed = list(entries)
        shelf = {
            "driver": self._driver,
            "updated_at": isoformat_utc(updated_at),
            "labels": {entry.label_id: _shelf_record(entry) for entry in listed},
        }
        self._replace(SHELF_JSON, (json.dumps(shelf, indent=1) + "\n").encode())
        try:
            (self._path / SHELF_JOURNAL).unlink(missing_ok=True)
        except OSError as exc:
            raise self._error(exc, f"empty {SHELF_JOURNAL}") from exc
        self._replace(INDEX_HTML, _index_html(self._driver, listed, updated_at).encode())

    def load(self) -> dict[str, dict[str, Any]]:
        """What an earlier run left: label id → its latest record (``shelf.json`` with the
        journal replayed over it), as written by :meth:`write_index` — not yet checked against
        any configuration. A missing, unreadable or foreign ``shelf.json`` gives ``{}`` (with a
        warning unless the folder holds no label images either): the labels start blank."""
        try:
            text = (self._path / SHELF_JSON).read_text(encoding="utf-8")
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                if any(self._path.glob("*.png")):
                    _LOGGER.warning(
                        "%s: %s has label images but no %s: the labels start blank",
                        self._driver,
                        self._path,
                        SHELF_JSON,
                    )
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            _LOGGER.warning(
                "%s: cannot read %s: %s: the labels start blank", self._driver, SHELF_JSON, exc
            )
            return {}
        try:
            shelf = json.loads(text)
        except ValueError as exc:
            _LOGGER.warning(
                "%s: %s is not JSON (%s): the labels start blank",
                self._driver,
                self._path / SHELF_JSON,
                exc,
            )
            return {}
        labels = shelf.get("labels") if isinstance(shelf, dict) else None
        if not isinstance(labels, dict) or shelf.get("driver") != self._driver:
            _LOGGER.warning(
                "%s: %s is not this access point's shelf index: the labels start blank",
                self._driver,
                self._path / SHELF_JSON,
            )
            return {}
        records = {str(k): v for k, v in labels.items() if isinstance(v, dict)}
        try:
            journal = (self._path / SHELF_JOURNAL).read_bytes()
        except FileNotFoundError:
            journal = b""
        except OSError as exc:
            _LOGGER.warning("%s: cannot read %s: %s", self._driver, SHELF_JOURNAL, exc)
            journal = b""
        for raw in journal.splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a torn last line
            if isinstance(record, dict) and isinstance(record.get("label"), str):
                records[record.pop("label")] = record
        return records

    def _replace(self, name: str, data: bytes) -> None:
        temporary = self._path / f".{name}.tmp"
        try:
            temporary.write_bytes(data)
            temporary.replace(self._path / name)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise self._error(exc, f"write {name}") from exc

    def _error(self, exc: OSError, action: str) -> DriverError:
        reason = exc.strerror or type(exc).__name__
        if exc.errno in _PERMANENT:
            return DriverConfigError(
                f"image_dir {self._path}: cannot {action}: {reason}"
                " (set image_dir to a writable directory)",
                driver=self._driver,
            )
        return DriverUnavailableError(
            f"image_dir {self._path}: cannot {action}: {reason}", driver=self._driver
        )


def _shelf_record(entry: ShelfEntry) -> dict[str, object]:
    model = entry.model
    return {
        "content_hash": entry.content_hash,
        "image": None if entry.content_hash is None else f"{entry.label_id}.png",
        "model": {
            "width": model.width,
            "height": model.height,
            "palette": model.palette.value,
            "has_led": model.has_led,
        },
        "shown_at": None if entry.shown_at is None else isoformat_utc(entry.shown_at),
        "battery_mv": entry.battery_mv,
    }


_STYLE = (
    "body{font-family:sans-serif;background:#ccc;margin:1em}"
    ".shelf{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}"
    "figure{margin:0;background:#eee;padding:.4em;border:1px solid #888}"
    "img,.blank{display:block;background:#fff;image-rendering:pixelated}"
    ".blank{border:1px dashed #888;box-sizing:border-box;color:#888;text-align:center}"
    "figcaption{font:12px monospace;margin-top:.3em}"
)


def _index_html(driver: str, entries: list[ShelfEntry], updated_at: datetime) -> str:
    title = html.escape(f"{driver}: simulated shelf")
    figures = []
    for entry in entries:
        size = f'width="{entry.model.width}" height="{entry.model.height}"'
        if entry.content_hash is None:
            panel = (
                f'<div class="blank" style="width:{entry.model.width}px;'
                f'height:{entry.model.height}px">blank</div>'
            )
            shown = "blank"
        else:
            # The hash in the query makes a reloading browser fetch a changed image.
            source = f"{entry.label_id}.png?v={quote(entry.content_hash, safe='')}"
            panel = f'<img src="{html.escape(source)}" {size} alt="{entry.label_id}">'
            shown = html.escape(entry.content_hash[:16])
        figures.append(
            f"<figure>{panel}<figcaption>{entry.label_id}<br>{shown}"
            f"<br>{entry.battery_mv} mV</figcaption></figure>"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{_REFRESH_S}">'
        f"<title>{title}</title><style>{_STYLE}</style></head>\n<body><h1>{title}</h1>"
        f"<p>{len(entries)} labels, updated {isoformat_utc(updated_at)}; "
        f"this page reloads every {_REFRESH_S} s.</p>\n"
        '<div class="shelf">\n' + "\n".join(figures) + "\n</div></body></html>\n"
    )
