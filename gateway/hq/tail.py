"""``storegw hq tail``: the reference HQ consumer as a command.

Subscribes to every store's ``up/`` streams (optionally through a ``$share/`` group so several
consumers split the load), stores each event durably and de-duplicated — in its own SQLite file
by default, or in PostgreSQL when ``database`` is a ``postgresql://`` URL (the sink several
consumers can share) — publishes the custody watermarks, and prints every new event as one JSON
line on stdout. PostgreSQL unreachable (or refusing every batch) for longer than
``database_outage_exit_s``: the command stops with StorageUnavailableError (exit 74), having
acked nothing it did not commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.clock import Clock, isoformat_utc
from gateway.errors import ConfigError, ConfigIssue, StorageUnavailableError
from gateway.hq.consumer import HQ_MIGRATIONS, HqConsumer
from gateway.hq.intake import envelope_origin
from gateway.hq.sink import EnvelopeSink
from gateway.store.database import Database
from gateway.sync.config import MqttConfig
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import KEY_ID_PATTERN

__all__ = ["HqSettings", "HqSigningConfig", "load_hq_config", "tail"]

_LOGGER = logging.getLogger(__name__)

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_postgres_url(database: str) -> bool:
    return database.startswith(("postgresql://", "postgres://"))


class HqConsumerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    database: str = Field(
        "hq.db",
        min_length=1,
        description="a SQLite file path, or a postgresql:// URL (libpq form)",
    )
    share_group: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$")
    database_outage_exit_s: float = Field(
        300.0, gt=0, description="PostgreSQL unreachable this long: stop with exit 74"
    )
    batch_linger_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="PostgreSQL: once an envelope is there, wait this long for more to store "
        "in the same transaction (group commit; adds at most this to the ack latency)",
    )
    batch_max: int = Field(
        256, ge=1, le=65535, description="PostgreSQL: envelopes stored in one transaction"
    )

    prices_database: Path | None = Field(
        None, description="push-prices' versions (SQLite); default: database, when a file"
    )

    def prices_path(self) -> Path:
        """The SQLite file where ``push-prices`` keeps the versions it pushed."""
        if self.prices_database is not None:
            return self.prices_database
        if is_postgres_url(self.database):
            raise ConfigError(
                "hq", [ConfigIssue("hq.prices_database", "needed when database is PostgreSQL")]
            )
        return Path(self.database)

    @field_validator("database", mode="before")
    @classmethod
    def _path_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    @field_validator("database")
    @classmethod
    def _database_is_a_path_or_postgres(cls, value: str) -> str:
        if not _URL_SCHEME.match(value):
            return value
        if not is_postgres_url(value):
            scheme = value.split("://", 1)[0]
            raise ValueError(f"{scheme}:// is not supported: a file path or postgresql://")
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(value)
        except ProgrammingError as exc:
            raise ValueError(f"not a valid PostgreSQL URL: {exc}") from None
        return value


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


def load_hq_config(
    path: Path,
    *,
    database: str | None = None,
    share_group: str | None = None,
    client_id: str | None = None,
) -> HqSettings:
    """The HQ settings of ``path``, with the command line's overrides (validated alike)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for section, name, value in (
            ("hq", "database", database),
            ("hq", "share_group", share_group),
            ("mqtt", "client_id", client_id),
        ):
            if value is not None and isinstance(data.setdefault(section, {}), dict):
                data[section][name] = value
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
) -> EnvelopeSink:
    """Consume until cancelled (or ``duration`` seconds); returns the sink (for tests).
    Each new event is printed to ``out`` as a JSON line (``None``: print nothing)."""
    mqtt = settings.mqtt
    if mqtt.client_id is None:
        mqtt = mqtt.model_copy(update={"client_id": "storegw-hq"})
    prefix = mqtt.topic_root.split("{store_id}")[0]

    def emit(store: str, stream: str, epoch: str, events: list[Any]) -> None:
        assert out is not None
        head = _ENCODE({"store": store, "stream": stream, "epoch": epoch})[:-1] + ","
        out.write("".join(head + _ENCODE(event)[1:] + "\n" for event in events))
        out.flush()

    async with _open_sink(settings, clock, prefix, None if out is None else emit) as (sink, boot):
        link = MqttLink(config=mqtt, store_id="+", boot=boot, clock=clock, announce=False)

        async def on_messages(messages: list[InboundMessage]) -> None:
            # Whatever queued up while the last commit ran is stored in one commit, each
            # envelope held to the store and stream of its topic (not up/health, up/sync).
            envelopes, origins = [], []
            for message in messages:
                origin = envelope_origin(message.topic, prefix)
                if origin is not None:
                    envelopes.append(message.payload)
                    origins.append(origin)
            acks = await sink.receive_many(envelopes, origins=origins) if envelopes else []
            # Committed: now HQ takes custody.
            await asyncio.gather(*(link.publish(ack.topic, ack.payload) for ack in acks))

        if is_postgres_url(settings.hq.database):
            # Each transaction costs round trips whatever it holds: gather many envelopes.
            link.subscribe_batches(
                "up/#",
                on_messages,
                share_group=settings.hq.share_group,
                max_batch=settings.hq.batch_max,
                linger_s=settings.hq.batch_linger_ms / 1000,
            )
        else:
            link.subscribe_batches("up/#", on_messages, share_group=settings.hq.share_group)

        tasks = [asyncio.create_task(link.run(), name="hq.link")]
        if is_postgres_url(settings.hq.database):
            limit_s = settings.hq.database_outage_exit_s
            tasks.append(asyncio.create_task(_watch_outage(sink, clock, limit_s), name="hq.outage"))
        try:
            done, _ = await asyncio.wait(tasks, timeout=duration, return_when="FIRST_COMPLETED")
            for task in done:
                task.result()  # the outage watch's StorageUnavailableError, or a link bug
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            _summarize(sink)  # on a stop (Ctrl-C) too
        return sink


