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
from typing import TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.clock import Clock, isoformat_utc
from gateway.errors import ConfigError, ConfigIssue
from gateway.hq.consumer import HQ_MIGRATIONS, EventHeader, HqConsumer
from gateway.store.database import Database
from gateway.sync.config import MqttConfig
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import KEY_ID_PATTERN

__all__ = ["HqSettings", "HqSigningConfig", "load_hq_config", "tail"]

_LOGGER = logging.getLogger(__name__)

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class HqConsumerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    database: Path = Path("hq.db")
    share_group: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$")


class HqSigningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key_file: Path
    kid: str = Field(pattern=KEY_ID_PATTERN)


class HqSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mqtt: MqttConfig = MqttConfig(client_id="storegw-hq")
    hq: HqConsumerConfig = HqConsumerConfig()
    signing: HqSigningConfig | None = None
    groups: dict[str, list[str]] = Field(
        default_factory=dict, description="group name -> its store ids (push-prices --group)"
    )


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
    out: TextIO | None = sys.stdout,
    duration: float | None = None,
) -> HqConsumer:
    """Consume until cancelled (or ``duration`` seconds); returns the consumer (for tests).
    Each new event is printed to ``out`` as a JSON line (``None``: print nothing)."""
    mqtt = settings.mqtt
    if mqtt.client_id is None:
        mqtt = mqtt.model_copy(update={"client_id": "storegw-hq"})
    prefix = mqtt.topic_root.split("{store_id}")[0]

    def emit(store: str, stream: str, epoch: str, events: list[EventHeader]) -> None:
        assert out is not None
        head = _ENCODE({"store": store, "stream": stream, "epoch": epoch})[:-1] + ","
        out.write("".join(head + _ENCODE(event)[1:] + "\n" for event in events))
        out.flush()

    # One message at a time is stored then acked, so there are no concurrent writers to gather:
    # a short group-commit window only adds latency per message.
    async with Database.running(
        settings.hq.database, clock=clock, migrations=HQ_MIGRATIONS, commit_interval_s=0.001
    ) as database:
        consumer = HqConsumer(
            database,
            topic_prefix=prefix,
            emit=None if out is None else emit,
            now=lambda: isoformat_utc(clock.utc_now()),
        )
        await consumer.load()
        link = MqttLink(config=mqtt, store_id="+", boot=database.boot, clock=clock, announce=False)

        async def on_messages(messages: list[InboundMessage]) -> None:
            # Whatever queued up while the last commit ran is stored in one commit.
            envelopes = [m.payload for m in messages if not m.topic.endswith("/up/health")]
            acks = await consumer.receive_many(envelopes) if envelopes else []
            # Committed: now HQ takes custody.
            await asyncio.gather(*(link.publish(ack.topic, ack.payload) for ack in acks))

        link.subscribe_batches("up/#", on_messages, share_group=settings.hq.share_group)
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
            _summarize(consumer)  # on a stop (Ctrl-C) too
        return consumer


def _summarize(consumer: HqConsumer) -> None:
    """What an operator must look at when the consumer stops: open gaps and conflicts."""
    for (store, stream, epoch), (first, last) in consumer.gaps().items():
        _LOGGER.warning("open gap %s/%s epoch %s: seq %d..%d", store, stream, epoch, first, last)
    for (store, stream, epoch), seqs in consumer.conflicts.items():
        _LOGGER.warning(
            "conflicts in %s/%s epoch %s: %d seq(s) between %d and %d came again with other "
            "event ids (the store's database went back in time?)",
            store,
            stream,
            epoch,
            len(seqs),
            min(seqs),
            max(seqs),
        )
