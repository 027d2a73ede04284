"""Modbus RTU polling: 32 simulated transmitters on one 19 200-baud bus.

The simulated bus runs in a child process behind a ``socket://`` line (TCP carrying the RTU
bytes; a pty refuses some parity settings on some kernels) and reproduces the wire's timing (each
frame takes its characters' time, 3.5-character silences between frames); the production
``modbus.rtu`` driver polls it back to back in this process. Printed: the achieved poll rate,
the bus's theoretical ceiling for these frames, and their ratio.

Ceiling per poll: request 8 bytes + reply (5 + 2 x registers) bytes, plus a 3.5-character gap
before each of the two frames, each character 1 start + 8 data + parity + stop bits (11 with
parity, 10 without).

    python bench/modbus.py [--units 32] [--baud 19200] [--parity E] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.scale.modbus import ModbusRtuOptions, ModbusRtuScale
from devices.scale.modbus_protocol import BUILTIN_MODELS, read_response_size
from devices.simulated.modbus_device import ModbusBusSimulator, SimulatedTransmitter
from devices.simulated.timeline import WeightTimeline
from gateway.clock import SystemClock
from gateway.drivers.contracts import DriverContext, ScaleStatus, WeightSample

MODEL = "dini-argeo-dgt"


async def serve(units: int, baud: int, parity: str) -> None:
    transmitters = [
        SimulatedTransmitter(
            unit_id=unit,
            register_map=BUILTIN_MODELS[MODEL],
            timeline=WeightTimeline.constant(100.0 * unit),
        )
        for unit in range(1, units + 1)
    ]
    async with ModbusBusSimulator(
        transmitters, line="socket", baudrate=baud, parity=parity != "N"
    ) as bus:
        print(bus.url, flush=True)
        await asyncio.Event().wait()


async def measure(url: str, units: int, baud: int, parity: str, seconds: float) -> None:
    options = ModbusRtuOptions.model_validate(
        {
            "port": url,
            "baudrate": baud,
            "parity": parity,
            "poll_rate_hz": 1000,  # as fast as the bus allows
            "timeout_s": 0.2,
            "devices": [
                {"channel": f"shelf-{unit}", "unit_id": unit, "model": MODEL}
                for unit in range(1, units + 1)
            ],
        }
    )
    driver = ModbusRtuScale(DriverContext("bench", SystemClock()), options)
    await driver.open()
    ok = errors = 0
    readings = driver.readings()
    cpu_start = 0.0
    try:
        start = time.monotonic()
        warm_until = start + 1.0
        measuring_since: float | None = None
        async for reading in readings:
            now = time.monotonic()
            if measuring_since is None:
                if now < warm_until:
                    continue
                measuring_since = now
                cpu_start = time.process_time()
                continue
            if isinstance(reading, WeightSample):
                if reading.status is ScaleStatus.OK:
                    ok += 1
                else:
                    errors += 1
            if now - measuring_since >= seconds:
                break
        elapsed = time.monotonic() - measuring_since if measuring_since else 0.0
        cpu = time.process_time() - cpu_start
    finally:
        with contextlib.suppress(Exception):
            await readings.aclose()  # type: ignore[attr-defined]
        await driver.close()
    _first, count = BUILTIN_MODELS[MODEL].block()
    reply = read_response_size(count)
    bits = 1 + 8 + (0 if parity == "N" else 1) + 1
    chars = 8 + reply + 2 * 3.5
    ceiling = baud / (bits * chars)
    achieved = ok / elapsed
    print(f"modbus polling: {units} units on one {baud}-baud bus, 8{parity}1 ({bits} bits/char)")
    print(f"  frames: request 8 B + reply {reply} B + 2 x 3.5-char gaps = {chars:g} chars/poll")
    print(f"  theoretical ceiling: {ceiling:.1f} polls/s ({ceiling / units:.2f} per unit)")
    print(
        f"  achieved:            {achieved:.1f} polls/s ({achieved / units:.2f} per unit), "
        f"{errors} failed polls, over {elapsed:.1f} s"
    )
    print(f"  ratio: {achieved / ceiling:.1%} of the ceiling; driver CPU {cpu / elapsed:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--baud", type=int, default=19_200)
    parser.add_argument("--parity", choices=["N", "E", "O"], default="E")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.units, args.baud, args.parity))
        return
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            f"--units={args.units}",
            f"--baud={args.baud}",
            f"--parity={args.parity}",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url.startswith("socket://"):
            raise SystemExit("the simulated bus did not start")
        asyncio.run(measure(url, args.units, args.baud, args.parity, args.seconds))
    finally:
        server.terminate()
        server.wait(timeout=5)


if __name__ == "__main__":
    main()
