"""``storegw`` command line: run the daemon, check a config, and diagnostics for technicians.

Exit codes follow sysexits(3) where one fits: 0 ok, 1 a diagnostic found a problem, 3 the
daemon is not running, 65 the database is corrupt or too new (restarting cannot help),
74 storage I/O error, 78 invalid configuration — including an unusable control socket path and
a second daemon on the same database or control socket (restarting cannot help either).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from gateway import __version__

__all__ = ["main"]

_LOGGER = logging.getLogger("gateway.cli")

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_NOT_RUNNING = 3
EXIT_DATAERR = 65
EXIT_IOERR = 74
EXIT_CONFIG = 78


def _add_hq_commands(commands: Any) -> None:
    hq = commands.add_parser("hq", help="HQ-side reference tools")
    hq_commands = hq.add_subparsers(dest="hq_command", required=True, metavar="HQ_COMMAND")
    hq_tail = hq_commands.add_parser(
        "tail", help="consume every store's events: store, de-duplicate, ack, print JSON lines"
    )
    hq_tail.add_argument("--config", type=Path, required=True, help="HQ.toml")
    hq_tail.add_argument("--duration", type=float, help="stop after this many seconds")
    hq_tail.add_argument(
        "--quiet",
        action="store_true",
        help="store and acknowledge only, print no event lines (feeds, benchmarks)",
    )
    hq_tail.add_argument(
        "--database", help="overrides [hq] database: a SQLite file or a postgresql:// URL"
    )
    hq_tail.add_argument(
        "--share-group", help="overrides [hq] share_group: consume through $share/NAME/"
    )
    hq_tail.add_argument(
        "--client-id", help="overrides [mqtt] client_id (one per consumer of a share group)"
    )

    keygen = hq_commands.add_parser(
        "keygen", help="create an Ed25519 signing key for HQ; prints the stores' config line"
    )
    keygen.add_argument("--out", type=Path, required=True, help="private key file (PEM, 0600)")
    keygen.add_argument("--kid", required=True, help="key id, e.g. hq-2026-11")
    push = hq_commands.add_parser(
        "push-prices", help="sign a CSV/JSON price list and publish it to stores"
    )
    push.add_argument("--config", type=Path, required=True, help="HQ.toml")
    push.add_argument(
        "file",
        type=Path,
        nargs="?",
        help="price list: CSV (sku,price,currency,...) or JSON (optional with --delta)",
    )
    push_kind = push.add_mutually_exclusive_group(required=True)
    push_kind.add_argument("--full", action="store_true", help="replace each store's book")
    push_kind.add_argument("--delta", action="store_true", help="upsert these SKUs only")
    push.add_argument("--store", action="append", default=[], help="target store (repeatable)")
    push.add_argument("--group", action="append", default=[], help="target group (repeatable)")
    push.add_argument("--delete", action="append", default=[], help="SKU to delete (delta)")
    push.add_argument(
        "--promotions",
        type=Path,
        help="promotions: CSV (id,sku,price,currency,reference_price,effective_from,"
        "effective_to,progressive) or JSON; instants ISO 8601 or relative (+1m, +2h)",
    )
    push.add_argument(
        "--cancel-promotion", action="append", default=[], help="promotion id to cancel"
    )
    _add_fleet_push_options(push)

    cmd = hq_commands.add_parser("cmd", help="send a signed command to a store, print its reply")
    cmd.add_argument("--config", type=Path, required=True, help="HQ.toml")
    cmd.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    cmd.add_argument("store", help="store id")
    cmd.add_argument("name", help="command: ping, resync, rebirth, ...")
    cmd.add_argument("args", nargs="*", help="key=value arguments (JSON values allowed)")


def _add_label_commands(commands: Any, default_config: Path) -> None:
    label = commands.add_parser("label", help="shelf label tools")
    label_commands = label.add_subparsers(dest="label_command", required=True, metavar="LABEL_CMD")
    preview = label_commands.add_parser(
        "preview", help="render what a label for a SKU shows now, as a PNG"
    )
    preview.add_argument("sku", help="the SKU")
    preview.add_argument(
        "--model", default="296x128:bwr", help="panel WIDTHxHEIGHT:PALETTE (bw, bwr, bwy, bwry)"
    )
    preview.add_argument("--out", type=Path, required=True, help="PNG file to write")
    bind = label_commands.add_parser(
        "bind",
        help="show SKU on LABEL (a local override: HQ's bindings wait until unbind); "
        "a failed job of the label for SKU is retried at once",
    )
    bind.add_argument("label", help="label id")
    bind.add_argument("sku", help="SKU")
    unbind = label_commands.add_parser("unbind", help="LABEL shows no SKU any more")
    unbind.add_argument("label", help="label id")
    flash = label_commands.add_parser("flash", help="blink LABEL's LED to find it on the shelf")
    flash.add_argument("label", help="label id")
    flash.add_argument("--seconds", type=float, default=10.0)
    seed = label_commands.add_parser(
        "seed", help="bind labels from a seed file (label,sku CSV or JSON; HQ and local win)"
    )
    seed.add_argument("file", type=Path, help="seed file, e.g. the planogram export")
    show = label_commands.add_parser(
        "show", help="LABEL's binding, should-show vs last confirmed, its job and audit"
    )
    show.add_argument("label", help="label id")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    for sub in (preview, bind, unbind, flash, seed, show):
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--config", type=Path, default=default_config)
        where.add_argument("--socket", type=Path, help="control socket (overrides --config)")


def _add_ble_commands(commands: Any, default_config: Path) -> None:
    ble = commands.add_parser("ble", help="BLE receivers: what they hear")
    ble_commands = ble.add_subparsers(dest="ble_command", required=True, metavar="BLE_CMD")
    scan = ble_commands.add_parser(
        "scan", help="what every receiver hears for a few seconds, decoded (devices pseudonymised)"
    )
    scan.add_argument("--seconds", type=float, default=5.0, help="how long to listen (<= 60)")
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    where = scan.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, default=default_config)
    where.add_argument("--socket", type=Path, help="control socket (overrides --config)")


def _add_scale_commands(commands: Any, default_config: Path) -> None:
    scale = commands.add_parser("scale", help="shelf slot scales: live reading, tare, calibrate")
    scale_commands = scale.add_subparsers(dest="scale_command", required=True, metavar="SCALE_CMD")
    read = scale_commands.add_parser("read", help="a slot's live reading, count and state")
    read.add_argument("slot", help="slot id")
    read.add_argument("--follow", action="store_true", help="every sample until Ctrl-C")
    tare = scale_commands.add_parser(
        "tare", help="the present reading becomes the slot's empty tray (software tare)"
    )
    tare.add_argument("slot", help="slot id")
    tare.add_argument(
        "--device",
        action="store_true",
        help="tare the device itself instead (EEPROM on many scales: rarely, never per event)",
    )
    tare.add_argument(
        "--force",
        action="store_true",
        help="tare although the slot's count says it holds items (the tray is empty and the "
        "count is what is wrong)",
    )
    calibrate = scale_commands.add_parser(
        "calibrate", help="span calibration: a known weight lies on the tared slot"
    )
    calibrate.add_argument("slot", help="slot id")
    calibrate.add_argument("--known-grams", type=float, required=True, help="the weight on it")
    for sub in (read, tare, calibrate):
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--config", type=Path, default=default_config)
        where.add_argument("--socket", type=Path, help="control socket (overrides --config)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")


def _build_parser() -> argparse.ArgumentParser:
    from gateway.config import DEFAULT_CONFIG_PATH

    parser = argparse.ArgumentParser(
        prog="storegw", description="Store-edge IoT gateway: shelf labels, smart shelves, BLE."
    )
    parser.add_argument("--version", action="version", version=f"storegw {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the gateway daemon")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    run.add_argument("--duration", type=float, help="stop after this many seconds (tests)")

    demo = commands.add_parser(
        "demo", help="run a virtual store with simulated devices, printing a live summary"
    )
    demo.add_argument("--config", type=Path, help="demo config (default: the built-in one)")
    demo.add_argument("--state-dir", type=Path, default=Path(".demo"))
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between summaries")
    demo.add_argument(
        "--esl",
        choices=("simulated", "oepl"),
        default="simulated",
        help="the label side: the simulated ESL, or the real esl.oepl driver against a fake "
        "OpenEPaperLink access point (HTTP + websocket, in a child process)",
    )

    _add_hq_commands(commands)
    _add_label_commands(commands, DEFAULT_CONFIG_PATH)
    _add_scale_commands(commands, DEFAULT_CONFIG_PATH)
    _add_ble_commands(commands, DEFAULT_CONFIG_PATH)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path", type=Path, nargs="?", default=DEFAULT_CONFIG_PATH)

    for name, text in (
        ("status", "show the running daemon's health"),
        ("devices", "list configured driver instances"),
        ("alerts", "list active alerts"),
        ("prices", "show current and scheduled prices (optionally of one SKU)"),
        ("labels", "label jobs per state, scheduled flips, drivers, and a listing"),
        ("slots", "shelf slots: live count, stock state and sensor health"),
        ("zones", "BLE presence: occupancy and dwell now per zone, receivers never heard"),
        ("beacons", "fixed BLE beacons: last seen, battery, temperature, missing"),
    ):
        sub = commands.add_parser(name, help=text)
        if name == "prices":
            sub.add_argument("sku", nargs="?", help="one SKU, with its history")
        if name == "labels":
            sub.add_argument(
                "--state",
                help="only jobs in this state (awaiting_model, queued, submitted, pending, "
                "confirmed, failed, failed_permanent, unreachable)",
            )
            sub.add_argument(
                "--health",
                action="store_true",
                help="ESL fleet health: low batteries, timed-out and sleeping labels, weak "
                "signal, new labels to bind",
            )
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
        where.add_argument("--socket", type=Path, help="control socket (overrides --config)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


# Start-up allocates ~100 000 objects and keeps nearly all of them (modules, classes, pydantic
# schemas): the collector's passes over them while the daemon imports and builds itself cost
# ~15 % of its time to READY and find next to nothing. So collection pauses from the start of
# `main` until the daemon is ready (or, for any other command, until its arguments are parsed).
_gc_paused = False


def _pause_gc() -> None:
    global _gc_paused  # noqa: PLW0603 - one switch for the process
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def _resume_gc() -> None:
    global _gc_paused  # noqa: PLW0603 - one switch for the process
    if _gc_paused:
        _gc_paused = False
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    _pause_gc()
    try:
        args = _build_parser().parse_args(argv)
        if args.command not in ("run", "demo"):
            _resume_gc()
        return _dispatch(args)
    finally:
        _resume_gc()


def _dispatch(args: argparse.Namespace) -> int:
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": lambda a: _run(a.config, duration=a.duration),
        "demo": _demo,
        "check-config": lambda a: _check_config(a.path),
        "hq": _hq,
        "label": _label,
        "scale": _scale,
        "ble": _ble,
    }
    try:
        return handlers.get(args.command, _diagnostic)(args)
    except KeyboardInterrupt:
        return 130


def _exit_code_for(exc: BaseException) -> int:
    from gateway.errors import (
        ConfigError,
        SchemaTooNewError,
        StorageCorruptError,
        StorageError,
        StorageInUseError,
    )

    if isinstance(exc, ConfigError | StorageInUseError):
        return EXIT_CONFIG
    if isinstance(exc, StorageCorruptError | SchemaTooNewError):
        return EXIT_DATAERR
    if isinstance(exc, StorageError):
        return EXIT_IOERR
    raise exc


def _check_config(path: Path) -> int:
    from gateway.config import load_config
    from gateway.errors import ConfigError

    try:
        settings, devices = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"{path}: OK — store {settings.store.id}, {len(devices)} enabled device(s): "
        + ", ".join(f"{d.name} ({d.config.driver})" for d in devices)
    )
    if not settings.mqtt.tls:
        print("warning: MQTT is PLAINTEXT (allow_plaintext = true)", file=sys.stderr)
    return EXIT_OK


def _demo_devices(data: dict[str, Any], label_images: Path | None, oepl_url: str | None) -> None:
    """The demo's ESL devices: the simulated labels' pictures in one folder per access point,
    or (``oepl_url``) the real esl.oepl driver against the demo's fake access point."""
    for device in data.get("devices", []):
        if device.get("driver") != "simulated.esl":
            continue
        if oepl_url is not None:
            device["driver"], device["options"] = "esl.oepl", {"url": oepl_url}
        elif label_images is not None:
            options = device.setdefault("options", {})
            options["image_dir"] = str(label_images / str(device.get("name")))


