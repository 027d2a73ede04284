"""`storegw hq push-prices` (gateway/hq/push.py): what it sends."""

from __future__ import annotations

from pathlib import Path

from gateway.hq import push


def test_hq_push_scopes_every_batch_to_one_store() -> None:
    source = Path(push.__file__).read_text(encoding="utf-8")
    assert "stores=[store]," in source
    assert "groups=" not in source.split("parts.messages(")[1].split(")")[0]
