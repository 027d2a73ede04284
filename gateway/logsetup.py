"""Logging set-up; only the CLI calls this (library code just logs).

Under systemd (``JOURNAL_STREAM`` set) lines carry no timestamp of their own — journald stamps
them — and start with the syslog priority prefix ``<N>`` so ``journalctl -p`` filters by level.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

__all__ = ["configure_logging", "running_under_journald"]

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def running_under_journald() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM"))


class _JournaldFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # Continuation lines (tracebacks) keep the priority so journald does not split levels.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def configure_logging(
    level: str = "INFO",
    levels: Mapping[str, str] | None = None,
    *,
    journald: bool | None = None,
) -> None:
    """Send logs to stderr at ``level``, with per-logger overrides from ``levels``."""
    journald = running_under_journald() if journald is None else journald
    handler = logging.StreamHandler(sys.stderr)
    if journald:
        handler.setFormatter(_JournaldFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, name_level in (levels or {}).items():
        logging.getLogger(name).setLevel(name_level)