def _run(
    config_path: Path,
    *,
    duration: float | None,
    demo_interval: float | None = None,
    overrides: dict[str, Any] | None = None,
    demo_hq: Any = None,
    label_images: Path | None = None,
    oepl_url: str | None = None,
) -> int:
    from gateway.app import Gateway
    from gateway.clock import SystemClock
    from gateway.config import load_config, parse_config
    from gateway.drivers.registry import DriverRegistry
    from gateway.errors import ConfigError, GatewayError
    from gateway.logsetup import configure_logging

    registry = DriverRegistry.from_entry_points()
    try:
        if overrides is None:
            settings, devices = load_config(config_path, registry=registry)
        else:
            import tomllib

            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
            for section, values in overrides.items():
                data.setdefault(section, {}).update(values)
            _demo_devices(data, label_images, oepl_url)
            settings, devices = parse_config(data, source=str(config_path), registry=registry)
    except ConfigError as exc:
        configure_logging()
        _LOGGER.error("%s", exc)
        return EXIT_CONFIG
    configure_logging(settings.logging.level, settings.logging.levels)

    demo_ready = None
    if demo_interval is not None:
        from gateway.cli.demo import DEMO_SKUS
        from gateway.cli.live import bind_demo_labels, print_live_summary

        async def demo_ready(gateway: Gateway) -> None:
            extra = demo_hq.summary if demo_hq is not None else None
            gateway.spawn_extra("demo.summary", print_live_summary(gateway, demo_interval, extra))
            gateway.spawn_extra("demo.labels", bind_demo_labels(gateway, DEMO_SKUS))
            if demo_hq is not None:
                gateway.spawn_extra("demo.hq", demo_hq.run(gateway))

    async def on_ready(gateway: Gateway) -> None:
        _resume_gc()
        if demo_ready is not None:
            await demo_ready(gateway)

    gateway = Gateway(
        config_path=config_path,
        settings=settings,
        devices=devices,
        clock=SystemClock(sync=settings.clock.sync),
        registry=registry,
        on_ready=on_ready,
    )
    try:
        return asyncio.run(gateway.run(duration=duration))
    except GatewayError as exc:
        _LOGGER.error("%s", exc)
        return _exit_code_for(exc)
    except BaseExceptionGroup as group:
        # A task group may wrap the error that ended start-up; report the first one of ours.
        matched = group.subgroup(GatewayError)
        if matched is None:
            raise
        first = _first_leaf(matched)
        _LOGGER.error("%s", first)
        return _exit_code_for(first)


