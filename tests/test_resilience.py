"""The real daemon against what a store box does to it: descriptors running out, a full disk,
a second daemon, a socket path that cannot work, a database found empty, bad socket clients."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.control.client import ControlClient
from gateway.errors import DaemonError
from tests.daemon import (
    run_cli,
    running_daemon,
    scale,
    short_dir,
    status_json,
    stop,
    toml_value,
    wait_for,
    write_config,
)
from tests.support.broker import Broker
from tests.support.filesystems import tmpfs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


SHELVES = """
[shelves]
[[shelves.slots]]
slot = "cola"
device = "shelf-a"
channel = "slot-1"
sku = "4006381333931"
unit_grams = 330.0
"""


@pytest.fixture
def state() -> Iterator[Path]:
    with short_dir() as path:
        yield path


class Output:
    """Collects a daemon's output lines as they come (the test waits on what it logs)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._collect, name="daemon-output", daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        for line in self._stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def finish(self) -> str:
        """Once the daemon exited: everything it wrote."""
        self._thread.join(timeout=30)
        return self.text()


def status_or_none(state: Path) -> dict[str, Any] | None:
    result = run_cli("status", "--json", "--socket", str(state / "control.sock"))
    if result.returncode != 0:
        return None
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def notify_dir(state: Path, run: int) -> Path:
    """A directory for one daemon run's notify socket (a path is bound once)."""
    path = state / f"notify-{run}"
    path.mkdir()
    return path


def with_mqtt(config: Path, broker: Broker) -> Path:
    text = config.read_text(encoding="utf-8").replace(
        "[mqtt]\n", f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\n"
    )
    config.write_text(text, encoding="utf-8")
    return config


def retarget(config: Path, old: Path, new: Path) -> None:
    text = config.read_text(encoding="utf-8")
    assert toml_value(str(old)) in text
    config.write_text(text.replace(toml_value(str(old)), toml_value(str(new))), encoding="utf-8")


# --- item C: file descriptors ---------------------------------------------------------------


def test_the_daemon_survives_running_out_of_file_descriptors_and_reconnects(
    state: Path, mosquitto: Broker
) -> None:
    config = with_mqtt(write_config(state / "gateway.toml", state_dir=state, devices=[]), mosquitto)
    with running_daemon(config, notify_dir=state) as (process, _notify):
        wait_for(lambda: (s := status_or_none(state)) and s["mqtt"]["link"]["connected"])
        output = Output(process)
        limits = resource.prlimit(process.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (3, limits[1]))  # none left
        try:
            # HQ's broker drops the session (another client takes its id over): the daemon
            # must reconnect, and its socket() fails for want of a descriptor.
            kicker = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id="storegw-test-store", protocol=mqtt.MQTTv5
            )
            kicker.connect(mosquitto.host, mosquitto.port)
            kicker.loop_start()
            wait_for(
                lambda: "Too many open files" in output.text() or process.poll() is not None,
                timeout=60,
                what="a reconnect failing for want of descriptors",
            )
            kicker.disconnect()
            kicker.loop_stop()
            assert process.poll() is None, output.finish()
        finally:
            if process.poll() is None:
                resource.prlimit(process.pid, resource.RLIMIT_NOFILE, limits)
        status = wait_for(
            lambda: (
                process.poll() is not None
                or ((s := status_or_none(state)) and s["mqtt"]["link"]["connected"] and s)
            ),
            timeout=90,
            what="the link back once descriptors are there again",
        )
        assert process.poll() is None, output.finish()  # alive, and connected again
        assert status["mqtt"]["link"]["reconnects"] >= 1
        code, _ = stop(process)
    assert code == 0
    log = output.finish()
    failures = [line for line in log.splitlines() if "Too many open files" in line]
    assert len(failures) == 1, log  # logged once, however many attempts failed
    assert "WARNING" in failures[0]
    assert "Traceback" not in log


