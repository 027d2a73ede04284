"""Where driver readings arrive: fan-out to the core services and a live view for diagnostics.

The supervisor hands every reading to :meth:`ReadingHub.publish` (synchronously, never
blocking). Core services (stock counting, presence, label jobs) subscribe per family; the hub
also keeps a small bounded picture of the latest values per device for ``storegw status`` and
the demo's live summary.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import (
    Advertisement,
    Heartbeat,
    LabelReport,
    LabelReportKind,
    Reading,
    ReceiverStatus,
    WeightSample,
)

__all__ = ["DeviceView", "ReadingHub", "ReadingListener"]

_LOGGER = logging.getLogger(__name__)

ReadingListener = Callable[[str, Reading], None]

_MAX_TRACKED = 256  # per device: bounded so a busy BLE environment cannot grow memory


@dataclass(slots=True)
class DeviceView:
    """What the hub last saw from one driver instance."""

    readings: int = 0
    weights: dict[str, WeightSample] = field(default_factory=dict)
    # Senders heard lately: (monotonic, rssi) keyed by the address's process-salted hash() —
    # the live view never holds an address (docs/privacy.md), and the oldest go first.
    beacons: OrderedDict[int, tuple[float, int]] = field(default_factory=OrderedDict)
    label_reports: dict[LabelReportKind, int] = field(default_factory=dict)
    last_label: LabelReport | None = None
    receivers: dict[str, ReceiverStatus] = field(default_factory=dict)

    def record(self, reading: Reading) -> None:
        self.readings += 1
        match reading:
            case WeightSample():
                self.weights[reading.channel] = reading
            case Advertisement():
                key = hash(reading.address)
                self.beacons[key] = (reading.monotonic, reading.rssi)
                self.beacons.move_to_end(key)
                if len(self.beacons) > _MAX_TRACKED:
                    self.beacons.popitem(last=False)
            case LabelReport():
                self.label_reports[reading.kind] = self.label_reports.get(reading.kind, 0) + 1
                self.last_label = reading
            case ReceiverStatus():
                self.receivers[reading.receiver] = reading
                if len(self.receivers) > _MAX_TRACKED:
                    del self.receivers[next(iter(self.receivers))]
            case Heartbeat():
                pass

    def summary(self, now_monotonic: float, *, recent_s: float = 30.0) -> dict[str, Any]:
        """A JSON-ready digest, as shown by ``storegw status`` and the demo."""
        digest: dict[str, Any] = {"readings": self.readings}
        if self.weights:
            digest["weights"] = {
                channel: {
                    "net_grams": sample.net_grams,
                    "stable": sample.stable,
                    "status": sample.status.value,
                    "at": isoformat_utc(sample.observed_at),
                }
                for channel, sample in sorted(self.weights.items())
            }
        if self.beacons:
            recent = [
                rssi for seen, rssi in self.beacons.values() if now_monotonic - seen <= recent_s
            ]
            digest["beacons_recent"] = len(recent)
            if recent:
                digest["strongest_rssi"] = max(recent)
        if self.receivers:
            digest["receivers"] = {
                name: {"state": status.state.value, "detail": status.detail}
                for name, status in sorted(self.receivers.items())
            }
        if self.label_reports:
            digest["label_reports"] = {
                kind.value: count for kind, count in sorted(self.label_reports.items())
            }
        return digest


class ReadingHub:
    """Receives readings from the supervisor and fans them out to subscribers."""

    def __init__(self) -> None:
        self._listeners: list[ReadingListener] = []
        self._views: dict[str, DeviceView] = {}

    def subscribe(self, listener: ReadingListener) -> Callable[[], None]:
        """Call ``listener(device, reading)`` for every reading; returns the unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, device: str, reading: Reading) -> None:
        self._views.setdefault(device, DeviceView()).record(reading)
        for listener in tuple(self._listeners):
            try:
                listener(device, reading)
            except Exception:  # one faulty consumer must not starve the others
                _LOGGER.exception("reading listener %r failed on %s", listener, device)

    def forget(self, device: str) -> None:
        self._views.pop(device, None)

    def view(self, device: str) -> DeviceView | None:
        return self._views.get(device)

    def summaries(self, now_monotonic: float) -> dict[str, dict[str, Any]]:
        return {name: view.summary(now_monotonic) for name, view in sorted(self._views.items())}
