"""`storegw hq push-prices` (gateway/hq/push.py, gateway/hq/publish.py): what it sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gateway.hq.prices import PriceParts
from gateway.hq.publish import Plan


def test_hq_push_scopes_every_batch_to_one_store_with_its_own_version() -> None:
    items = [{"sku": f"s{n}", "price": "1.00", "currency": "EUR"} for n in range(300)]
    plan = Plan(
        {"store-a": 4, "store-b": 9},
        PriceParts.of(items, signed=False, max_message_bytes=4096),
        "full",
        datetime(2026, 11, 23, tzinfo=UTC),
    )
    for store, version in plan.versions.items():
        parts = [json.loads(message) for message in plan.messages(store)]
        assert len(parts) > 1
        assert {json.dumps(p["scope"]) for p in parts} == {
            json.dumps({"stores": [store], "groups": []})
        }
        assert {p["version"] for p in parts} == {version}
        assert sum(len(p["items"]) for p in parts) == 300