def test_control_connections_beyond_the_cap_are_refused_busy(state: Path) -> None:
    config = write_config(state / "gateway.toml", state_dir=state, devices=[])
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[control]\n", "[control]\nmax_connections = 4\n"))
    sock = state / "control.sock"
    with running_daemon(config, notify_dir=state) as (process, _notify):
        held = []
        try:
            for _ in range(4):
                connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                connection.connect(str(sock))
                held.append(connection)
            refused = run_cli("status", "--socket", str(sock))
            assert refused.returncode == 1
            assert "busy" in refused.stderr
            assert "max_connections" in refused.stderr
        finally:
            for connection in held:
                connection.close()
        wait_for(lambda: run_cli("status", "--socket", str(sock)).returncode == 0, what="room")
        code, output = stop(process)
    assert code == 0, output
    assert output.count("refusing more") == 1


# --- item D: one daemon per database and per socket -----------------------------------------


def test_a_second_daemon_on_the_same_database_is_refused_naming_the_first(state: Path) -> None:
    first = write_config(state / "gateway.toml", state_dir=state, devices=[])
    with short_dir() as other, running_daemon(first, notify_dir=state) as (process, _notify):
        boot = status_json(state)["storage"]["boot"]
        second = write_config(other / "gateway.toml", state_dir=other, devices=[])
        retarget(second, other / "gateway.db", state / "gateway.db")  # its own socket
        result = run_cli("run", "--config", str(second), "--duration", "5")
        assert result.returncode == 78, result
        assert f"pid {process.pid}" in result.stderr
        assert str(state / "gateway.db") in result.stderr
        assert not (other / "control.sock").exists()
        # The first one never noticed: same boot, still answering.
        assert status_json(state)["storage"]["boot"] == boot
        with sqlite3.connect(state / "gateway.db") as db:
            assert db.execute("SELECT value FROM meta WHERE key = 'boot'").fetchone() == (
                str(boot),
            )
        code, output = stop(process)
    assert code == 0, output


def test_a_second_daemon_on_the_same_control_socket_is_refused_before_ready(
    state: Path,
) -> None:
    first = write_config(state / "gateway.toml", state_dir=state, devices=[])
    with short_dir() as other, running_daemon(first, notify_dir=state) as (process, _notify):
        second = write_config(other / "gateway.toml", state_dir=other, devices=[])
        retarget(second, other / "control.sock", state / "control.sock")  # its own database
        with running_daemon(second, notify_dir=other, wait_ready=False) as (refused, notify):
            refused_output, _ = refused.communicate(timeout=60)
            assert refused.returncode == 78, refused_output
            assert "READY=1" not in "\n".join(notify.messages)
        assert "control.socket" in refused_output
        assert f"(pid {process.pid}) is already serving {state / 'control.sock'}" in (
            refused_output
        )
        assert "Traceback" not in refused_output
        assert status_json(state)["pid"] == process.pid  # the first one still serves
        code, output = stop(process)
    assert code == 0, output


def test_a_socket_directory_that_cannot_be_written_stops_the_start_with_78(state: Path) -> None:
    with tmpfs(state / "ro", size="64k", read_only=True) as read_only:
        config = write_config(state / "gateway.toml", state_dir=state, devices=[])
        retarget(config, state / "control.sock", read_only / "run" / "control.sock")
        with running_daemon(config, notify_dir=state, wait_ready=False) as (process, notify):
            output, _ = process.communicate(timeout=60)
            assert process.returncode == 78, output
            assert "READY=1" not in "\n".join(notify.messages)
    assert "control.socket" in output
    assert f"cannot create the directory {read_only / 'run'}" in output
    assert "Traceback" not in output


def test_check_config_catches_what_would_fail_at_run_time(state: Path) -> None:
    long_socket = state / ("d" * (120 - len(str(state)))) / "c.sock"
    config = write_config(
        state / "gateway.toml",
        state_dir=state,
        devices=[scale("shelf-a"), {**scale("shelf-a"), "options": {"sample_rate_hz": -1}}],
    )
    retarget(config, state / "control.sock", long_socket)
    text = config.read_text(encoding="utf-8").replace(
        "[mqtt]\n", f"[mqtt]\nca_file = {toml_value(str(state / 'hq-ca.pem'))}\n"
    )
    config.write_text(text, encoding="utf-8")
    for args in (("check-config", str(config)), ("run", "--config", str(config))):
        result = run_cli(*args)
        assert result.returncode == 78, result
        for path in (
            "control.socket",
            "mqtt.ca_file",
            "devices.1.name",
            "devices.1.options.sample_rate_hz",
        ):
            assert path in result.stderr, (path, result.stderr)
        assert f"{state / 'hq-ca.pem'}: no such file" in result.stderr


