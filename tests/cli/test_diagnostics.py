"""Rendering of `storegw status` / `devices` for technicians."""

from __future__ import annotations

from gateway.cli.diagnostics import format_bytes, format_duration, render_devices, render_status


def status(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "version": "0.1.0",
        "store": {"id": "s-1", "timezone": "UTC"},
        "pid": 42,
        "uptime_s": 3725,
        "clock": {"synchronized": True, "utc_now": "2026-11-23T09:00:00.000+00:00"},
        "mqtt": {"host": "hq", "port": 8883, "transport": "tls"},
        "storage": {
            "path": "/var/lib/storegw/gateway.db",
            "size_bytes": 2048,
            "free_disk_bytes": 5 * 1024**3,
            "schema_version": 1,
            "boot": 7,
        },
        "config": {"last_reload": None},
        "drivers": [
            {"name": "ok-one", "driver": "x", "health": "running", "readings": 5, "restarts": 0},
            {
                "name": "bad-one",
                "driver": "x",
                "health": "degraded",
                "readings": 0,
                "restarts": 3,
                "last_error": "port gone",
                "last_error_at": "t",
                "next_retry_in_s": 4.2,
            },
        ],
    }
    base.update(overrides)
    return base


def test_status_puts_problems_first_with_their_cause() -> None:
    text = render_status(status())
    assert "up 1h 2m" in text
    assert "1/2 healthy, 1 need attention" in text
    assert text.index("bad-one") < text.index("ok-one")
    assert "last error: port gone" in text
    assert "next retry in 4.2 s" in text
    assert "5.0 GiB free" in text
    assert "boot #7" in text


def test_status_flags_unsynced_clock_plaintext_and_refused_reload() -> None:
    text = render_status(
        status(
            clock={"synchronized": False, "utc_now": "1970-01-01T00:01:00.000+00:00"},
            mqtt={"host": "h", "port": 1883, "transport": "PLAINTEXT"},
            config={"last_reload": {"ok": False, "at": "t", "detail": "bad\n  mqtt.port: x"}},
        )
    )
    assert "NOT SYNCHRONISED" in text
    assert "plaintext" in text
    assert "LAST RELOAD REFUSED" in text
    assert "mqtt.port: x" in text


def test_status_survives_a_sparse_answer() -> None:
    assert "storegw ?" in render_status({})


def test_devices_table() -> None:
    text = render_devices(
        {
            "devices": [
                {
                    "name": "a",
                    "driver": "d",
                    "family": "scale",
                    "enabled": True,
                    "health": "running",
                },
                {"name": "b", "driver": "d", "family": None, "enabled": False},
            ]
        }
    )
    assert "disabled" in text
    assert render_devices({"devices": []}) == "no devices configured"


def test_formatting_helpers() -> None:
    assert format_bytes(None) == "?"
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_duration(59) == "59s"
    assert format_duration(90061) == "1d 1h 1m"


def test_status_shows_the_link_backlog_and_parked_streams() -> None:
    text = render_status(
        status(
            mqtt={
                "enabled": True,
                "host": "hq",
                "port": 8883,
                "transport": "tls",
                "link": {"connected": False, "last_error": "cannot connect", "reconnects": 4},
                "last_hq_ack": {"stream": "stock", "seq": 41, "at": "t"},
                "parked_streams": {"alerts": "0x87 Not authorized"},
            },
            outbox=[
                {"stream": "stock", "depth": 12, "bytes": 4096, "oldest_ts": "t0", "acked_seq": 41},
                {"stream": "dwell", "depth": 0},
            ],
        )
    )
    assert "NOT CONNECTED: cannot connect, reconnects 4" in text
    assert "last HQ ack: stock seq 41" in text
    assert "stream alerts PARKED: 0x87 Not authorized" in text
    assert "stock     12 waiting (4.0 KiB, oldest t0), HQ has up to seq 41" in text
    assert "dwell" not in text


def test_status_counts_what_hq_sent_that_was_refused() -> None:
    quiet = render_status(status(downlink={"refused": 0}, commands={"refused": 0}))
    assert "refused:" not in quiet
    text = render_status(
        status(
            mqtt={
                "malformed": {
                    "refused": 27,
                    "by_topic": {"down/ack": 25, "down/cmd/+": 2},
                    "last_reason": "nested deeper than 32 levels (or unbalanced)",
                }
            },
            downlink={"signing": "UNSIGNED", "price_version": 3, "refused": 10},
            commands={"refused": 1},
        )
    )
    assert (
        "refused:  27 unreadable (down/ack 25, down/cmd/+ 2); 10 price message(s) not "
        "authentic; 1 command(s)\n          last unreadable: nested deeper than 32 levels"
    ) in text
