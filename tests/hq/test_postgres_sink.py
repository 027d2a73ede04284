"""The PostgreSQL sink against a real PostgreSQL server: idempotent, contiguous watermarks as
committed, expiry markers, conflicts, new epochs, racing sinks, garbage, an unreachable server."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import psycopg
import pytest

from gateway.clock import SystemClock
from gateway.errors import ConfigError, SchemaTooNewError, StorageUnavailableError
from gateway.hq.postgres_schema import PG_SCHEMA_VERSION
from gateway.hq.postgres_sink import PostgresSink
from gateway.hq.tail import HqConsumerConfig, load_hq_config
from tests.daemon import run_cli
from tests.hq.support import envelope, expired_marker, pg_rows, pg_sink, with_events
from tests.support.postgres import PostgresServer
from tests.waiting import patience


def _acked(acks: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(ack.topic, json.loads(ack.payload)) for ack in acks]


async def test_stores_once_acks_the_contiguous_watermark_and_remembers_it(
    postgres_url: str,
) -> None:
    out: list[dict[str, Any]] = []
    async with pg_sink(postgres_url, out) as sink:
        acks = await sink.receive_many([envelope([1, 2, 3])])
        assert _acked(acks) == [
            ("retail/v1/s1/down/ack", {"stream": "stock", "epoch": "e1", "seq": 3})
        ]
        acks = await sink.receive_many([envelope([6, 7])])  # 4..5 missing
        assert _acked(acks)[0][1]["seq"] == 3
        assert sink.gaps() == {("s1", "stock", "e1"): (4, 5)}
        acks = await sink.receive_many([envelope([2, 3])])  # re-sent: duplicates, still acked
        assert _acked(acks)[0][1]["seq"] == 3
        assert sink.duplicates == 2
    async with pg_sink(postgres_url, out) as sink:  # a new process: the ledger is in the db
        acks = await sink.receive_many([envelope([4, 5, 6, 7])])
        assert _acked(acks)[0][1]["seq"] == 7
        assert sink.gaps() == {}
    assert [event["seq"] for event in out] == [1, 2, 3, 6, 7, 4, 5]
    rows = pg_rows(postgres_url, "SELECT seq, id, ts, type, event FROM hq_events ORDER BY seq")
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[0][1:4] == ("id1", "2026-11-23T09:00:00.000+00:00", "t")
    assert rows[0][4] == {"seq": 1, "id": "id1", "ts": rows[0][2], "type": "t", "n": 1}
    assert pg_rows(postgres_url, "SELECT store, stream, epoch, seq FROM hq_watermarks") == [
        ("s1", "stock", "e1", 7)
    ]


async def test_expiry_markers_let_the_watermark_pass_and_are_listed(postgres_url: str) -> None:
    async with pg_sink(postgres_url) as sink:
        await sink.receive_many([envelope([1, 2])])
        marker = with_events(envelope([1]), [expired_marker(10, 3, 8)])
        acks = await sink.receive_many([marker, envelope([11])])
        assert _acked(acks)[0][1]["seq"] == 11
        assert sink.expired == 8
        acks = await sink.receive_many([marker])  # again: nothing new, no double count
        assert _acked(acks)[0][1]["seq"] == 11
        assert sink.expired == 8
    assert pg_rows(postgres_url, "SELECT from_seq, seq, count FROM hq_expired") == [(3, 10, 8)]


async def test_a_seq_held_under_another_id_is_a_conflict(postgres_url: str) -> None:
    async with pg_sink(postgres_url) as sink:
        await sink.receive_many([envelope([1, 2, 3])])
        other = json.loads(envelope([2, 3]))
        for event in other["events"]:
            event["id"] = "restored-" + event["id"]
        acks = await sink.receive_many([json.dumps(other).encode()])
        assert _acked(acks)[0][1]["seq"] == 3
        assert sink.conflicts == {("s1", "stock", "e1"): {2, 3}}
    assert pg_rows(postgres_url, "SELECT id FROM hq_events ORDER BY seq") == [
        ("id1",),
        ("id2",),
        ("id3",),
    ]
    assert pg_rows(postgres_url, "SELECT seq, id, held_id FROM hq_conflicts ORDER BY seq") == [
        (2, "restored-id2", "id2"),
        (3, "restored-id3", "id3"),
    ]


async def test_a_new_epoch_starts_its_own_watermark_whatever_arrives_first(
    postgres_url: str,
) -> None:
    """A store whose database went back in time re-sends under a new epoch; its envelopes may
    reach HQ before the old epoch's last ones (another consumer, a re-send)."""
    async with pg_sink(postgres_url) as sink:
        acks = await sink.receive_many(
            [envelope([1, 2], epoch="e2"), envelope([5, 6], epoch="e1"), envelope([3], epoch="e2")]
        )
        assert sorted((a[1]["epoch"], a[1]["seq"]) for a in _acked(acks)) == [("e2", 3)]
        acks = await sink.receive_many([envelope([1, 2, 3, 4], epoch="e1")])
        assert _acked(acks)[0][1] == {"stream": "stock", "epoch": "e1", "seq": 6}
    assert pg_rows(postgres_url, "SELECT epoch, seq FROM hq_watermarks ORDER BY epoch") == [
        ("e1", 6),
        ("e2", 3),
    ]


