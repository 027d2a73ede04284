"""``storegw hq tail``: the reference HQ consumer as a command.

Subscribes to every store's ``up/`` streams (optionally through a ``$share/`` group so several
consumers split the load), stores each event durably and de-duplicated in its own SQLite file,
publishes the custody watermarks, and prints every new event as one JSON line on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.clock import Clock, isoformat_utc
from gateway.config import MqttConfig
from gateway.errors import ConfigError, ConfigIssue
from gateway.hq.consumer import HQ_MIGRATIONS, HqConsumer
from gateway.store.database import Database
from gateway.sync.link import InboundMessage, MqttLink

__all__ = ["HqSettings", "load_hq_config", "tail"]

_LOGGER = logging.getLogger(__name__)


class HqConsumerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    database: Path = Path("hq.db")
    share_group: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$")


class HqSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mqtt: MqttConfig = MqttConfig(client_id="storegw-hq")
    hq: HqConsumerConfig = HqConsumerConfig()


def load_hq_config(path: Path) -> HqSettings:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return HqSettings.model_validate(data)
    except FileNotFoundError:
        raise ConfigError(str(path), [ConfigIssue("", "file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [ConfigIssue("", f"not valid TOML: {exc}")]) from exc
    except ValidationError as exc:
        issues = [
            ConfigIssue(".".join(str(p) for p in d["loc"]), d["msg"])
            for d in exc.errors(include_url=False)
        ]
        raise ConfigError(str(path), issues) from None


async def tail(
    settings: HqSettings,
    *,
    clock: Clock,
    out: TextIO = sys.stdout,
    duration: float | None = None,
) -> HqConsumer:
    """Consume until cancelled (or ``duration`` seconds); returns the consumer (for tests)."""
    mqtt = settings.mqtt
    if mqtt.client_id is None:
        mqtt = mqtt.model_copy(update={"client_id": "storegw-hq"})
    prefix = mqtt.topic_root.split("{store_id}")[0]

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
        out.flush()

    # One message at a time is stored then acked, so there are no concurrent writers to gather:
    # a short group-commit window only adds latency per message.
    async with Database.running(
        settings.hq.database, clock=clock, migrations=HQ_MIGRATIONS, commit_interval_s=0.001
    ) as database:
        consumer = HqConsumer(
            database, topic_prefix=prefix, emit=emit, now=lambda: isoformat_utc(clock.utc_now())
        )
        await consumer.load()
        link = MqttLink(config=mqtt, store_id="+", boot=database.boot, clock=clock, announce=False)

        async def on_message(message: InboundMessage) -> None:
            if message.topic.endswith("/up/health"):
                return  # latest-only snapshots: not events, nothing to store or ack
            ack = await consumer.receive(message.payload)
            if ack is not None:  # committed: now HQ takes custody
                await link.publish(ack.topic, ack.payload)

        if settings.hq.share_group:
            link.subscribe_shared(settings.hq.share_group, "up/#", on_message)
        else:
            link.subscribe("up/#", on_message)
        task = asyncio.create_task(link.run(), name="hq.link")
        try:
            if duration is None:
                await task
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), duration)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for (store, stream, epoch), (first, last) in consumer.gaps().items():
            _LOGGER.warning(
                "open gap %s/%s epoch %s: seq %d..%d", store, stream, epoch, first, last
            )
        return consumer
