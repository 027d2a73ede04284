"""``up/health``: a latest-only snapshot, QoS 0, never buffered (a stale health report is
worse than none, and the outbox is for events HQ must not lose)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from gateway.errors import LinkError
from gateway.sync.link import MqttLink
from gateway.wire.encoding import encode_message
from gateway.wire.messages import HealthSnapshot

__all__ = ["publish_health"]

_LOGGER = logging.getLogger(__name__)


async def publish_health(
    link: MqttLink,
    snapshot: Callable[[], Awaitable[HealthSnapshot]],
    *,
    interval_s: float,
) -> None:
    """Publish ``snapshot()`` on ``up/health`` every ``interval_s`` while connected. A
    snapshot the wire contract does not describe is a bug: logged (once until a snapshot is
    built again), never sent, and the next one is tried all the same."""
    topic = link.topic_root + "up/health"
    failing = False
    while True:
        await link.connected.wait()
        try:
            payload = encode_message(await snapshot())
        except ValidationError as exc:
            if not failing:
                _LOGGER.error("health snapshot not sent: outside the wire contract: %s", exc)
            failing = True
        else:
            failing = False
            try:
                await link.publish(topic, payload, qos=0)
            except LinkError as exc:
                _LOGGER.debug("health snapshot not sent: %s", exc)
        await asyncio.sleep(interval_s)