async def test_event_times_far_off_do_not_matter_to_storage(postgres_url: str) -> None:
    """Partitions follow HQ's clock (received_at), not the store's: an unsynced store's
    year-2999 or 1970 events are stored like any other, no partition made for them."""
    odd = json.loads(envelope([1, 2]))
    odd["events"][0]["ts"] = "2999-01-01T00:00:00.000+00:00"
    odd["events"][1].update(ts="1970-01-01T00:00:00.000+00:00", unsynced=True)
    async with pg_sink(postgres_url) as sink:
        acks = await sink.receive_many([json.dumps(odd).encode()])
        assert _acked(acks)[0][1]["seq"] == 2
    assert pg_rows(postgres_url, "SELECT ts FROM hq_events ORDER BY seq") == [
        ("2999-01-01T00:00:00.000+00:00",),
        ("1970-01-01T00:00:00.000+00:00",),
    ]
    days = pg_rows(
        postgres_url,
        "SELECT inhrelid::regclass::text FROM pg_inherits "
        "WHERE inhparent = 'hq_event_log'::regclass",
    )
    assert not [day for (day,) in days if "2999" in day or "1970" in day]


async def test_sinks_racing_on_the_same_streams_store_each_event_once(postgres_url: str) -> None:
    """Four sinks (four connections) get one store's envelopes in any order, some twice: every
    event is stored once, and no ack claims more than was committed when it was made."""
    envelopes = [envelope(list(range(n, n + 5)), stream=s) for n in range(1, 200, 5) for s in "ab"]
    deliveries = envelopes + random.Random(7).sample(envelopes, 30)
    random.Random(8).shuffle(deliveries)
    async with (
        pg_sink(postgres_url) as a,
        pg_sink(postgres_url) as b,
        pg_sink(postgres_url) as c,
        pg_sink(postgres_url) as d,
    ):
        sinks = [a, b, c, d]
        highest: dict[str, int] = {}

        async def consume(index: int) -> None:
            for start in range(index * 3, len(deliveries), 12):
                for ack in _acked(await sinks[index].receive_many(deliveries[start : start + 3])):
                    committed = pg_rows(
                        postgres_url,
                        "SELECT seq FROM hq_watermarks WHERE stream = %s",
                        (ack[1]["stream"],),
                    )[0][0]
                    assert ack[1]["seq"] <= committed
                    highest[ack[1]["stream"]] = max(highest.get(ack[1]["stream"], 0), ack[1]["seq"])

        await asyncio.gather(*(consume(i) for i in range(4)))
        assert sum(s.stored for s in sinks) == 400
    counts = pg_rows(
        postgres_url, "SELECT stream, count(*), count(DISTINCT seq) FROM hq_events GROUP BY 1"
    )
    assert sorted(counts) == [("a", 200, 200), ("b", 200, 200)]
    assert highest == {"a": 200, "b": 200}


async def test_keys_another_consumer_holds_wait_and_the_others_are_stored_at_once(
    postgres_url: str,
) -> None:
    """Another consumer's batch holds s1's ledger row: s2's events are committed meanwhile
    (SKIP LOCKED), s1's wait for that transaction in one of their own, and the acks come once
    both are committed, each the watermark as committed."""
    async with pg_sink(postgres_url) as sink:
        await sink.receive_many([envelope([1]), envelope([1], store="s2")])  # both rows made
        other = await psycopg.AsyncConnection.connect(postgres_url)
        try:
            await other.execute(
                "SELECT * FROM hq_marks WHERE store = 's1' FOR UPDATE"
            )  # a transaction open, holding s1's row
            task = asyncio.create_task(
                sink.receive_many([envelope([2, 3]), envelope([2, 3], store="s2")])
            )
            s2_committed = "SELECT watermark FROM hq_marks WHERE store = 's2'"
            async with asyncio.timeout(patience(30)):
                while pg_rows(postgres_url, s2_committed) != [(3,)]:
                    await asyncio.sleep(0.05)
            assert not task.done()  # s1 waits for the other transaction
            await other.execute("UPDATE hq_marks SET updated_at = now() WHERE store = 's1'")
            await other.commit()
            acks = await asyncio.wait_for(task, patience(30))
        finally:
            await other.close()
    assert sorted(_acked(acks)) == [
        ("retail/v1/s1/down/ack", {"stream": "stock", "epoch": "e1", "seq": 3}),
        ("retail/v1/s2/down/ack", {"stream": "stock", "epoch": "e1", "seq": 3}),
    ]
    assert pg_rows(postgres_url, "SELECT store, count(*) FROM hq_events GROUP BY 1 ORDER BY 1") == [
        ("s1", 3),
        ("s2", 3),
    ]