# --- item E: the disk, the database file, the socket's clients -----------------------------


def _fill(mount_point: Path) -> None:
    """Fill the filesystem to the last byte with a file that is not the database."""
    fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (64 * 1024, 4096, 512, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


def test_a_full_disk_raises_storage_full_once_and_clears_it_when_there_is_room(
    state: Path,
) -> None:
    with tmpfs(state / "disk", size="4m") as disk:
        config = write_config(
            state / "gateway.toml",
            state_dir=state,
            devices=[scale("shelf-a")],
            extra=SHELVES.replace("[shelves]\n", "[shelves]\nactivity_interval_s = 1.0\n"),
        )
        retarget(config, state / "gateway.db", disk / "gateway.db")
        sock = str(state / "control.sock")
        with running_daemon(config, notify_dir=state) as (process, _notify):
            output = Output(process)
            _fill(disk)

            def alerts() -> list[dict[str, Any]]:
                result = run_cli("alerts", "--json", "--socket", sock)
                assert result.returncode == 0, result.stderr
                active: list[dict[str, Any]] = json.loads(result.stdout)["active"]
                return active

            full = wait_for(
                lambda: [a for a in alerts() if a["key"] == "storage.full"],
                timeout=60,
                what="the storage.full alert",
            )
            assert full[0]["severity"] == "critical"
            status = status_json(state)
            assert status["storage"]["full_since"] is not None
            text_status = run_cli("status", "--socket", sock).stdout
            assert "DISK FULL since" in text_status
            wait_for(  # writes keep being refused meanwhile...
                lambda: status_json(state)["storage"]["refused_while_full"] > 0,
                what="more writes refused",
            )
            (disk / "filler").unlink()
            wait_for(  # ...until there is room again, for a while
                lambda: not [a for a in alerts() if a["key"] == "storage.full"],
                timeout=120,
                what="storage.full cleared",
            )
            code, _ = stop(process)
        log = output.finish()
    assert code == 0, log
    database_errors = [
        line for line in log.splitlines() if "ERROR" in line and "gateway.store.database" in line
    ]
    assert len(database_errors) == 1, "\n".join(database_errors)
    assert "storage.full" in database_errors[0]
    assert sum("has room again, writes succeed" in line for line in log.splitlines()) == 1


def test_a_database_found_empty_starts_a_new_epoch_and_says_so(state: Path) -> None:
    config = write_config(state / "gateway.toml", state_dir=state, devices=[])
    sock = str(state / "control.sock")
    with running_daemon(config, notify_dir=notify_dir(state, 1)) as (process, _notify):
        epoch = status_json(state)["storage"]["epoch"]
        code, _ = stop(process)
    assert code == 0
    for leftover in ("gateway.db-wal", "gateway.db-shm"):
        (state / leftover).unlink(missing_ok=True)
    (state / "gateway.db").write_bytes(b"")
    with running_daemon(config, notify_dir=notify_dir(state, 2)) as (process, _notify):
        storage = status_json(state)["storage"]
        assert storage["found_empty"] is True
        assert storage["epoch"] != epoch
        assert "FOUND EMPTY" in run_cli("status", "--socket", sock).stdout
        alerts = json.loads(run_cli("alerts", "--json", "--socket", sock).stdout)["active"]
        [found] = [a for a in alerts if a["key"] == "storage.found_empty"]
        assert found["severity"] == "warning"
        assert found["details"]["epoch"] == storage["epoch"]
        code, output = stop(process)
    assert code == 0
    assert "found EMPTY (0 bytes)" in output
    with running_daemon(config, notify_dir=notify_dir(state, 3)) as (
        process,
        _notify,
    ):  # a normal start
        assert status_json(state)["storage"]["found_empty"] is False
        alerts = json.loads(run_cli("alerts", "--json", "--socket", sock).stdout)["active"]
        assert [a for a in alerts if a["key"] == "storage.found_empty"] == []
        code, _ = stop(process)
    assert code == 0


def test_bad_arguments_are_invalid_args_not_internal(state: Path) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("label.bind", {"label": 5, "sku": "4006381333931"}, "label"),
        ("label.bind", {"label": "L-1", "sku": ["4006381333931"]}, "sku"),
        ("label.bind", {"sku": "4006381333931"}, "label"),
        ("label.bind", {"label": "L 1", "sku": "4006381333931"}, "label id"),
        ("label.flash", {"label": "L-1", "seconds": "ten"}, "seconds"),
        ("label.flash", {"label": "L-1", "seconds": True}, "seconds"),
        ("label.flash", {"label": {"id": 1}}, "label"),
        ("label.flash", {"label": "L-1", "seconds": 301}, "seconds"),
        ("label.unbind", {"label": 7}, "label"),
        ("label.show", {}, "label"),
        ("label.seed", {"rows": "L-1,4006381333931"}, "rows"),
        ("label.seed", {"rows": [["L 1", "4006381333931"]]}, "seed rows"),
        ("labels", {"state": "sideways"}, "sideways"),
        ("labels", {"state": 3}, "state"),
        ("label.preview", {"sku": 4006381333931}, "sku"),
        ("prices", {"sku": ["4006381333931"]}, "sku"),
        ("scale.read", {}, "slot"),
        ("scale.read", {"slot": "cola", "follow": "yes"}, "follow"),
        ("scale.tare", {"slot": 5}, "slot"),
        ("scale.tare", {"slot": "cola", "device": 1}, "device"),
        ("scale.tare", {"slot": "cola", "force": "yes"}, "force"),
        ("scale.calibrate", {"slot": "cola", "known_grams": "500"}, "known_grams"),
        ("scale.calibrate", {"slot": "cola"}, "known_grams"),
        ("scale.calibrate", {"slot": "cola", "known_grams": 500}, "no slot 'cola'"),
    ]
    config = write_config(state / "gateway.toml", state_dir=state, devices=[])
    client = ControlClient(state / "control.sock")
    with running_daemon(config, notify_dir=state) as (process, _notify):
        wait_for(lambda: status_or_none(state))  # (an old daemon was READY before its socket)
        for command, args, named in cases:
            with pytest.raises(DaemonError) as caught:
                client.request_sync(command, args)
            assert caught.value.code == "invalid_args", (command, args, caught.value)
            assert named in caught.value.message, (command, args, caught.value)
        # Python's JSON reads Infinity and NaN: a raw client can send them.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(str(state / "control.sock"))
            raw.sendall(
                b'{"v": 1, "id": 1, "cmd": "label.flash", '
                b'"args": {"label": "L-1", "seconds": Infinity}}\n'
            )
            answer = json.loads(raw.makefile("rb").readline())
        assert answer["error"]["code"] == "invalid_args", answer
        assert client.request_sync("labels", {})["total"] == 0  # nothing was bound
        code, output = stop(process)
    assert code == 0
    assert "ERROR" not in output, output


