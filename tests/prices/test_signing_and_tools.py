"""Signatures, the downlink config, and HQ's price tools: garbage gets a clear error."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.clock import FakeClock
from gateway.errors import BatchRejectedError, MalformedMessageError, SignatureError
from gateway.hq.keys import generate_key
from gateway.hq.prices import build_price_messages, read_price_list
from gateway.prices.batch import parse_price_batch
from gateway.prices.config import DownlinkConfig
from gateway.sync.inbound import MAX_MESSAGE_BYTES
from gateway.sync.signing import Signer, Verifier, decode_public_key, encode_public_key

KEY = Ed25519PrivateKey.generate()


def test_keygen_writes_a_private_pem_and_returns_the_config_form(tmp_path: Path) -> None:
    public = generate_key(tmp_path / "hq.key", "hq-1")
    assert (tmp_path / "hq.key").stat().st_mode & 0o777 == 0o600
    signer = Signer.from_pem("hq-1", (tmp_path / "hq.key").read_bytes())
    verifier = Verifier({"hq-1": decode_public_key(public)})
    payload, kid = verifier.open(signer.wrap(b'{"x": 1}'))
    assert (payload, kid) == (b'{"x": 1}', "hq-1")
    with pytest.raises(FileExistsError):
        generate_key(tmp_path / "hq.key", "hq-1")  # never overwrites a key
    with pytest.raises(ValueError):
        generate_key(tmp_path / "other.key", "bad kid")


@pytest.mark.parametrize(
    "message",
    [
        b'{"v": 2, "payload": "e30="}',
        b'{"v": 1, "payload": "not base64!"}',
        b'{"v": 1, "payload": "e30=", "kid": "hq-1"}',
        b'{"v": 1, "payload": "e30=", "kid": "hq-1", "sig": "AAAA"}',
        b'{"v": 1, "payload": "e30=", "kid": "hq-1", "sig": "e30=", "extra": 1}',
        b'{"type": "prices"}',
    ],
)
def test_verifier_refuses_garbage(message: bytes) -> None:
    with pytest.raises(SignatureError):
        Verifier({"hq-1": KEY.public_key()}).open(message)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"[]",
        b"\x00\xffnot json",
        b'{"v": 1, "payload": "e30=", "kid": "hq-1", "sig": NaN}',
        b"[" * 10_000 + b"]" * 10_000,
        b'{"v": 1, "payload": "' + b"A" * (2 * 1024 * 1024) + b'"}',
    ],
)
def test_verifier_refuses_unreadable_messages_as_malformed(message: bytes, signed: bool) -> None:
    keys = {"hq-1": KEY.public_key()} if signed else {}
    with pytest.raises(MalformedMessageError):
        Verifier(keys).open(message, allow_unsigned=True)


def test_a_claimed_signature_is_checked_without_keys_too() -> None:
    """Item 10: unsigned mode takes unsigned messages, never a signature it cannot check."""
    unsigned = Verifier({})
    payload = b'{"a": 1}'
    signed = Signer("hq-1", KEY).wrap(payload)
    with pytest.raises(SignatureError, match="no HQ keys are configured"):
        unsigned.open(signed)
    forged = json.loads(signed)
    forged["sig"] = base64.b64encode(b"\x00" * 64).decode()
    with pytest.raises(SignatureError, match="no HQ keys are configured"):
        unsigned.open(json.dumps(forged).encode())
    half = json.loads(signed)
    del half["sig"]
    with pytest.raises(SignatureError, match="needs both kid and sig"):
        unsigned.open(json.dumps(half).encode(), allow_unsigned=True)
    wrapped = json.dumps({"v": 1, "payload": base64.b64encode(payload).decode()}).encode()
    assert unsigned.open(wrapped) == (payload, None)  # claims nothing: taken unsigned


def test_unsigned_mode_takes_bare_or_wrapped_payloads() -> None:
    verifier = Verifier({})
    assert verifier.open(b'{"a": 1}') == (b'{"a": 1}', None)
    wrapped = json.dumps({"v": 1, "payload": base64.b64encode(b"{}").decode()}).encode()
    assert verifier.open(wrapped) == (b"{}", None)


@pytest.mark.parametrize(
    "fields",
    [
        {"hq_public_keys": {"hq-1": "not-a-key"}},
        {"hq_public_keys": {"hq-1": base64.b64encode(b"short").decode()}},
        {"hq_public_keys": {"bad kid": encode_public_key(KEY.public_key())}},
        {"groups": ["no spaces allowed"]},
        {"parts_timeout_s": 0},
        {"price_history_days": "forever"},
    ],
)
def test_garbage_downlink_config_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DownlinkConfig.model_validate(fields)


def test_downlink_config_builds_a_verifier() -> None:
    config = DownlinkConfig(hq_public_keys={"hq-1": encode_public_key(KEY.public_key())})
    assert config.verifier().key_ids == ["hq-1"]
    assert not DownlinkConfig().verifier().signed


_HEAD = '{"v": 1, "type": "prices", "scope": {}, '


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{}",
        (
            _HEAD + '"version": 0, "kind": "full", "issued_at": "2026-11-23T09:00:00+00:00"}'
        ).encode(),
        (_HEAD + '"version": 1, "kind": "full", "issued_at": "2026-11-23T09:00:00"}').encode(),
        (
            _HEAD + '"version": 1, "kind": "full", "issued_at": "2026-11-23T09:00:00+00:00", '
            '"delete": ["a"]}'
        ).encode(),
        (
            _HEAD + '"version": 1, "kind": "delta", "part": 3, "parts": 2, '
            '"issued_at": "2026-11-23T09:00:00+00:00"}'
        ).encode(),
    ],
)
def test_batch_header_garbage_is_rejected(payload: bytes) -> None:
    with pytest.raises(BatchRejectedError) as caught:
        parse_price_batch(payload)
    assert caught.value.problems


def test_price_list_from_csv_and_json_and_every_bad_row_reported() -> None:
    rows = read_price_list("sku,price,currency,name\na,1.99,EUR,Apple\nb,2.50,EUR,\n")
    assert rows == [
        {"sku": "a", "price": "1.99", "currency": "EUR", "name": "Apple"},
        {"sku": "b", "price": "2.50", "currency": "EUR"},
    ]
    assert read_price_list('[{"sku": "c", "price": "3", "currency": "USD"}]')[0]["sku"] == "c"
    with pytest.raises(ValueError) as caught:
        read_price_list("sku,price,currency\na,1.99,EUR\nb,1,99,EUR\nc,x,EUR\n,1.00,EUR\n")
    message = str(caught.value)
    assert "row 2" in message
    assert "row 3" in message
    assert "row 4" in message
    assert "row 1" not in message


def test_big_batches_split_into_signed_parts_under_the_cap() -> None:
    items = [
        {"sku": f"s{n}", "price": "1.00", "currency": "EUR", "name": "n" * 80} for n in range(2000)
    ]
    messages = build_price_messages(
        items,
        version=7,
        kind="full",
        issued_at=FakeClock().utc_now(),
        stores=["s1"],
        signer=Signer("hq-1", KEY),
        max_message_bytes=64 * 1024,
    )
    assert len(messages) > 2
    assert all(len(m) <= 64 * 1024 for m in messages)
    verifier = Verifier({"hq-1": KEY.public_key()})
    parts = [parse_price_batch(verifier.open(m)[0]) for m in messages]
    assert [p.header.part for p in parts] == list(range(1, len(messages) + 1))
    assert {p.header.parts for p in parts} == {len(messages)}
    assert sum(len(p.items) for p in parts) == 2000


def test_hq_never_builds_a_part_larger_than_a_store_reads() -> None:
    items = [
        {"sku": f"s{n}", "price": "1.00", "currency": "EUR", "name": "n" * 180}
        for n in range(12_000)
    ]
    messages = build_price_messages(
        items,
        version=1,
        kind="full",
        issued_at=FakeClock().utc_now(),
        stores=["s1"],
        signer=Signer("hq-1", KEY),
        max_message_bytes=64 * 1024 * 1024,  # HQ's [mqtt] max_message_bytes allows that much
    )
    assert len(messages) > 2
    assert all(len(m) <= MAX_MESSAGE_BYTES for m in messages)


@pytest.mark.parametrize("flag", ['"true"', "1", "0", "null", '"yes"', "[]", "{}"])
def test_a_promotions_progressive_flag_must_be_a_boolean(flag: str) -> None:
    promotion = (
        '{"id": "p", "sku": "a", "price": "1.00", "currency": "EUR", '
        '"effective_from": "2026-11-23T09:00:00+00:00", '
        f'"effective_to": "2026-11-24T09:00:00+00:00", "progressive": {flag}}}'
    )
    payload = (
        _HEAD + '"version": 1, "kind": "delta", "issued_at": "2026-11-23T09:00:00+00:00", '
        f'"promotions": [{promotion}]}}'
    ).encode()
    with pytest.raises(BatchRejectedError) as caught:
        parse_price_batch(payload)
    [problem] = caught.value.problems
    assert problem["item"] == "promotion p"
    assert "progressive" in problem["reason"]