async def test_garbage_is_refused_and_never_poisons_the_batch(postgres_url: str) -> None:
    good = envelope([1, 2])
    nul = envelope([3]).replace(b'"n": 3', b'"n": "a\\u0000b"')
    surrogate = envelope([3]).replace(b'"n": 3', b'"n": "\\ud800"')
    nan = envelope([3]).replace(b'"n": 3', b'"n": NaN')
    async with pg_sink(postgres_url) as sink:
        acks = await sink.receive_many([b"not json", b"{}", nul, surrogate, nan, good])
        assert sink.rejected == 5
        assert _acked(acks)[0][1]["seq"] == 2
        huge = envelope([3]).replace(b'"n": 3', b'"n": 123456789012345678901234567890')
        await sink.receive_many([huge])
        odd = json.loads(envelope([4]))
        odd["events"][0].update(id="a\tb\nc\\d\re", ts="\\N", n='tab\there \\ "q"')
        await sink.receive_many([json.dumps(odd).encode()])
    assert pg_rows(postgres_url, "SELECT event ->> 'n' FROM hq_events WHERE seq = 3") == [
        ("123456789012345678901234567890",)
    ]
    assert pg_rows(postgres_url, "SELECT id, ts, event ->> 'n' FROM hq_events WHERE seq = 4") == [
        ("a\tb\nc\\d\re", "\\N", 'tab\there \\ "q"')
    ]


def test_bad_database_urls_are_clear_config_errors() -> None:
    with pytest.raises(ValueError, match="mysql:// is not supported"):
        HqConsumerConfig(database="mysql://hq@db/hq")
    with pytest.raises(ValueError, match="not a valid PostgreSQL URL"):
        HqConsumerConfig(database="postgresql://hq@db:notaport/hq?sslmode")
    assert HqConsumerConfig(database="postgresql://hq@db/hq").database.startswith("postgresql")


def test_a_bad_url_on_the_command_line_is_reported_with_its_key(tmp_path: Any) -> None:
    config = tmp_path / "hq.toml"
    config.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"hq\.database"):
        load_hq_config(config, database="redis://x")


async def test_an_unreachable_server_is_a_clear_storage_error(
    postgres_server: PostgresServer,
) -> None:
    url = f"postgresql://storegw@127.0.0.1:{postgres_server.port + 1}/nowhere?connect_timeout=2"
    with pytest.raises(StorageUnavailableError, match=r"127\.0\.0\.1"):
        async with pg_sink(url):
            pass


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    async with pg_sink(postgres_url):
        pass
    pg_rows(postgres_url, "INSERT INTO hq_schema VALUES (%s, 'future') RETURNING version",
            (PG_SCHEMA_VERSION + 1,))  # fmt: skip
    with pytest.raises(SchemaTooNewError):
        async with pg_sink(postgres_url):
            pass


@pytest.mark.slow
async def test_postgres_restarted_mid_flow_loses_nothing(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    async with pg_sink(postgres_url) as sink:
        await sink.receive_many([envelope([1, 2])])
        postgres_server.stop()
        with pytest.raises(StorageUnavailableError):
            await sink.receive_many([envelope([3, 4])])
        assert sink.unavailable_since is not None
        postgres_server.start()
        acks = await sink.receive_many([envelope([3, 4]), envelope([5])])
        assert _acked(acks)[0][1]["seq"] == 5
        assert sink.unavailable_since is None
    assert pg_rows(postgres_url, "SELECT seq FROM hq_events ORDER BY seq") == [
        (n,) for n in range(1, 6)
    ]


def test_hq_tail_says_what_is_wrong_with_its_database(
    tmp_path: Any, postgres_server: PostgresServer
) -> None:
    config = tmp_path / "hq.toml"
    config.write_text("[mqtt]\ntls = false\nallow_plaintext = true\n", encoding="utf-8")
    garbage = run_cli("hq", "tail", "--config", str(config), "--database", "mysql://hq@db/hq")
    assert garbage.returncode == 78
    assert "hq.database" in garbage.stderr
    assert "mysql:// is not supported" in garbage.stderr
    closed = f"postgresql://hq:secret@127.0.0.1:{postgres_server.port + 1}/hq?connect_timeout=2"
    unreachable = run_cli("hq", "tail", "--config", str(config), "--database", closed)
    assert unreachable.returncode == 74
    assert f"postgresql://hq@127.0.0.1:{postgres_server.port + 1}/hq" in unreachable.stderr
    assert "secret" not in unreachable.stderr


def test_a_sink_refuses_an_unreadable_url_before_connecting() -> None:
    with pytest.raises(ConfigError, match="not a valid PostgreSQL URL"):
        PostgresSink("postgresql://hq@db:notaport/hq?sslmode", clock=SystemClock(), emit=None)
