"""The label feature's commands from HQ (``down/cmd/{name}``): ``bind``, ``unbind`` and
``flash``, registered on the :class:`~gateway.sync.commands.CommandProcessor`. Each changes
state or acts on the shop floor, so it must be signed whenever HQ keys are configured."""

from __future__ import annotations

from collections.abc import Callable

from gateway.errors import CommandRefusedError
from gateway.labels.bindings import LabelBindings
from gateway.labels.directory import LabelDirectory
from gateway.sync.commands import CommandRequest, CommandResult, CommandSpec

__all__ = ["binding_commands", "flash_command"]


def binding_commands(bindings: LabelBindings) -> list[CommandSpec]:
    """``bind`` {label, sku} and ``unbind`` {label}: state-changing, so signed when HQ keys
    are configured. Both are idempotent, so a crash between the change and the command's
    record only means doing nothing again."""

    async def bind(request: CommandRequest) -> CommandResult:
        label, sku = request.args.get("label"), request.args.get("sku")
        if not isinstance(label, str) or not isinstance(sku, str):
            raise CommandRefusedError("bind needs args {label, sku} (strings)")
        return CommandResult((await bindings.bind(label, sku, "hq")).as_dict())

    async def unbind(request: CommandRequest) -> CommandResult:
        label = request.args.get("label")
        if not isinstance(label, str):
            raise CommandRefusedError("unbind needs args {label} (a string)")
        removed = await bindings.unbind(label, "hq")
        return CommandResult({"removed": removed.as_dict() if removed is not None else None})

    return [
        CommandSpec("bind", bind, changes_state=True, help="show SKU on label"),
        CommandSpec("unbind", unbind, changes_state=True, help="label shows no SKU"),
    ]


def flash_command(
    directory: LabelDirectory, driver_of: Callable[[str], object | None]
) -> CommandSpec:
    """``flash`` {label, seconds?}: blink a label's LED so staff can find it. Signed when HQ
    keys are configured (it acts on the shop floor)."""

    async def flash(request: CommandRequest) -> CommandResult:
        label, seconds = request.args.get("label"), request.args.get("seconds", 10.0)
        if not isinstance(label, str) or not isinstance(seconds, int | float):
            raise CommandRefusedError("flash needs args {label, seconds?}")
        return CommandResult(await directory.flash(driver_of, label, float(seconds)))

    return CommandSpec("flash", flash, changes_state=True, help="blink a label's LED")