def _hq_tail(args: argparse.Namespace) -> int:
    from gateway.clock import SystemClock
    from gateway.errors import ConfigError, GatewayError
    from gateway.hq.tail import load_hq_config, tail
    from gateway.logsetup import configure_logging

    configure_logging()
    config_path, duration, quiet = args.config, args.duration, args.quiet
    try:
        settings = load_hq_config(
            config_path,
            database=args.database,
            share_group=args.share_group,
            client_id=args.client_id,
        )
    except ConfigError as exc:
        _LOGGER.error("%s", exc)
        return EXIT_CONFIG
    try:
        out = None if quiet else sys.stdout
        asyncio.run(tail(settings, clock=SystemClock(), out=out, duration=duration))
    except GatewayError as exc:
        _LOGGER.error("%s", exc)
        return _exit_code_for(exc)
    return EXIT_OK


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    for exc in group.exceptions:
        return _first_leaf(exc) if isinstance(exc, BaseExceptionGroup) else exc
    return group


def _demo(args: argparse.Namespace) -> int:
    from gateway.cli.demo import DemoHq, PrivateBroker

    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {
        "storage": {"path": str(state_dir / "gateway.db")},
        "control": {"socket": str(state_dir / "control.sock")},
    }
    fake_ap = _start_fake_access_point() if args.esl == "oepl" else None
    broker = PrivateBroker.start(state_dir)
    demo_hq = None
    if broker is None:
        print("demo: mosquitto is not installed; running without MQTT", file=sys.stderr)
        overrides["mqtt"] = {"enabled": False}
    else:
        overrides["mqtt"] = {
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "tls": False,
            "allow_plaintext": True,
            "health_interval_s": 10,
        }
        demo_hq = DemoHq(state_dir, broker.port)
        overrides["downlink"] = demo_hq.store_overrides
    try:
        with contextlib.ExitStack() as stack:
            path = args.config or stack.enter_context(
                resources.as_file(resources.files("gateway").joinpath("demo.toml"))
            )
            return _run(
                path,
                duration=args.duration,
                demo_interval=args.interval,
                overrides=overrides,
                demo_hq=demo_hq,
                # What the simulated labels show: <state-dir>/labels/<access point>/index.html
                label_images=state_dir / "labels",
                oepl_url=fake_ap[1] if fake_ap is not None else None,
            )
    finally:
        if broker is not None:
            broker.stop()
        if fake_ap is not None:
            _stop_fake_access_point(fake_ap[0])


