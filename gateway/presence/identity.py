"""Who an advertisement is: an enrolled tag's name, or a pseudonym that cannot be turned back
into the device's address.

Enrolled identities are the store's own tags (by the beacon id they broadcast) and devices
enrolled by identity resolving key (the driver names the key that resolved the address).
Everything else is personal data (research/ble.md, "Privacy"): its address — or the beacon id
it broadcasts — is replaced *at ingestion* by a truncated HMAC-SHA256 under a key that is drawn
at random, held in memory only and replaced at midnight, store time. Pseudonyms therefore link
a device's sightings within one day at most (a phone's rotating address links them for ~15
minutes anyway), and nothing written anywhere can be linked back to an address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from gateway.drivers.contracts import Advertisement

__all__ = ["Identity", "IdentityRules", "Pseudonyms"]


class Pseudonyms:
    """Keyed hashes of addresses under a daily key (see the module docstring)."""

    __slots__ = ("_day", "_key", "_new_key", "_size", "_zone")

    def __init__(
        self,
        timezone: str,
        *,
        size: int = 8,
        new_key: Callable[[], bytes] = lambda: secrets.token_bytes(32),
    ) -> None:
        self._zone = ZoneInfo(timezone)
        self._size = size
        self._new_key = new_key
        self._day: date | None = None
        self._key = b""

    def of(self, address: str, now: datetime) -> str:
        """``address``'s pseudonym today (``now``: an aware instant)."""
        day = now.astimezone(self._zone).date()
        if day != self._day:
            self._day, self._key = day, self._new_key()
        digest = hmac.new(self._key, address.upper().encode(), hashlib.sha256).digest()
        return "anon-" + digest[: self._size].hex()


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    enrolled: bool


class IdentityRules:
    """Enrolled tags by beacon id, enrolled key names, fixed beacons (not shoppers), and
    whether anyone else is counted at all."""

    def __init__(
        self,
        tags: Mapping[str, str],
        key_names: frozenset[str],
        fixed: frozenset[str],
        pseudonyms: Pseudonyms,
        *,
        count_anonymous: bool = True,
    ) -> None:
        self.tags = dict(tags)  # beacon id -> tag name
        self.key_names = key_names
        self.fixed = fixed
        self.pseudonyms = pseudonyms
        self.count_anonymous = count_anonymous

    def enrol(self, tags: Mapping[str, str], key_names: frozenset[str]) -> None:
        """Replace the enrolled tags (beacon id -> name) and key names."""
        self.tags, self.key_names = dict(tags), key_names

    def identify(self, advert: Advertisement) -> Identity | None:
        """The identity to track, or None (a fixed beacon, or nobody to count)."""
        beacon = str(advert.beacon) if advert.beacon is not None else None
        if beacon is not None:
            name = self.tags.get(beacon)
            if name is not None:
                return Identity(name, enrolled=True)
            if beacon in self.fixed:
                return None
        if advert.enrolled_key is not None and advert.enrolled_key in self.key_names:
            return Identity(advert.enrolled_key, enrolled=True)
        if not self.count_anonymous or (advert.telemetry is not None and beacon is None):
            return None  # a TLM frame: a fixed beacon's telemetry, not a shopper
        return Identity(self.pseudonyms.of(beacon or advert.address, advert.observed_at), False)
