"""What ``storegw hq push-prices`` shows: a progress bar (plain lines when the output is not
a terminal) and the summary — a table, or JSON for scripts."""

from __future__ import annotations

import json
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from gateway.hq.fleet import FleetProgress, FleetSummary, Outcome

__all__ = ["ProgressView", "render_summary"]

#: Stores listed by name in the table (those that did not apply first); the rest are counted.
MAX_LISTED = 50


def _counts_line(progress: FleetProgress) -> str:
    counts = progress.counts
    return (
        f"sent {progress.sent}/{progress.total} · applied {progress.applied} · "
        f"refused {progress.refused} · behind {counts.get(Outcome.BEHIND, 0)} · "
        f"offline {counts.get(Outcome.OFFLINE, 0)}"
    )


class ProgressView:
    """A live bar on a terminal; otherwise a plain line per tenth of the fleet settled, when
    sending completes, and the final counts."""

    def __init__(self, stream: TextIO, *, total: int | None = None) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_step: tuple[int, int] | None = None
        self._latest = self._printed = ""
        self._total = total

    def __enter__(self) -> ProgressView:
        if self._tty:
            self._progress = Progress(
                TextColumn("pushing prices"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(file=self._stream),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=self._total)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, error, traceback)
        elif self._latest != self._printed:  # the final counts, whatever tenth they fell in
            print(self._latest, file=self._stream, flush=True)

    def update(self, progress: FleetProgress) -> None:
        settled = progress.applied + progress.refused
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                total=progress.total,
                completed=settled,
                description=_counts_line(progress),
            )
            return
        step = max(1, progress.total // 10)
        marks = (settled // step, int(progress.sent == progress.total))
        self._latest = _counts_line(progress)
        if marks != self._last_step:
            self._last_step, self._printed = marks, self._latest
            print(self._latest, file=self._stream, flush=True)


def render_summary(summary: FleetSummary, stream: TextIO, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2), file=stream)
        return
    console = Console(file=stream, width=None if stream.isatty() else 120)
    counts = summary.counts
    line = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
    console.print(
        f"{len(summary.stores)} store(s) in {summary.elapsed_s:.1f} s "
        f"(deadline {summary.deadline_s:g} s): {line}",
        highlight=False,
    )
    not_applied = [r for r in summary.stores if r.outcome is not Outcome.APPLIED]
    applied = [r for r in summary.stores if r.outcome is Outcome.APPLIED]
    listed = (not_applied + applied)[:MAX_LISTED]
    if listed and (not_applied or len(summary.stores) <= MAX_LISTED):
        table = Table("store", "version", "outcome", "detail")
        for result in listed:
            table.add_row(result.store, str(result.version), result.outcome.value, result.detail)
        console.print(table)
        if len(summary.stores) > len(listed):
            console.print(
                f"… {len(summary.stores) - len(listed)} more (--json lists every store)",
                highlight=False,
            )
    if summary.garbage:
        console.print(
            f"{summary.garbage} unreadable message(s) ignored; last: {summary.last_garbage}",
            highlight=False,
        )
