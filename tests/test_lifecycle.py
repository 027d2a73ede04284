"""The real daemon as systemd runs it: start, ready, status, reload, stop, bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import (
    STOREGW,
    FollowedOutput,
    esl,
    run_cli,
    running_daemon,
    scale,
    short_dir,
    status_json,
    stop,
    wait_for,
    write_config,
)
from tests.support.filesystems import tmpfs
from tests.waiting import patience

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def state() -> Iterator[Path]:
    with short_dir() as path:
        yield path


def drivers_by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {driver["name"]: driver for driver in status["drivers"]}


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("storegw 0.")


def test_check_config_accepts_the_shipped_configs() -> None:
    for path in (ROOT / "config" / "demo.toml", ROOT / "config" / "gateway.example.toml"):
        result = run_cli("check-config", str(path))
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout


def test_bad_config_exits_78_listing_every_bad_key(state: Path) -> None:
    config = write_config(
        state / "gateway.toml",
        state_dir=state,
        devices=[scale("shelf-a"), {"name": "x", "driver": "acme.nothing"}],
        extra="[logging]\nlevel = 'LOUD'",
    )
    for args in (("check-config", str(config)), ("run", "--config", str(config))):
        result = run_cli(*args)
        assert result.returncode == 78, result
        output = result.stdout + result.stderr
        assert "logging.level" in output
        assert "devices.1.driver" in output
        assert "simulated.scale" in output  # known drivers are named


def test_run_ready_status_devices_and_clean_stop(state: Path) -> None:
    labels = [{"label_id": "0000AABBCCDDEE01"}, {"label_id": "0000AABBCCDDEE02"}]
    config = write_config(
        state / "gateway.toml",
        state_dir=state,
        devices=[scale("shelf-a"), esl("labels", labels=labels)],
    )
    with running_daemon(config, notify_dir=state) as (process, notify):
        assert any("STATUS=" in message for message in notify.messages)
        status = wait_for(
            lambda: (
                (s := status_json(state))
                and all(d["health"] == "running" for d in s["drivers"])
                and s["readings"].get("shelf-a", {}).get("readings", 0) > 0
                and s
            ),
            what="drivers running with readings",
        )
        assert status["store"]["id"] == "test-store"
        assert status["clock"]["synchronized"] is True
        assert status["mqtt"]["transport"] == "PLAINTEXT"
        assert status["storage"]["path"] == str(state / "gateway.db")
        assert status["storage"]["free_disk_bytes"] > 0
        text = run_cli("status", "--socket", str(state / "control.sock"))
        assert text.returncode == 0
        assert "test-store" in text.stdout
        assert "shelf-a" in text.stdout
        devices = run_cli("devices", "--socket", str(state / "control.sock"))
        assert devices.returncode == 0
        assert "simulated.esl" in devices.stdout
        prices = run_cli("prices", "--socket", str(state / "control.sock"))
        assert prices.returncode == 0, prices.stderr
        assert "price version v0" in prices.stdout
        assert "UNSIGNED" in prices.stdout  # no HQ keys configured: said plainly
        assert "UNSIGNED" in text.stdout
        one = run_cli("prices", "4006381333931", "--json", "--socket", str(state / "control.sock"))
        assert json.loads(one.stdout)["history"] == []
        png = state / "label.png"
        shown = run_cli(
            "label",
            "preview",
            "4006381333931",
            "--model",
            "250x122:bwr",
            "--out",
            str(png),
            "--socket",
            str(state / "control.sock"),
        )
        assert shown.returncode == 0, shown.stderr
        assert "price unavailable" in shown.stdout  # no price yet: said, never invented
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        bad = run_cli(
            "label",
            "preview",
            "x",
            "--model",
            "huge",
            "--out",
            str(png),
            "--socket",
            str(state / "control.sock"),
        )
        assert bad.returncode != 0
        assert "WIDTHxHEIGHT:PALETTE" in bad.stderr
        sock = str(state / "control.sock")
        bound = run_cli("label", "bind", "L-1", "4006381333931", "--socket", sock)
        assert bound.returncode == 0, bound.stderr
        assert "shows 4006381333931" in bound.stdout
        listed = wait_for(
            lambda: "L-1" in (r := run_cli("labels", "--socket", sock)).stdout and r,
            what="a label job for the bound label",
        )
        assert "label job(s)" in listed.stdout
        show = run_cli("label", "show", "L-1", "--json", "--socket", sock)
        assert show.returncode == 0, show.stderr
        assert json.loads(show.stdout)["should_show"]["face"] == {
            "sku": "4006381333931",
            "price": None,
        }
        show_text = run_cli("label", "show", "L-1", "--socket", sock)
        assert "price unavailable" in show_text.stdout
        bad_state = run_cli("labels", "--state", "nope", "--socket", sock)
        assert bad_state.returncode != 0
        assert "unknown state" in bad_state.stderr
        moved = run_cli("label", "bind", "L-1", "4006381333948", "--socket", sock)
        assert moved.returncode != 0  # never a silent re-point
        assert "unbind it before" in moved.stderr
        unbound = run_cli("label", "unbind", "L-1", "--socket", sock)
        assert unbound.returncode == 0
        assert "was 4006381333931" in unbound.stdout
        seed_file = state / "planogram.csv"
        seed_file.write_text("label,sku,shelf\nL-1,4006381333948,A4\nL-2,4006381333931,A4\n")
        seeded = run_cli("label", "seed", str(seed_file), "--socket", sock)
        assert seeded.returncode == 0, seeded.stderr
        assert "2 label(s) bound" in seeded.stdout
        seed_file.write_text("label,sku\nL-3,4006381333948\nL 4,x\n")
        refused = run_cli("label", "seed", str(seed_file), "--socket", sock)
        assert refused.returncode != 0
        assert "row 2" in refused.stderr  # nothing sent: row 1 is not bound either
        again = run_cli("label", "bind", "L-3", "4006381333955", "--socket", sock)
        assert again.returncode == 0
        flashed = wait_for(
            lambda: (
                (r := run_cli("label", "flash", "0000AABBCCDDEE01", "--socket", sock)).returncode
                == 0
                and r
            ),
            what="a label heard by its driver, then flashed",
        )
        assert "via labels" in flashed.stdout
        unknown = run_cli("label", "flash", "0000FFFFFFFFFFFF", "--socket", sock)
        assert unknown.returncode != 0
        assert "not been heard" in unknown.stderr
        code, output = stop(process)
        notify.wait_for("STOPPING=1")
    assert code == 0, output
    assert (state / "gateway.db").exists()
    assert not (state / "control.sock").exists()


def test_cli_says_clearly_when_the_daemon_is_not_running(state: Path) -> None:
    result = run_cli("status", "--socket", str(state / "control.sock"))
    assert result.returncode == 3
    assert "not running" in result.stderr
    assert str(state / "control.sock") in result.stderr


def test_driver_faults_show_in_health_and_never_stop_the_others(state: Path) -> None:
    config = write_config(
        state / "gateway.toml",
        state_dir=state,
        devices=[
            scale("healthy"),
            scale("crashy", crash_after_s=0.3),
            scale("broken", config_error_on_open=True),
            {**scale("hangs", hang_after_s=0.3), "silence_limit_s": 1.0},
        ],
    )
    with running_daemon(config, notify_dir=state) as (process, _notify):
        drivers = wait_for(  # the asserts below are on this one view of the daemon
            lambda: (
                (d := drivers_by_name(status_json(state)))
                and d["broken"]["health"] == "failed"
                and d["crashy"]["restarts"] >= 2
                and d["hangs"]["restarts"] >= 1
                and d["healthy"]["health"] == "running"
                and d
            ),
            what="faulty drivers restarted/failed while the healthy one runs",
        )
        assert "simulated crash" in drivers["crashy"]["last_error"]
        assert "silent" in drivers["hangs"]["last_error"]
        assert drivers["healthy"]["restarts"] == 0
        text = run_cli("status", "--socket", str(state / "control.sock")).stdout
        assert text.index("] broken") < text.index("] healthy")  # problems first
        code, _ = stop(process)
    assert code == 0


def test_sighup_reload_restarts_only_changed_drivers_and_refuses_broken_config(
    state: Path,
) -> None:
    config = write_config(
        state / "gateway.toml",
        state_dir=state,
        devices=[scale("keep"), scale("change"), scale("remove")],
    )
    with running_daemon(config, notify_dir=state) as (process, notify):
        before = wait_for(
            lambda: (
                (d := drivers_by_name(status_json(state)))
                and all(x["health"] == "running" and x["readings"] > 0 for x in d.values())
                and d
            ),
            what="all running",
        )
        # A broken file is refused; everything keeps running.
        config.write_text("[store\nthis is not toml", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        refused = wait_for(
            lambda: (s := status_json(state))["config"]["last_reload"] and s,
            what="reload outcome",
        )
        assert refused["config"]["last_reload"]["ok"] is False
        assert "not valid TOML" in refused["config"]["last_reload"]["detail"]
        assert set(drivers_by_name(refused)) == {"keep", "change", "remove"}
        assert "RELOAD REFUSED" in run_cli("status", "--socket", str(state / "control.sock")).stdout

        changed = scale("change")
        changed["options"]["sample_rate_hz"] = 2.0
        write_config(config, state_dir=state, devices=[scale("keep"), changed, scale("added")])
        process.send_signal(signal.SIGHUP)
        after = wait_for(
            lambda: (
                (s := status_json(state))["config"]["last_reload"]["ok"]
                and set(drivers_by_name(s)) == {"keep", "change", "added"}
                and s
            ),
            what="reload applied",
        )
        drivers = drivers_by_name(after)
        # "keep" was not restarted: its reading count kept growing from before.
        assert drivers["keep"]["readings"] >= before["keep"]["readings"]
        assert drivers["keep"]["since"] == before["keep"]["since"]
        assert drivers["change"]["since"] != before["change"]["since"]
        assert "restarted ['change']" in after["config"]["last_reload"]["detail"]
        notify.wait_for("RELOADING=1")
        code, _ = stop(process)
    assert code == 0


def test_sigterm_during_startup_stops_cleanly(state: Path) -> None:
    config = write_config(state / "gateway.toml", state_dir=state, devices=[scale("shelf-a")])
    db_path = state / "gateway.db"
    # Hold the database's write lock so start-up is stuck opening storage.
    blocker = sqlite3.connect(db_path)
    blocker.execute("PRAGMA journal_mode=WAL")
    blocker.execute("CREATE TABLE hold(x)")
    blocker.commit()
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with running_daemon(
            config,
            notify_dir=state,
            wait_ready=False,
            env={"STOREGW_STORAGE__BUSY_TIMEOUT_S": "60"},  # longer than the test waits
        ) as (process, notify):
            notify.wait_for("STATUS=starting: opening storage")
            followed = FollowedOutput(process)
            process.send_signal(signal.SIGTERM)
            # The storage is released only once the daemon has taken the SIGTERM: start-up
            # cannot get past it first, however late the daemon is scheduled.
            followed.wait_for("stopping (SIGTERM)")
            blocker.rollback()
            process.wait(timeout=patience(30))
            output = followed.finish()
            assert "READY=1" not in "\n".join(notify.drain())
    finally:
        blocker.close()
    assert process.returncode == 0, output
    assert "start-up interrupted by SIGTERM" in output


def test_corrupt_database_exits_65_and_keeps_the_file(state: Path) -> None:
    config = write_config(state / "gateway.toml", state_dir=state, devices=[])
    garbage = b"SQLite format 3\x00" + os.urandom(8192)
    (state / "gateway.db").write_bytes(garbage)
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 65, result
    assert str(state / "gateway.db") in result.stderr
    assert (state / "gateway.db").read_bytes() == garbage


def test_newer_schema_exits_65_with_a_clear_message(state: Path) -> None:
    config = write_config(state / "gateway.toml", state_dir=state, devices=[])
    with sqlite3.connect(state / "gateway.db") as db:
        db.execute("PRAGMA user_version = 999")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 65, result
    assert "999" in result.stderr
    assert "newer" in result.stderr


def test_database_on_a_read_only_filesystem_exits_74_naming_the_path(state: Path) -> None:
    with tmpfs(state / "ro", read_only=True) as mount_point:
        config = write_config(state / "gateway.toml", state_dir=state, devices=[])
        config.write_text(
            config.read_text(encoding="utf-8").replace(
                str(state / "gateway.db"), str(mount_point / "gateway.db")
            ),
            encoding="utf-8",
        )
        result = run_cli("run", "--config", str(config))
    assert result.returncode == 74, result
    assert str(mount_point / "gateway.db") in result.stderr


def test_watchdog_pings_while_every_component_progresses(state: Path) -> None:
    config = write_config(state / "gateway.toml", state_dir=state, devices=[scale("shelf-a")])
    with running_daemon(config, notify_dir=state, env={"WATCHDOG_USEC": "1000000"}) as (
        process,
        notify,
    ):
        notify.wait_for("WATCHDOG=1")
        code, _ = stop(process)
    assert code == 0


def test_demo_runs_until_stopped(state: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREGW_")}
    process = subprocess.Popen(
        [STOREGW, "demo", "--interval", "2", "--state-dir", str(state)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    followed = FollowedOutput(process)
    try:
        # It runs until the summaries show what it is for, however long a busy machine takes.
        for shown in (
            "--- store",
            "HQ link up",  # its own private broker and in-process HQ
            "HQ (demo, in-process)",
            "beacons",
            "confirmed",
            # The demo HQ pushed a signed full price list through `hq push-prices`' code; applied.
            "prices pushed up to v1",
            "prices v1 (signed)",
        ):
            followed.wait_for(shown)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=patience(30))
        output = followed.finish()
    assert process.returncode == 0, output
    # The simulated labels are drawn under the state dir, whatever the working directory.
    shelf = json.loads((state / "labels" / "esl-ap-1" / "shelf.json").read_text(encoding="utf-8"))
    assert len(shelf["labels"]) == 8


def test_daemon_connects_to_hq_publishes_birth_health_and_death(
    state: Path, tmp_path: Path
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from gateway.wire import HealthSnapshot, StateMessage
    from tests.support.broker import Broker
    from tests.wire.documented import validator

    broker = Broker(tmp_path)
    broker.start()
    seen: list[tuple[str, bytes]] = []
    observer = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    observer.on_connect = lambda c, *_: c.subscribe("retail/v1/test-store/#", qos=1)
    observer.on_message = lambda _c, _u, m: seen.append((m.topic, m.payload))
    observer.connect(broker.host, broker.port)
    observer.loop_start()
    try:
        config = write_config(
            state / "gateway.toml",
            state_dir=state,
            devices=[scale("shelf-a")],
            extra="",
        )
        text = config.read_text(encoding="utf-8").replace(
            "[mqtt]\n",
            f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\nhealth_interval_s = 1\n",
        )
        config.write_text(text, encoding="utf-8")
        with running_daemon(config, notify_dir=state) as (process, _notify):
            wait_for(lambda: status_json(state)["mqtt"]["link"]["connected"], what="link up")
            wait_for(lambda: any(topic.endswith("/up/health") for topic, _ in seen), what="health")
            status_text = run_cli("status", "--socket", str(state / "control.sock")).stdout
            assert "connected since" in status_text
            code, _ = stop(process)
        assert code == 0
        wait_for(lambda: len([t for t, _ in seen if t.endswith("/state")]) >= 2, what="death")
    finally:
        observer.disconnect()
        observer.loop_stop()
        broker.stop()
    states = [json.loads(p) for t, p in seen if t.endswith("/state")]
    health_schema = validator("`up/health` — snapshot")
    for topic, payload in seen:  # the documented schemas (docs/protocol.md) hold
        if topic.endswith("/state"):
            StateMessage.model_validate_json(payload)
        elif topic.endswith("/up/health"):
            HealthSnapshot.model_validate_json(payload)
            health_schema.validate(json.loads(payload))
    assert states[0]["online"] is True
    assert states[-1]["online"] is False
    assert states[0]["boot"] == states[-1]["boot"]
    health = json.loads(next(p for t, p in seen if t.endswith("/up/health")))
    assert health["store"] == "test-store"
    assert {s["stream"] for s in health["streams"]} == {"stock", "dwell", "receipts", "alerts"}
    assert health["drivers"][0]["name"] == "shelf-a"


def test_hq_keygen_prints_the_config_lines(tmp_path: Path) -> None:
    result = run_cli("hq", "keygen", "--out", str(tmp_path / "hq.key"), "--kid", "hq-1")
    assert result.returncode == 0, result.stderr
    assert 'hq_public_keys = { "hq-1" = "' in result.stdout
    assert (tmp_path / "hq.key").stat().st_mode & 0o777 == 0o600
    again = run_cli("hq", "keygen", "--out", str(tmp_path / "hq.key"), "--kid", "hq-1")
    assert again.returncode != 0  # never overwrites a key
    assert "exists" in again.stderr


def test_hq_push_prices_refuses_a_bad_price_list_before_sending(tmp_path: Path) -> None:
    (tmp_path / "hq.toml").write_text("[mqtt]\nhost = '127.0.0.1'\nport = 1\n", encoding="utf-8")
    (tmp_path / "prices.csv").write_text("sku,price,currency\na,1.5.0,EUR\n", encoding="utf-8")
    result = run_cli(
        "hq",
        "push-prices",
        "--config",
        str(tmp_path / "hq.toml"),
        "--full",
        "--store",
        "s1",
        str(tmp_path / "prices.csv"),
    )
    assert result.returncode != 0
    assert "row 1" in result.stderr


def test_shelf_slots_through_the_cli_against_a_running_daemon(state: Path) -> None:
    slots = """
