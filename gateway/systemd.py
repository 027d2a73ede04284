"""systemd integration without a dependency: sd_notify datagrams, the watchdog gate, journald.

``SystemdNotifier.from_environment()`` talks to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace); without it every call is a no-op, so the daemon runs the same in a
terminal. :class:`WatchdogGate` decides whether a ``WATCHDOG=1`` ping is honest: only when every
registered component advanced its progress counter since the last ping, so a wedged component
gets the service restarted instead of being kept alive by a healthy event loop;
:func:`feed_watchdog` is the daemon's task that pings through it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["SystemdNotifier", "WatchdogGate", "feed_watchdog", "running_under_journald"]

_LOGGER = logging.getLogger(__name__)

_SEND_TIMEOUT_S = 1.0  # a stuck PID 1 must not block the event loop for longer


def running_under_journald(environ: Mapping[str, str] | None = None, *, fd: int = 2) -> bool:
    """Whether ``fd`` (stderr) is the journal stream systemd connected, so log lines need no
    timestamp of their own. ``JOURNAL_STREAM`` is ``device:inode`` of that stream; comparing it
    with ``fd`` tells a redirected stderr (or a child that inherited the variable) apart."""
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


class SystemdNotifier:
    """Sends sd_notify(3) state changes to systemd; a no-op when ``address`` is None."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (default os.environ)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog: int | None = None
        raw = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID")
        if raw.isdigit() and int(raw) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(raw)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """systemd's WatchdogSec in seconds, or None when no watchdog is armed for us."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 1_000_000

    def notify(self, *assignments: str) -> None:
        """Send ``KEY=value`` lines as one datagram. Failures are logged once, never raised:
        losing systemd must not take the gateway down with it."""
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
                self._socket.settimeout(_SEND_TIMEOUT_S)
            self._socket.sendto("\n".join(assignments).encode(), address)
        except OSError as exc:
            if not self._failing:
                _LOGGER.warning("cannot notify systemd at %s: %s", self._address, exc)
                self._failing = True
            return
        if self._failing:
            _LOGGER.info("systemd notify socket %s reachable again", self._address)
            self._failing = False

    def ready(self) -> None:
        self.notify("READY=1")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets Type=notify-reload (systemd >= 253) match the reload; older
        # systemd ignores it. Send ready() when the reload is done.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        """One line for ``systemctl status`` (newlines would end the assignment)."""
        self.notify("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class WatchdogGate:
    """Ping only if every component made progress since the last ping (sans-IO).

    ``probes`` maps a component name to a counter it increments as it works (event loop ticks,
    database commits, supervisor passes). ``should_ping()`` is True when every counter moved
    since the last ping it allowed; otherwise ``stalled()`` names the components that did not.
    """

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
        """Components without progress at the last ``should_ping()`` (sorted; [] after a ping)."""
        return list(self._stalled)


async def feed_watchdog(notifier: SystemdNotifier, gate: WatchdogGate) -> None:
    """Task ``systemd.watchdog``: at half the watchdog interval, ping while every component
    of ``gate`` progresses; otherwise withhold the ping and say which stalled (once per change)."""
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    reported: list[str] = []
    while True:
        await asyncio.sleep(interval / 2)
        if gate.should_ping():
            notifier.watchdog()
            if reported:
                _LOGGER.info("all components progressing again")
                reported = []
        else:
            stalled = gate.stalled()
            if stalled != reported:
                _LOGGER.error("withholding watchdog ping: no progress from %s", stalled)
                notifier.status(f"stalled: {', '.join(stalled)}")
                reported = stalled
