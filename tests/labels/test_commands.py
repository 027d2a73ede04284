"""The label feature's commands from HQ (bind, unbind) through the store's command processor
on a real broker: signed, refused when the label shows another SKU."""

from __future__ import annotations

from pathlib import Path

from gateway.clock import FakeClock
from gateway.hq.cmd import send_command
from gateway.labels.bindings import LabelBindings
from gateway.labels.commands import binding_commands
from gateway.store import Database
from gateway.store.outbox import Outbox
from gateway.sync.commands import CommandSpec
from tests.support.broker import Broker
from tests.sync.command_harness import SIGNER, hq_settings, store
from tests.waiting import patience


def _bindings(db: Database, outbox: Outbox, clock: FakeClock) -> list[CommandSpec]:
    return binding_commands(LabelBindings(db, outbox, clock))


async def test_hq_binds_labels_with_signed_commands(tmp_path: Path, mosquitto: Broker) -> None:
    settings = hq_settings(mosquitto)
    async with store(tmp_path, mosquitto, specs=_bindings):
        args = {"label": "L-7", "sku": "4006381333931"}
        reply = await send_command(
            settings, "s1", "bind", args, signer=SIGNER, timeout_s=patience(20)
        )
        assert reply["ok"] is True
        assert reply["result"]["sku"] == "4006381333931"
        unsigned = await send_command(
            settings, "s1", "bind", args, signer=None, timeout_s=patience(20)
        )
        assert unsigned["ok"] is False
        assert "must be signed" in unsigned["error"]
        other = {"label": "L-7", "sku": "4006381333948"}
        refused = await send_command(
            settings, "s1", "bind", other, signer=SIGNER, timeout_s=patience(20)
        )
        assert refused["ok"] is False
        assert "unbind it before" in refused["error"]
        gone = await send_command(settings, "s1", "unbind", {"label": "L-7"}, signer=SIGNER)
        assert gone["result"]["removed"]["sku"] == "4006381333931"
