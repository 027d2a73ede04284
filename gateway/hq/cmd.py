"""``storegw hq cmd STORE NAME [key=value ...]``: send a (signed) command, wait for the reply.

The reply comes back on ``{root}{store}/up/reply/{token}`` (under the store's own ``up/``
tree, as the store insists) with our correlation data. The command is re-sent with the same id
until a reply arrives: the store executes an id once and answers repeats with the stored reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from gateway.clock import SystemClock, isoformat_utc
from gateway.errors import LinkDownError, LinkError
from gateway.hq.tail import HqSettings
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Signer

__all__ = ["parse_command_args", "send_command"]


def parse_command_args(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` words; a value that parses as JSON is taken as JSON (numbers, lists)."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"argument {pair!r} is not key=value")
        try:
            args[key] = json.loads(value)
        except ValueError:
            args[key] = value
    return args


async def send_command(
    settings: HqSettings,
    store: str,
    name: str,
    args: Mapping[str, Any],
    *,
    signer: Signer | None,
    timeout_s: float = 30.0,
    resend_s: float = 5.0,
) -> dict[str, Any]:
    clock = SystemClock()
    token = secrets.token_hex(6)
    mqtt = settings.mqtt.model_copy(update={"client_id": f"storegw-hq-cmd-{token}"})
    # A clean session: a one-shot client's subscription must not outlive it at the broker.
    link = MqttLink(
        config=mqtt, store_id=store, boot=0, clock=clock, announce=False, session_expiry_s=0
    )
    reply_topic = f"{link.topic_root}up/reply/{token}"
    correlation = secrets.token_bytes(8)
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_reply(message: InboundMessage) -> None:
        if message.correlation_data == correlation:
            with contextlib.suppress(ValueError):
                replies.put_nowait(json.loads(message.payload))

    link.subscribe(f"up/reply/{token}", on_reply)
    now = clock.utc_now()
    payload = json.dumps(
        {
            "v": 1,
            "type": "command",
            "id": f"c-{token}",
            "name": name,
            "args": dict(args),
            "scope": {"stores": [store]},
            "issued_at": isoformat_utc(now),
            "valid_until": isoformat_utc(now + timedelta(seconds=max(60.0, 2 * timeout_s))),
        },
        separators=(",", ":"),
    ).encode()
    message = signer.wrap(payload) if signer is not None else payload
    task = asyncio.create_task(link.run(), name="hq.cmd.link")
    try:
        async with asyncio.timeout(timeout_s):
            await link.connected.wait()
            await asyncio.sleep(0.3)  # the reply subscription is in place
            while True:
                with contextlib.suppress(LinkError):
                    await link.publish(
                        f"{link.topic_root}down/cmd/{name}",
                        message,
                        response_topic=reply_topic,
                        correlation_data=correlation,
                    )
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(replies.get(), resend_s)
    except TimeoutError:
        raise LinkDownError(f"no reply from {store} to {name!r} within {timeout_s:.0f} s") from None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
