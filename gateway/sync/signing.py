"""End-to-end signatures on what HQ sends down (Ed25519, ``cryptography``).

Whoever controls the broker or the store LAN can publish on ``down/…``; only HQ holds the
private key. A signed message wraps the exact payload bytes::

    {"v": 1, "kid": "hq-2026-11", "payload": "<base64 of the payload>", "sig": "<base64>"}

``sig`` is the Ed25519 signature over the decoded payload bytes; ``kid`` names the key, so HQ
can rotate (the store trusts every configured kid). The payload itself carries its scope and
validity: ``scope: {"stores": [...], "groups": [...]}`` must name this store or one of its
groups, and ``issued_at``/``valid_until`` bound when it may be applied (checked while the clock
is synchronised). With no keys configured the gateway runs *unsigned*: it accepts the bare
payload (or the wrapper without ``kid`` and ``sig``), warns at start and says so in ``storegw
status``. A wrapper that claims a signature (``kid`` or ``sig``) must verify with a configured
key in either mode: without keys it is refused, never applied as if unsigned.

The wrapper is read with :func:`gateway.sync.inbound.load_json` (size, depth, strict JSON);
what cannot be read raises :class:`~gateway.errors.MalformedMessageError`, not SignatureError.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.clock import Clock, isoformat_utc
from gateway.errors import SignatureError
from gateway.sync.inbound import load_json_object

__all__ = [
    "KEY_ID_PATTERN",
    "Signer",
    "Verifier",
    "check_scope",
    "check_validity",
    "decode_public_key",
    "encode_public_key",
]

KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_CLOCK_SKEW = timedelta(minutes=5)  # issued_at may be this far ahead of the store's clock


def encode_public_key(key: Ed25519PublicKey) -> str:
    """The 32 raw key bytes in base64: the form the store's config takes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def decode_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a base64 Ed25519 public key (32 bytes)") from exc


@dataclass(frozen=True, slots=True)
class Signer:
    """HQ's side: wraps payload bytes with a signature (``storegw hq push-prices``, ``cmd``)."""

    kid: str
    key: Ed25519PrivateKey

    def wrap(self, payload: bytes) -> bytes:
        message = {
            "v": 1,
            "kid": self.kid,
            "payload": base64.b64encode(payload).decode(),
            "sig": base64.b64encode(self.key.sign(payload)).decode(),
        }
        return json.dumps(message, separators=(",", ":")).encode()

    @classmethod
    def from_pem(cls, kid: str, pem: bytes) -> Signer:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("not an Ed25519 private key")
        return cls(kid, key)


class Verifier:
    """The store's side: opens a downlink message into its payload bytes, or refuses it."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    @property
    def signed(self) -> bool:
        return bool(self._keys)

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def open(self, message: bytes, *, allow_unsigned: bool = False) -> tuple[bytes, str | None]:
        """Returns the payload bytes and the kid that signed them (None when unsigned).
        ``allow_unsigned`` lets an unsigned message through even with keys configured (the
        caller then decides by kid None, e.g. read-only commands). A message that claims a
        signature (``kid`` or ``sig``) must verify with a configured key, whatever the mode
        (SignatureError). An unreadable message raises MalformedMessageError."""
        document = load_json_object(message)
        if "payload" not in document:  # a bare payload
            if self.signed and not allow_unsigned:
                raise SignatureError("unsigned message, but HQ keys are configured")
            return message, None
        if set(document) - {"v", "kid", "payload", "sig"} or document.get("v") != 1:
            raise SignatureError("not a signed message of version 1 (v, kid, payload, sig)")
        encoded = document["payload"]
        if not isinstance(encoded, str):
            raise SignatureError("payload is not base64 (a string)")
        try:
            payload = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise SignatureError("payload is not base64") from None
        kid, sig = document.get("kid"), document.get("sig")
        if kid is None and sig is None:  # claims no signature
            if self.signed and not allow_unsigned:
                raise SignatureError("kid and sig are required while HQ keys are configured")
            return payload, None
        if not isinstance(kid, str) or not isinstance(sig, str):
            raise SignatureError("a signed message needs both kid and sig (strings)")
        if not self.signed:
            raise SignatureError(
                f"signed with key {kid[:64]!r}, but no HQ keys are configured to verify it"
            )
        key = self._keys.get(kid)
        if key is None:
            raise SignatureError(
                f"unknown key id {kid[:64]!r} (known: {', '.join(sorted(self._keys))})"
            )
        try:
            key.verify(base64.b64decode(sig, validate=True), payload)
        except (InvalidSignature, binascii.Error):
            raise SignatureError(f"signature does not verify with key {kid!r}") from None
        return payload, kid


def check_scope(scope: Mapping[str, Any] | None, store_id: str, groups: Sequence[str]) -> None:
    """The payload must name this store, or one of the groups the store belongs to."""
    if not isinstance(scope, Mapping):
        raise SignatureError("payload has no scope {stores, groups}")
    stores, named_groups = scope.get("stores") or [], scope.get("groups") or []
    if not isinstance(stores, list) or not isinstance(named_groups, list):
        raise SignatureError("scope.stores and scope.groups must be lists")
    if not all(isinstance(name, str) for name in [*stores, *named_groups]):
        raise SignatureError("scope.stores and scope.groups must list names (strings)")
    if store_id in stores or set(groups) & set(named_groups):
        return
    raise SignatureError(f"scope {dict(scope)} does not include store {store_id!r}")


def check_validity(issued_at: datetime, valid_until: datetime | None, clock: Clock) -> None:
    """Refuse what is not valid yet or any more (only while the clock can be trusted)."""
    if not clock.is_synchronized():
        return
    now = clock.utc_now()
    if issued_at > now + _CLOCK_SKEW:
        raise SignatureError(f"issued_at {isoformat_utc(issued_at)} is in the future")
    if valid_until is not None and valid_until < now:
        raise SignatureError(f"expired at {isoformat_utc(valid_until)}")
