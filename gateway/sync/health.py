"""``up/health``: a latest-only snapshot, QoS 0, never buffered (a stale health report is
worse than none, and the outbox is for events HQ must not lose)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.errors import LinkError
from gateway.sync.link import MqttLink

__all__ = ["publish_health"]

_LOGGER = logging.getLogger(__name__)


async def publish_health(
    link: MqttLink,
    snapshot: Callable[[], Awaitable[dict[str, Any]]],
    *,
    interval_s: float,
) -> None:
    """Publish ``snapshot()`` on ``up/health`` every ``interval_s`` while connected."""
    topic = link.topic_root + "up/health"
    while True:
        await link.connected.wait()
        try:
            payload = json.dumps(await snapshot(), separators=(",", ":"), default=str)
            await link.publish(topic, payload.encode(), qos=0)
        except LinkError as exc:
            _LOGGER.debug("health snapshot not sent: %s", exc)
        await asyncio.sleep(interval_s)
