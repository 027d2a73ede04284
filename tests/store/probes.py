"""Test events for the outbox's own mechanics (seqs, rows, budget, epochs, the uplink): any
fields under a few type names, the wire contract's events besides. Not the contract: tests of
what producers send use the real models (tests/wire)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import ConfigDict

from gateway.wire import EVENT_TYPES, EventBody, EventCatalogue

__all__ = ["PROBES", "Probe", "probe", "probes"]


class Probe(EventBody):
    """An event of any fields (kept in the order given)."""

    model_config = ConfigDict(extra="allow")


_NAMES = (
    "a",
    "d",
    "n",
    "r",
    "s",
    "x",
    "alert.raised",
    "dwell",
    "dwell.summary",
    "dwell.visit",
    "stock.changed",
    "stock.empty",
)
_MODELS: dict[str, type[Probe]] = {
    name: type(f"Probe_{name.replace('.', '_')}", (Probe,), {"__module__": __name__})
    for name in _NAMES
}

#: What the tests' outboxes take: the contract's events and the probes.
PROBES = EventCatalogue(EVENT_TYPES, _MODELS)


def probe(event_type: str, fields: Mapping[str, Any] | None = None, /, **more: Any) -> Probe:
    """A probe of type ``event_type`` with these fields."""
    return _MODELS[event_type](**{**(fields or {}), **more})


def probes(event_type: str, bodies: Iterable[Mapping[str, Any]]) -> Iterator[Probe]:
    """Probes of one type, one per body (lazily: a generator stays one)."""
    return (probe(event_type, body) for body in bodies)
