"""The store remembers the last price batch it refused (``last_refused``, carried by its
``up/sync``): how HQ tells "refused again" — no new alert while one is active — from "not
received" (docs/protocol.md, ``up/sync``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.sync.signing import Signer
from gateway.wire.messages import RefusedBatch, SyncRequest
from tests.prices.support import batch, item, store

WRONG = Signer("hq-1", Ed25519PrivateKey.generate())


async def test_a_repeated_signature_refusal_is_remembered_with_its_claimed_version(
    tmp_path: Path,
) -> None:
    async with store(tmp_path) as s:
        assert s.downlink.last_refused is None
        await s.receive(batch(s.clock, 1, [item("a", "1.00")], signer=WRONG)[0])
        first = s.downlink.last_refused
        assert first is not None
        assert first["version"] == 1
        assert first["reason"].startswith("downlink.signature: ")
        s.clock.advance(60)
        await s.receive(batch(s.clock, 2, [item("a", "1.10")], signer=WRONG)[0])
        assert s.downlink.refused == 2  # one alert, kept current: no new alert event
        again = s.downlink.last_refused
        assert again is not None
        assert again["version"] == 2
        assert again["at"] > first["at"]
        RefusedBatch.model_validate_json(json.dumps(again))
        assert s.downlink.head == 0
        assert s.downlink.status()["last_refused"] == again  # storegw status shows it


@pytest.mark.parametrize(
    "payload",
    [
        b"not json, not base64",
        b"[1, 2]",
        b"{}",
        b'{"version": 3}',
        b'{"version": 0}',
        b'{"version": 99999999999999999999999}',
    ],
)
async def test_an_unreadable_claimed_version_is_null_never_an_error(
    tmp_path: Path, payload: bytes
) -> None:
    wrapper = {"v": 1, "kid": "hq-1", "payload": base64.b64encode(payload).decode(), "sig": "AA=="}
    async with store(tmp_path) as s:
        await s.receive(json.dumps(wrapper).encode())
        refused = s.downlink.last_refused
        assert refused is not None
        assert refused["version"] == (3 if payload == b'{"version": 3}' else None)
        RefusedBatch.model_validate_json(json.dumps(refused))


async def test_a_rejected_batch_is_remembered_and_a_sync_request_stays_valid(
    tmp_path: Path,
) -> None:
    async with store(tmp_path) as s:
        await s.receive(batch(s.clock, 1, [item("a", "1,00")])[0])
        refused = s.downlink.last_refused
        assert refused is not None
        assert refused["version"] == 1
        assert refused["reason"].startswith("price.rejected: price batch v1 rejected")
        document = {
            "v": 1,
            "type": "sync",
            "store": "s1",
            "have_version": s.downlink.head,
            "held_versions": [],
            "sent_at": refused["at"],
            "last_refused": refused,
        }
        SyncRequest.model_validate_json(json.dumps(document))
