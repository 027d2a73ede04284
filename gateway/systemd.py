"""systemd integration without a dependency: sd_notify datagrams and the watchdog gate.

``SystemdNotifier.from_environment()`` talks to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace); without it every call is a no-op, so the daemon runs the same in a
terminal. :class:`WatchdogGate` decides whether a ``WATCHDOG=1`` ping is honest: only when every
registered component advanced its progress counter since the last ping.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["SystemdNotifier", "WatchdogGate"]

_LOGGER = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog: int | None = None
        raw = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if raw and raw.isdigit() and int(raw) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(raw)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """systemd's WatchdogSec in seconds, or None when no watchdog is armed."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 1_000_000

    def notify(self, *assignments: str) -> None:
        if self._address is None:
            return
        address = self._address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto("\n".join(assignments).encode(), address)
        except OSError as exc:
            if not self._warned:  # log once: systemd going away must not flood the journal
                _LOGGER.warning("cannot notify systemd at %s: %s", self._address, exc)
                self._warned = True

    def ready(self) -> None:
        self.notify("READY=1")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text.replace(chr(10), ' ')}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class WatchdogGate:
    """Ping only if every component made progress since the last ping (sans-IO)."""

    def __init__(self, probes: Mapping[str, Callable[[], int]]) -> None:
        self._probes = dict(probes)
        self._last = {name: probe() for name, probe in self._probes.items()}
        self._stalled: list[str] = []

    def should_ping(self) -> bool:
        current = {name: probe() for name, probe in self._probes.items()}
        self._stalled = sorted(name for name, value in current.items() if value == self._last[name])
        if self._stalled:
            return False
        self._last = current
        return True

    def stalled(self) -> list[str]:
        return list(self._stalled)
