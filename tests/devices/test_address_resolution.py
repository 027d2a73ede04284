"""IRK resolution of resolvable private addresses, against the Core Specification's sample data."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.ble.address_resolution import IdentityResolver, address_hash, resolves

# Bluetooth Core Specification, vol 3 part H, appendix D.7 (ah random address hash function):
# IRK 0xec0234a357c8ad05341010a60a397d9b, prand 0x708194 → hash 0x0dfbaa.
SPEC_IRK = bytes.fromhex("ec0234a357c8ad05341010a60a397d9b")
SPEC_ADDRESS = "70:81:94:0D:FB:AA"


def test_the_specification_sample_hash() -> None:
    assert address_hash(SPEC_IRK, bytes.fromhex("708194")) == bytes.fromhex("0dfbaa")


def test_the_specification_sample_address_resolves_and_a_neighbour_does_not() -> None:
    assert resolves(SPEC_IRK, SPEC_ADDRESS)
    assert resolves(SPEC_IRK, SPEC_ADDRESS.lower().replace(":", "-"))
    assert not resolves(SPEC_IRK, "70:81:94:0D:FB:AB")
    assert not resolves(bytes(reversed(SPEC_IRK)), SPEC_ADDRESS)  # byte order matters


def test_the_resolver_names_the_key_that_matches() -> None:
    resolver = IdentityResolver({"other": bytes(16), "cart-7": SPEC_IRK})
    assert resolver.resolve(SPEC_ADDRESS) == "cart-7"
    assert resolver.resolve(SPEC_ADDRESS) == "cart-7"  # cached
    assert resolver.resolve("70:81:94:0D:FB:AB") is None
    resolver.replace({})
    assert resolver.resolve(SPEC_ADDRESS) is None
    assert len(resolver) == 0


@pytest.mark.parametrize(
    "address",
    [
        "C0:81:94:0D:FB:AA",  # static random: top bits 11, never resolvable
        "30:81:94:0D:FB:AA",  # non-resolvable private: top bits 00
        "",
        "70:81:94:0D:FB",
        "70:81:94:0D:FB:AA:01",
        "zz:81:94:0D:FB:AA",
        "70:81:94:0D:FB:AAA",
        "\x00" * 17,
    ],
)
def test_anything_else_resolves_to_nothing(address: str) -> None:
    assert not resolves(SPEC_IRK, address)
    assert IdentityResolver({"k": SPEC_IRK}).resolve(address) is None


@pytest.mark.parametrize("key", [b"", bytes(15), bytes(17), bytes(32)])
def test_a_key_of_the_wrong_size_is_a_clear_error(key: bytes) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        IdentityResolver({"bad": key})
    with pytest.raises(ValueError, match="16 bytes"):
        address_hash(key, b"\x40\x00\x00")


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=3, max_size=3))
def test_an_address_made_with_a_key_resolves_to_it(irk: bytes, prand: bytes) -> None:
    prand = bytes([(prand[0] & 0x3F) | 0x40]) + prand[1:]
    address = ":".join(f"{b:02X}" for b in prand + address_hash(irk, prand))
    assert IdentityResolver({"mine": irk}).resolve(address) == "mine"


@given(st.text(max_size=40))
def test_garbage_text_never_raises(text: str) -> None:
    assert IdentityResolver({"k": SPEC_IRK}).resolve(text) is None