def test_a_follow_client_killed_mid_stream_is_not_an_error(state: Path) -> None:
    config = write_config(
        state / "gateway.toml", state_dir=state, devices=[scale("shelf-a")], extra=SHELVES
    )
    sock = str(state / "control.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREGW_")}
    storegw = str(Path(sys.executable).with_name("storegw"))

    def samples() -> int:
        readings: int = status_json(state)["readings"]["shelf-a"]["readings"]
        return readings

    with running_daemon(config, notify_dir=state) as (process, _notify):
        wait_for(
            lambda: run_cli("scale", "read", "cola", "--socket", sock).returncode == 0,
            what="readings for the slot",
        )
        for _ in range(3):
            follower = subprocess.Popen(
                [storegw, "scale", "read", "cola", "--follow", "--socket", sock],
                stdout=subprocess.PIPE,
                env=env,
            )
            assert follower.stdout is not None
            assert follower.stdout.readline()  # following
            # Frozen (a technician's terminal suspended), then killed: its socket closes with
            # events unread in it, which resets the daemon's end of the connection.
            follower.send_signal(signal.SIGSTOP)
            frozen_at = samples()
            while samples() < frozen_at + 3:  # events sent to the frozen client
                time.sleep(0.1)
            follower.kill()
            follower.wait()
            follower.stdout.close()
        assert run_cli("status", "--socket", sock).returncode == 0
        code, output = stop(process)
    assert code == 0
    assert "ERROR" not in output, output
    assert "Traceback" not in output, output