def _stop_fake_access_point(child: subprocess.Popen[str]) -> None:
    child.terminate()
    child.wait(timeout=10)
    if child.stdout is not None:
        child.stdout.close()


def _start_fake_access_point() -> tuple[subprocess.Popen[str], str]:
    """The fake OpenEPaperLink AP in a child process (the core imports no driver package):
    eight 2.9" tags, 3.9 s of radio each, check-ins every 40 s. Returns it and its address."""
    child = subprocess.Popen(
        [sys.executable, "-m", "devices.simulated.oepl_ap", "--tags", "8"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    url = child.stdout.readline().strip()
    if not url.startswith("http://"):
        _stop_fake_access_point(child)
        raise SystemExit("demo: the fake OpenEPaperLink access point did not start")
    print(f"demo: esl.oepl against a fake OpenEPaperLink access point at {url}", file=sys.stderr)
    return child, url


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    from gateway.config import load_config
    from gateway.control.config import ControlConfig
    from gateway.errors import ConfigError

    try:
        settings, _ = load_config(args.config)
    except ConfigError:
        return ControlConfig().socket  # status must work even when the config is broken
    return settings.control.socket


def _label(args: argparse.Namespace) -> int:
    try:
        command, request = _label_request(args)
    except (OSError, ValueError) as exc:  # checked here: bad input is reported before sending
        print(f"storegw: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    answered, result = _ask(args, command, request)
    if not answered:
        return int(result)
    _print_label_result(args, result)
    return EXIT_OK


def _label_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.label_command == "preview":
        return "label.preview", {"sku": args.sku, "model": args.model}
    if args.label_command == "bind":
        return "label.bind", {"label": args.label, "sku": args.sku}
    if args.label_command == "flash":
        return "label.flash", {"label": args.label, "seconds": args.seconds}
    if args.label_command == "show":
        return "label.show", {"label": args.label}
    if args.label_command == "seed":
        from gateway.labels.bindings import read_binding_seed

        try:
            rows = read_binding_seed(args.file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{args.file}: {exc}") from exc
        return "label.seed", {"rows": [list(row) for row in rows]}
    return "label.unbind", {"label": args.label}


_JOB_STATE_NOTES = {
    "awaiting_model": "awaiting_model (drawn once the label reports its panel)",
    "queued": "queued (on its way to the label)",
}


def _print_label_result(args: argparse.Namespace, result: dict[str, Any]) -> None:
    import base64

    if args.label_command == "show":
        from gateway.cli.diagnostics import render_label

        print(json.dumps(result, indent=2, sort_keys=True) if args.json else render_label(result))
    elif args.label_command == "bind":
        print(f"label {result['label']} shows {result['sku']} (local override)")
        job_state = result.get("job_state")
        if job_state is not None:
            print(f"  its job: {_JOB_STATE_NOTES.get(job_state, job_state)}")
    elif args.label_command == "flash":
        print(f"label {args.label} flashing for {args.seconds:g} s (via {result['device']})")
    elif args.label_command == "seed":
        print(f"{result['bound']} label(s) bound, {result['unchanged']} already so")
        for skipped in result["skipped"]:
            print(f"  skipped {skipped['label']} -> {skipped['sku']}: {skipped['reason']}")
    elif args.label_command == "unbind":
        removed = result.get("removed")
        print(f"label {args.label} unbound" + (f" (was {removed['sku']})" if removed else ""))
    else:
        args.out.write_bytes(base64.b64decode(result["png_base64"]))
        price = result.get("price")
        shown = f"{price['price']} {price['currency']}" if price else "price unavailable"
        print(
            f"{args.out}: {args.sku} on {args.model} shows {shown} "
            f"(hash {result['content_hash'][:12]})"
        )


def _scale(args: argparse.Namespace) -> int:
    from gateway.cli.diagnostics import render_slot_reading
    from gateway.control.client import ControlClient
    from gateway.errors import ControlError, DaemonNotRunningError

    client = ControlClient(_socket_path(args))
    if args.scale_command == "read":
        command, request = "scale.read", {"slot": args.slot, "follow": args.follow}
    elif args.scale_command == "tare":
        command, request = (
            "scale.tare",
            {"slot": args.slot, "device": args.device, "force": args.force},
        )
    else:
        command, request = "scale.calibrate", {"slot": args.slot, "known_grams": args.known_grams}
    try:
        if args.scale_command == "read" and args.follow:
            return _follow(client, command, request, as_json=args.json)
        result = client.request_sync(command, request)
    except DaemonNotRunningError as exc:
        print(f"storegw: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except ControlError as exc:
        print(f"storegw: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    if args.json:
        print(json.dumps(result, sort_keys=True))
    elif args.scale_command == "read":
        print(render_slot_reading(result))
    elif args.scale_command == "tare":
        where = "on the device" if args.device else "in software"
        print(f"slot {args.slot} tared {where}: tare {result['tare_grams']:.1f}")
    else:
        print(f"slot {args.slot} calibrated: gain {result['gain']:.6f}")
    return EXIT_OK


def _ask(
    args: argparse.Namespace,
    command: str,
    request: dict[str, Any] | None,
    *,
    timeout: float = 5.0,
) -> tuple[bool, Any]:
    """(True, the daemon's answer), or (False, the exit code) with the reason printed."""
    from gateway.control.client import ControlClient
    from gateway.errors import ControlError, DaemonNotRunningError

    try:
        return True, ControlClient(_socket_path(args)).request_sync(
            command, request, timeout=timeout
        )
    except DaemonNotRunningError as exc:
        print(f"storegw: {exc}", file=sys.stderr)
        return False, EXIT_NOT_RUNNING
    except ControlError as exc:
        print(f"storegw: {exc}", file=sys.stderr)
        return False, EXIT_PROBLEM


def _ble(args: argparse.Namespace) -> int:
    from gateway.cli.presence_views import render_scan

    timeout = max(5.0, args.seconds + 10.0)
    answered, result = _ask(args, "ble.scan", {"seconds": args.seconds}, timeout=timeout)
    if not answered:
        return int(result)
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else render_scan(result))
    return EXIT_OK


def _follow(client: Any, command: str, request: dict[str, Any], *, as_json: bool) -> int:
    from gateway.cli.diagnostics import render_slot_reading

    async def follow() -> None:
        async for event in client.stream(command, request):
            print(json.dumps(event, sort_keys=True) if as_json else render_slot_reading(event))

    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, `| head`
        asyncio.run(follow())
    return EXIT_OK


def _hq(args: argparse.Namespace) -> int:
    if args.hq_command == "keygen":
        return _hq_keygen(args.out, args.kid)
    if args.hq_command == "push-prices":
        return _hq_push_prices(args)
    if args.hq_command == "cmd":
        return _hq_cmd(args)
    return _hq_tail(args)


def _hq_keygen(out: Path, kid: str) -> int:
    from gateway.hq.keys import generate_key

    try:
        public = generate_key(out, kid)
    except (OSError, ValueError) as exc:
        print(f"storegw: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    print(f"private key written to {out} (keep it at HQ; mode 0600)")
    print("add to every store's gateway.toml:")
    print(f'[downlink]\nhq_public_keys = {{ "{kid}" = "{public}" }}')
    print("and to HQ.toml:")
    print(f'[signing]\nkey_file = "{out}"\nkid = "{kid}"')
    return EXIT_OK


def _hq_push_prices(args: argparse.Namespace) -> int:
    from gateway.errors import GatewayError, LinkError
    from gateway.hq.push import PricePush, push_prices

    configure_logging_once()
    if args.full and args.file is None:
        print("storegw: --full needs a price list", file=sys.stderr)
        return EXIT_PROBLEM
    try:
        push = PricePush.load(
            args.config,
            args.file,
            promotions_file=args.promotions,
            cancel_promotions=args.cancel_promotion,
        )
        kind: Literal["full", "delta"] = "full" if args.full else "delta"
        if not args.no_wait:
            return _push_to_fleet(args, push, kind)
        sent = asyncio.run(
            push_prices(push, kind=kind, stores=args.store, groups=args.group, delete=args.delete)
        )
    except (GatewayError, OSError, ValueError) as exc:
        print(f"storegw: {exc}", file=sys.stderr)
        if isinstance(exc, LinkError):  # the broker was out of reach, or dropped the push
            return EXIT_IOERR
        return _exit_code_for(exc) if isinstance(exc, GatewayError) else EXIT_PROBLEM
    print(json.dumps(sent))
    return EXIT_OK


def _add_fleet_push_options(push: argparse.ArgumentParser) -> None:
    from gateway.hq import DEFAULT_DEADLINE_S

    push.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE_S,
        metavar="SECONDS",
        help="wait this long for the stores' receipts (exit 4 if any did not apply, 5 if any "
        f"refused; default {DEFAULT_DEADLINE_S:g})",
    )
    push.add_argument(
        "--wait-offline",
        action="store_true",
        help="keep waiting for offline and never-connected stores until the deadline (they "
        "get the batch when they reconnect)",
    )
    push.add_argument("--json", action="store_true", help="print the summary as JSON")
    push.add_argument(
        "--no-wait",
        action="store_true",
        help="publish only; print store -> version as JSON (no receipts, exit 0)",
    )


def _push_to_fleet(args: argparse.Namespace, push: Any, kind: Literal["full", "delta"]) -> int:
    from gateway.hq.fleet_view import ProgressView, render_summary
    from gateway.hq.push import push_to_fleet

    if not args.deadline > 0:
        raise ValueError("--deadline must be above 0 seconds")
    shown = sys.stderr if args.json else sys.stdout
    with ProgressView(shown) as view:
        summary = asyncio.run(
            push_to_fleet(
                push,
                kind=kind,
                stores=args.store,
                groups=args.group,
                delete=args.delete,
                deadline_s=args.deadline,
                wait_offline=args.wait_offline,
                on_progress=view.update,
            )
        )
    render_summary(summary, sys.stdout, as_json=args.json)
    return summary.exit_code


def _hq_cmd(args: argparse.Namespace) -> int:
    from gateway.errors import GatewayError
    from gateway.hq.cmd import parse_command_args, send_command
    from gateway.hq.tail import load_hq_config
    from gateway.sync.signing import Signer

    configure_logging_once()
    try:
        settings = load_hq_config(args.config)
        signer = None
        if settings.signing is not None:
            pem = settings.signing.key_file.read_bytes()
            signer = Signer.from_pem(settings.signing.kid, pem)
        reply = asyncio.run(
            send_command(
                settings,
                args.store,
                args.name,
                parse_command_args(args.args),
                signer=signer,
                timeout_s=args.timeout,
            )
        )
    except (GatewayError, OSError, ValueError) as exc:
        print(f"storegw: {exc}", file=sys.stderr)
        return _exit_code_for(exc) if isinstance(exc, GatewayError) else EXIT_PROBLEM
    print(json.dumps(reply, indent=2, sort_keys=True))
    return EXIT_OK if reply.get("ok") else EXIT_PROBLEM


def configure_logging_once() -> None:
    from gateway.logsetup import configure_logging

    configure_logging()


def _diagnostic(args: argparse.Namespace) -> int:
    from gateway.cli.diagnostics import (
        render_alerts,
        render_devices,
        render_labels,
        render_prices,
        render_slots,
        render_status,
    )
    from gateway.cli.presence_views import render_beacons, render_zones

    request_args: dict[str, Any] | None = None
    if getattr(args, "sku", None):
        request_args = {"sku": args.sku}
    if getattr(args, "state", None):
        request_args = {"state": args.state}
    if getattr(args, "health", False):
        request_args = {**(request_args or {}), "health": True}
    answered, result = _ask(args, args.command, request_args)
    if not answered:
        return int(result)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return EXIT_OK
    render = {
        "status": render_status,
        "devices": render_devices,
        "alerts": render_alerts,
        "prices": render_prices,
        "labels": render_labels,
        "slots": render_slots,
        "zones": render_zones,
        "beacons": render_beacons,
    }
    print(render[args.command](result))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