[[shelves.slots]]
slot = "cola"
device = "shelf-a"
channel = "slot-1"
sku = "4006381333931"
unit_grams = 330.0
tray_tare_grams = 0.0
min_count = 2
"""
    config = write_config(
        state / "gateway.toml", state_dir=state, devices=[scale("shelf-a")], extra=slots
    )
    sock = str(state / "control.sock")
    with running_daemon(config, notify_dir=state) as (process, notify):
        listed = wait_for(
            lambda: (
                (r := run_cli("slots", "--json", "--socket", sock)).returncode == 0
                and (slot := json.loads(r.stdout)["slots"][0])["count"] is not None
                and slot
            ),
            what="the slot counted from its weight",
        )
        assert (listed["slot"], listed["sku"], listed["source"]) == (
            "cola",
            "4006381333931",
            "config",
        )
        assert 0 <= listed["count"] <= 12  # the simulated channel holds up to 12
        text = run_cli("slots", "--socket", sock)
        assert text.returncode == 0
        assert "cola" in text.stdout
        read = run_cli("scale", "read", "cola", "--socket", sock)
        assert read.returncode == 0, read.stderr
        assert read.stdout.startswith("cola: raw ")
        unknown = run_cli("scale", "read", "no-such-slot", "--socket", sock)
        assert unknown.returncode != 0
        assert "no-such-slot" in unknown.stderr
        tared = wait_for(  # the scale must be stable for a tare: shoppers come and go
            lambda: (
                # the simulated slot holds items (a tare refuses that without --force)
                (r := run_cli("scale", "tare", "cola", "--force", "--socket", sock)).returncode == 0
                and r
            ),
            what="a software tare while the slot is stable",
        )
        assert "tared in software" in tared.stdout
        silly = run_cli("scale", "calibrate", "cola", "--known-grams", "-5", "--socket", sock)
        assert silly.returncode != 0
        assert silly.stderr.strip()  # says why, on stderr
        code, output = stop(process)
        notify.wait_for("STOPPING=1")
    assert code == 0, output
