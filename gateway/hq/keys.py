"""HQ's signing key: created once, kept at HQ; stores pin its public half."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.sync.signing import encode_public_key

__all__ = ["generate_key"]


def generate_key(path: Path, kid: str) -> str:
    """Write a new Ed25519 private key (PEM, mode 0600, never overwriting a file); return
    the public key in the base64 form the stores' ``[downlink] hq_public_keys`` takes."""
    if not kid or any(ch.isspace() or ch in "\"'=" for ch in kid):
        raise ValueError(f"unusable key id {kid!r}")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return encode_public_key(key.public_key())