async def _watch_outage(sink: EnvelopeSink, clock: Clock, limit_s: float) -> None:
    from gateway.hq.postgres_sink import PostgresSink

    assert isinstance(sink, PostgresSink)
    while True:
        await asyncio.sleep(min(1.0, limit_s / 4))
        since = sink.unavailable_since
        if since is not None and clock.monotonic() - since >= limit_s:
            raise StorageUnavailableError(
                sink.name,
                f"unreachable or refusing batches for {limit_s:g} s (database_outage_exit_s): "
                "stopping, "
                "nothing uncommitted was acknowledged",
            )


@contextlib.asynccontextmanager
async def _open_sink(
    settings: HqSettings, clock: Clock, prefix: str, emit: Any
) -> AsyncIterator[tuple[EnvelopeSink, int]]:
    database = settings.hq.database
    if is_postgres_url(database):
        from gateway.hq.postgres_sink import PostgresSink  # psycopg: only when used

        sink = PostgresSink(database, clock=clock, topic_prefix=prefix, emit=emit)
        await sink.open()
        try:
            yield sink, 0
        finally:
            await sink.close()
        return
    if settings.hq.share_group is not None:
        _LOGGER.warning(
            "share group %s on a SQLite file: each consumer acks only what its own file holds, "
            "so a store's events end up split over the files and are re-sent until one holds a "
            "contiguous run; consumers sharing the load belong on PostgreSQL",
            settings.hq.share_group,
        )
    # One message at a time is stored then acked, so there are no concurrent writers to gather:
    # a short group-commit window only adds latency per message.
    async with Database.running(
        Path(database), clock=clock, migrations=HQ_MIGRATIONS, commit_interval_s=0.001
    ) as db:
        consumer = HqConsumer(
            db, topic_prefix=prefix, emit=emit, now=lambda: isoformat_utc(clock.utc_now())
        )
        await consumer.load()
        yield consumer, db.boot


def _summarize(consumer: EnvelopeSink) -> None:
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
