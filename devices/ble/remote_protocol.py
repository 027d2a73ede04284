"""What remote receiver nodes publish over MQTT: pure decoding, no I/O.

Two formats (docs/drivers.md, "Remote receiver nodes"):

**storegw** — the format node firmware written for storegw publishes; the raw advertising data
goes as it was received, so the gateway decodes every frame itself::

    topic   <prefix>/<node>/adverts
    payload {"v": 1, "node": "node-produce", "seq": 812,
             "adverts": [{"addr": "C3:11:22:33:44:55", "rssi": -67, "ad": "0201061aff4c00…"}]}
    topic   <prefix>/<node>/status      payload "online" | "offline" (retained; "offline" as
                                        the node's MQTT last will)

``addr`` is the advertiser's address (six hex octets, ``:`` or ``-``), ``rssi`` dBm (-127…0),
``ad`` the advertising data as hex (at most 1 650 bytes), ``seq`` counts the node's messages
(a gap means messages were lost; a lower one, that the node restarted).

**ESPresense** — what ESPresense nodes publish (one message per device and room)::

    topic   espresense/devices/<id>/<room>
    payload {"id": "iBeacon:e5b9e3e6-…-100-17", "rssi@1m": -59, "rssi": -71,
             "mac": "c31122334455", …}
    topic   espresense/rooms/<room>/status  payload "online" | "offline"

An ESPresense ``iBeacon:<uuid>-<major>-<minor>`` id becomes the same :class:`BeaconId` the
frame would give; other ids carry no beacon identity. Anything else — bad JSON, wrong types,
out-of-range values, oversized payloads, topics with wildcards or too deep — is not a report
(``None``), never an exception.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from gateway.drivers.contracts import BeaconFormat, BeaconId

__all__ = [
    "MAX_PAYLOAD",
    "NodeAdvert",
    "NodeReport",
    "NodeStatus",
    "parse_espresense",
    "parse_storegw",
]

MAX_PAYLOAD = 256 * 1024
_MAX_ADVERTS = 2_000
_MAX_AD_BYTES = 1650
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")
_IBEACON_ID = re.compile(
    r"^iBeacon:([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"-(\d{1,5})-(\d{1,5})$"
)


@dataclass(frozen=True, slots=True)
class NodeAdvert:
    """One advertisement a node heard."""

    address: str  # upper case, ":"-separated
    rssi: int
    advertising_data: bytes | None = None  # storegw format: the raw AD structures
    beacon: BeaconId | None = None  # ESPresense: what its id says
    measured_power: int | None = None


@dataclass(frozen=True, slots=True)
class NodeReport:
    node: str
    adverts: tuple[NodeAdvert, ...]
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node: str
    state: Literal["online", "offline"]


def _canonical_address(text: object) -> str | None:
    if not isinstance(text, str) or not _ADDRESS.match(text):
        return None
    digits = text.replace(":", "").replace("-", "").upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _rssi(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if math.isnan(value) or not -127 <= value <= 0:
        return None
    return round(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(payload: bytes) -> Any:
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        return json.loads(payload, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


def _status(payload: bytes, node: str) -> NodeStatus | None:
    text = payload.strip().lower()
    if text in (b"online", b"offline"):
        return NodeStatus(node, "online" if text == b"online" else "offline")
    return None


def parse_storegw(  # noqa: PLR0911 - one early "not a report" per rule of the format
    topic: str, payload: bytes, prefix: str
) -> NodeReport | NodeStatus | None:
    """A message on ``<prefix>/<node>/adverts`` or ``…/status``; None for anything else."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) != 2 or not _NODE.match(parts[0]):
        return None
    node, kind = parts
    if kind == "status":
        return _status(payload, node)
    if kind != "adverts":
        return None
    body = _json(payload)
    if not isinstance(body, dict) or body.get("v") != 1 or body.get("node") != node:
        return None
    seq = body.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        return None
    items = body.get("adverts")
    if not isinstance(items, list) or len(items) > _MAX_ADVERTS:
        return None
    adverts: list[NodeAdvert] = []
    for item in items:
        advert = _storegw_advert(item)
        if advert is None:
            return None  # one bad advert: the message is not what the contract says
        adverts.append(advert)
    return NodeReport(node, tuple(adverts), seq)


def _storegw_advert(item: object) -> NodeAdvert | None:
    if not isinstance(item, dict):
        return None
    address, rssi, data = (
        _canonical_address(item.get("addr")),
        _rssi(item.get("rssi")),
        item.get("ad"),
    )
    if address is None or rssi is None or not isinstance(data, str):
        return None
    if len(data) > 2 * _MAX_AD_BYTES or len(data) % 2:
        return None
    try:
        raw = bytes.fromhex(data)
    except ValueError:
        return None
    return NodeAdvert(address, rssi, advertising_data=raw)


def parse_espresense(  # noqa: PLR0911 - one early "not a report" per rule of the format
    topic: str, payload: bytes, prefix: str = "espresense"
) -> NodeReport | NodeStatus | None:
    """``<prefix>/devices/<id>/<room>`` or ``<prefix>/rooms/<room>/status``; None otherwise."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) == 3 and parts[0] == "rooms" and parts[2] == "status":
        return _status(payload, parts[1]) if _NODE.match(parts[1]) else None
    if len(parts) != 3 or parts[0] != "devices" or not _NODE.match(parts[2]):
        return None
    room = parts[2]
    body = _json(payload)
    if not isinstance(body, dict):
        return None
    rssi = _rssi(body.get("rssi"))
    ident = body.get("id")
    if rssi is None or not isinstance(ident, str) or not 0 < len(ident) <= 128:
        return None
    address = _canonical_address(body.get("mac"))
    beacon: BeaconId | None = None
    matched = _IBEACON_ID.match(ident)
    if matched is not None:
        major, minor = int(matched.group(2)), int(matched.group(3))
        if major > 0xFFFF or minor > 0xFFFF:
            return None
        beacon = BeaconId(BeaconFormat.IBEACON, f"{matched.group(1).lower()}:{major}:{minor}")
    if address is None:
        # No address reported: the id stands for the device (pseudonymised downstream).
        address = "id:" + ident
    power = _rssi(body.get("rssi@1m"))
    return NodeReport(room, (NodeAdvert(address, rssi, beacon=beacon, measured_power=power),))
