"""Resolving private addresses with identity resolving keys (IRKs): pure, no I/O.

A resolvable private address (top bits ``01``) is ``prand (24 bits) ‖ hash (24 bits)``, most
significant first as written, with ``hash = ah(IRK, prand)``; ``ah`` is the low 24 bits of
AES-128 under the IRK of ``prand`` zero-padded to 16 bytes (Core Specification, vol 3 part H,
2.2.2 and 2.4.2.3). Keys and addresses are handled most significant octet first, as the
specification's sample data writes them: a key exported least significant octet first (some
tools do) must be reversed before it is enrolled.

:class:`IdentityResolver` is what a receiver's driver keeps: the enrolled keys and a small cache
of addresses already resolved (a phone keeps its address for ~15 minutes and advertises several
times a second, so each address costs one AES per enrolled key once, not per advert).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from devices.ble.advertising import parse_address

__all__ = ["IdentityResolver", "address_hash", "resolves"]

_KEY_BYTES = 16
_CACHE_SIZE = 4096  # addresses remembered (resolved or not); a crowded store hears ~1 000


def address_hash(irk: bytes, prand: bytes) -> bytes:
    """``ah(irk, prand)``: the 3-byte hash a device with ``irk`` puts beside ``prand``."""
    if len(irk) != _KEY_BYTES:
        raise ValueError(f"an identity resolving key is 16 bytes, not {len(irk)}")
    if len(prand) != 3:
        raise ValueError(f"prand is 3 bytes, not {len(prand)}")
    encryptor = Cipher(algorithms.AES(irk), modes.ECB()).encryptor()  # noqa: S305 - the spec's e()
    block = encryptor.update(bytes(13) + prand) + encryptor.finalize()
    return block[-3:]


def resolves(irk: bytes, address: str) -> bool:
    """Whether ``address`` is a resolvable private address generated with ``irk``."""
    octets = parse_address(address)
    if octets is None or octets[0] >> 6 != 0b01:
        return False
    return address_hash(irk, octets[:3]) == octets[3:]


class IdentityResolver:
    """The enrolled keys of one receiver, and which key (if any) resolves an address."""

    __slots__ = ("_cache", "_ciphers")

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._ciphers: dict[str, Cipher[modes.ECB]] = {}
        self._cache: OrderedDict[str, str | None] = OrderedDict()
        self.replace(keys or {})

    def replace(self, keys: Mapping[str, bytes]) -> None:
        """Enrol exactly ``keys`` (name → 16-byte IRK); raises ``ValueError`` on a bad key."""
        ciphers: dict[str, Cipher[modes.ECB]] = {}
        for name, irk in keys.items():
            if len(irk) != _KEY_BYTES:
                raise ValueError(f"identity key {name!r}: a key is 16 bytes, not {len(irk)}")
            ciphers[name] = Cipher(algorithms.AES(bytes(irk)), modes.ECB())  # noqa: S305
        self._ciphers = ciphers
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._ciphers)

    def resolve(self, address: str) -> str | None:
        """The name of the enrolled key that generated ``address``; None for any other address
        (not resolvable private, no key matches, or not an address at all)."""
        if not self._ciphers:
            return None
        try:
            found = self._cache[address]
        except KeyError:
            found = self._lookup(address)
            self._cache[address] = found
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(address)
        return found

    def _lookup(self, address: str) -> str | None:
        octets = parse_address(address)
        if octets is None or octets[0] >> 6 != 0b01:
            return None
        block = bytes(13) + octets[:3]
        for name, cipher in self._ciphers.items():
            encryptor = cipher.encryptor()
            if (encryptor.update(block) + encryptor.finalize())[-3:] == octets[3:]:
                return name
        return None
