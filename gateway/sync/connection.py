"""The store's connection to HQ, assembled: the MQTT link and the uplink draining the outbox
through it, the command processor on ``down/cmd/+`` with the link's built-in commands and the
features' own, the account of messages refused unread (``downlink.malformed``: every
``down/`` message ends in an ack, so what no handler takes is counted and alerted), the
expiry of quiet refusal alerts and the ``up/health`` publisher.

The daemon builds it when ``[mqtt] enabled``, lets the features that read ``down/`` topics
attach to :attr:`HqConnection.link`, then calls :meth:`HqConnection.serve_commands` and spawns
:meth:`HqConnection.tasks` in its root task group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from gateway.alerts import Alerts, Severity
from gateway.clock import Clock
from gateway.store.database import Database
from gateway.store.outbox import Outbox
from gateway.sync.commands import CommandProcessor, CommandSpec, builtin_commands
from gateway.sync.config import MqttConfig
from gateway.sync.health import publish_health
from gateway.sync.inbound import MALFORMED_ALERT, RefusalCounter, expire_refusals
from gateway.sync.link import InboundMessage
from gateway.sync.signing import Verifier
from gateway.sync.uplink import connect_outbox
from gateway.wire.messages import HealthSnapshot

__all__ = ["HqConnection"]

_Task = Callable[[], Coroutine[Any, Any, None]]


class HqConnection:
    def __init__(
        self,
        *,
        database: Database,
        outbox: Outbox,
        alerts: Alerts,
        clock: Clock,
        config: MqttConfig,
        store_id: str,
        verifier: Verifier,
        groups: Sequence[str],
    ) -> None:
        self._config = config
        self.link, self.uplink = connect_outbox(
            outbox, config=config, store_id=store_id, boot=database.boot, clock=clock, alerts=alerts
        )
        self.commands = CommandProcessor(
            database=database,
            clock=clock,
            verifier=verifier,
            store_id=store_id,
            groups=groups,
            alerts=alerts,
        )
        self.malformed = RefusalCounter(
            MALFORMED_ALERT,
            Severity.WARNING,
            "a message from HQ was refused unread",
            alerts=alerts,
            clock=clock,
        )
        self.link.on_refused = self._count_refused

    async def _count_refused(
        self, topic_filter: str, _message: InboundMessage, reason: str
    ) -> None:
        await self.malformed.refuse(reason, topic=topic_filter)

    def serve_commands(
        self,
        commands: Iterable[CommandSpec],
        *,
        announce_prices: Callable[[], Awaitable[dict[str, Any] | None]],
        describe: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        """Register the built-in commands (``ping`` answers with ``describe()``, ``resync``
        calls ``announce_prices()``) and ``commands``, and take ``down/cmd/+``."""
        builtins = builtin_commands(
            link=self.link, announce_prices=announce_prices, describe=describe
        )
        for spec in (*builtins, *commands):
            self.commands.register(spec)
        self.commands.attach(self.link)

    def tasks(
        self,
        *,
        refusals: Sequence[RefusalCounter],
        health: Callable[[], Awaitable[HealthSnapshot]],
    ) -> Mapping[str, _Task]:
        """The tasks to spawn, by name: ``refusals`` are the features' own refusal counts
        (expired with the link's), ``health`` gives each ``up/health`` snapshot."""
        counters = [self.malformed, self.commands.refusals, *refusals]
        interval_s = self._config.health_interval_s
        return {
            "commands": self.commands.run,
            "downlink.refusals": lambda: expire_refusals(counters),
            "mqtt.link": self.link.run,
            "uplink": self.uplink.run,
            "health": lambda: publish_health(self.link, health, interval_s=interval_s),
        }

    def status(self) -> dict[str, Any]:
        """The connection's part of the ``mqtt`` status block."""
        return {
            "link": self.link.stats.as_dict(),
            "last_hq_ack": self.uplink.last_ack,
            "parked_streams": dict(self.uplink.parked),
            "malformed": self.malformed.status(),
        }
