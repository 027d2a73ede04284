"""``down/cmd/{name}``: commands from HQ, executed exactly once, answered on a response topic.

A command payload (signed like price batches, docs/protocol.md)::

    {"v": 1, "type": "command", "id": "c-7f3a", "name": "ping", "args": {},
     "scope": {"stores": ["store-0042"]}, "issued_at": "...", "valid_until": "..."}

arrives with the MQTT 5 response topic (which must lie under this store's own ``up/reply/``,
otherwise the command is refused: a store never publishes where HQ did not grant it, nor onto
its own data streams) and correlation data. The reply
``{v, type: "reply", id, name, ok, result | error}`` goes to the response topic with the same
correlation data. Executed ids and their replies are stored, so a
redelivered state-changing command gets its stored reply and is never executed twice; its own
state changes commit in the same transaction as that record. Read-only commands are simply
run again (recording them would let anyone take an id first). A state-changing command must
carry ``valid_until`` within the record's retention of ``issued_at``, so it cannot be replayed
once its record is gone.

State-changing commands must be signed whenever HQ keys are configured; read-only ones
(``ping``, ``resync``, ``rebirth``) may come unsigned, but a signature they carry must verify.
Features declare their own commands (:class:`CommandSpec`, ``Feature.hq_commands``):
``bind``/``unbind``/``flash`` in :mod:`gateway.labels.commands`, ``slots`` in
:mod:`gateway.shelves.service`; the built-ins here (:func:`builtin_commands`) are the link's own.
:class:`~gateway.sync.connection.HqConnection` registers both on the processor.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from gateway.alerts import Alerts, Severity
from gateway.clock import Clock, isoformat_utc
from gateway.errors import (
    DownlinkError,
    LinkError,
    MalformedMessageError,
    SignatureError,
    StorageError,
)
from gateway.store.database import Database
from gateway.sync.inbound import RefusalCounter, load_json
from gateway.sync.link import InboundMessage, MqttLink
from gateway.sync.signing import Verifier, check_scope, check_validity

__all__ = [
    "CommandProcessor",
    "CommandRequest",
    "CommandResult",
    "CommandSpec",
    "builtin_commands",
]

_LOGGER = logging.getLogger(__name__)

COMMAND_ALERT = "downlink.command"


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1]
    type: Literal["command"]
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    name: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,31}$")
    args: dict[str, Any] = Field(default_factory=dict)
    scope: dict[str, list[str]]
    issued_at: AwareDatetime
    valid_until: AwareDatetime | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """A handler's answer: the reply's ``result`` and the state changes that must commit
    together with the record that the command ran."""

    result: Mapping[str, Any] = field(default_factory=dict)
    statements: Sequence[tuple[str, Sequence[Any]]] = ()


CommandHandler = Callable[[CommandRequest], Awaitable[CommandResult]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    handler: CommandHandler
    changes_state: bool  # then a signature is required whenever HQ keys are configured
    help: str = ""


class CommandProcessor:
    def __init__(
        self,
        *,
        database: Database,
        clock: Clock,
        verifier: Verifier,
        store_id: str,
        groups: Sequence[str] = (),
        alerts: Alerts | None = None,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self._db = database
        self._clock = clock
        self._verifier = verifier
        self._store_id = store_id
        self._groups = tuple(groups)
        self._retention = retention
        self._commands: dict[str, CommandSpec] = {}
        self._link: MqttLink | None = None
        self.executed = 0
        self.replayed = 0
        self.refusals = RefusalCounter(
            COMMAND_ALERT,
            Severity.WARNING,
            "a command from down/cmd was refused",
            alerts=alerts,
            clock=clock,
        )

    @property
    def refused(self) -> int:
        return self.refusals.refused

    def register(self, spec: CommandSpec) -> None:
        if spec.name in self._commands:
            raise ValueError(f"command {spec.name!r} is registered twice")
        self._commands[spec.name] = spec

    @property
    def names(self) -> list[str]:
        return sorted(self._commands)

    def attach(self, link: MqttLink) -> None:
        self._link = link
        link.subscribe("down/cmd/+", self.on_message)

    async def on_message(self, message: InboundMessage) -> None:
        """Answer a command (the link acks it once this returns). A refused command gets an
        error reply when it can be answered safely, and an alert; an unreadable one is
        answered too, then raises MalformedMessageError (the link acks and counts it)."""
        reply_to = message.response_topic
        if reply_to is not None and not self._own_reply_topic(reply_to):
            await self._refuse(f"response topic {reply_to!r} is outside this store's up/reply/")
            return
        try:
            # Unsigned passes here only to be refused below unless the command is read-only.
            payload, kid = self._verifier.open(message.payload, allow_unsigned=True)
            # The wrapper's payload is read as strictly as the wrapper (pydantic's own JSON
            # parser would take NaN, Infinity and 1e400 into args).
            load_json(payload)
            request = CommandRequest.model_validate_json(payload)
            check_scope(request.scope, self._store_id, self._groups)
            check_validity(request.issued_at, request.valid_until, self._clock)
        except MalformedMessageError as exc:  # answered, then counted by the link
            await self._reply(reply_to, message.correlation_data, {"ok": False, "error": str(exc)})
            raise
        except (SignatureError, ValidationError) as exc:
            reason = str(exc).splitlines()[0] if isinstance(exc, ValidationError) else str(exc)
            await self._refuse(f"command refused: {reason}")
            await self._reply(reply_to, message.correlation_data, {"ok": False, "error": reason})
            return
        topic_name = message.topic.rsplit("/", 1)[-1]
        spec = self._commands.get(request.name)
        error = None
        if topic_name != request.name:
            error = f"topic names command {topic_name!r}, payload {request.name!r}"
        elif spec is None:
            error = f"unknown command {request.name!r} (known: {', '.join(self.names)})"
        elif spec.changes_state and self._verifier.signed and kid is None:
            error = f"command {request.name!r} changes state and must be signed"
        elif spec.changes_state and not self._fresh_enough(request):
            error = (
                f"a state-changing command needs valid_until within "
                f"{self._retention.days} days of issued_at (so it cannot be replayed later)"
            )
        if error is not None:
            await self._refuse(error)
            body = {"id": request.id, "name": request.name, "ok": False, "error": error}
            await self._reply(reply_to, message.correlation_data, body)
            return
        assert spec is not None
        reply = await self._execute_once(spec, request)
        await self._reply(reply_to, message.correlation_data, reply)

    def _fresh_enough(self, request: CommandRequest) -> bool:
        until = request.valid_until
        return until is not None and until - request.issued_at <= self._retention

    async def _execute_once(self, spec: CommandSpec, request: CommandRequest) -> dict[str, Any]:
        if not spec.changes_state:
            # Read-only commands are simply run again: recording them would let anyone who
            # can publish take an id before HQ's real (signed) command uses it.
            try:
                outcome = await spec.handler(request)
            except DownlinkError as exc:
                return {"id": request.id, "name": spec.name, "ok": False, "error": str(exc)}
            self.executed += 1
            return {"id": request.id, "name": spec.name, "ok": True, "result": outcome.result}
        row = await self._db.fetchone(
            "SELECT name, reply FROM commands_done WHERE id = ?", (request.id,)
        )
        if row is not None:
            if row["name"] != spec.name:
                error = f"id {request.id!r} was used by command {row['name']!r}"
                return {"id": request.id, "name": spec.name, "ok": False, "error": error}
            self.replayed += 1
            _LOGGER.info("command %s (%s) already executed: stored reply", request.id, spec.name)
            stored: dict[str, Any] = json.loads(row["reply"])
            return stored
        try:
            outcome = await spec.handler(request)
            reply = {"id": request.id, "name": spec.name, "ok": True, "result": outcome.result}
            statements = list(outcome.statements)
        except DownlinkError as exc:  # the command's own refusal: stored like a success
            reply = {"id": request.id, "name": spec.name, "ok": False, "error": str(exc)}
            statements = []
        await self._db.submit_atomic(
            [
                *statements,
                (
                    "INSERT INTO commands_done (id, name, reply, executed_at) VALUES (?, ?, ?, ?)",
                    (
                        request.id,
                        spec.name,
                        json.dumps(reply, separators=(",", ":"), default=str),
                        isoformat_utc(self._clock.utc_now()),
                    ),
                ),
            ]
        )
        self.executed += 1
        _LOGGER.info("command %s (%s) executed", request.id, spec.name)
        return reply

    def _own_reply_topic(self, topic: str) -> bool:
        """Replies go only under ``{root}up/reply/``: never onto the store's data streams."""
        if self._link is None:
            return False
        own = f"{self._link.topic_root}up/reply/"
        return topic.startswith(own) and len(topic) > len(own) and not set(topic) & {"+", "#"}

    async def _reply(
        self, topic: str | None, correlation: bytes | None, body: Mapping[str, Any]
    ) -> None:
        if topic is None or self._link is None or not self._own_reply_topic(topic):
            return
        payload = json.dumps({"v": 1, "type": "reply", **body}, separators=(",", ":"), default=str)
        try:
            await self._link.publish(topic, payload.encode(), correlation_data=correlation)
        except LinkError as exc:  # the stored reply goes out when HQ asks again
            _LOGGER.warning("reply to %s not sent: %s", topic, exc)

    async def _refuse(self, reason: str) -> None:
        await self.refusals.refuse(reason)

    async def run(self) -> None:
        """Task ``commands``: forget executed ids beyond the retention, hourly."""
        while True:
            try:
                await self.prune()
            except StorageError as exc:
                _LOGGER.warning("command record upkeep: %s", exc)
            await asyncio.sleep(3600)

    async def prune(self) -> None:
        cutoff = isoformat_utc(self._clock.utc_now() - self._retention)
        await self._db.submit("DELETE FROM commands_done WHERE executed_at < ?", (cutoff,))

    def status(self) -> dict[str, Any]:
        return {
            "commands": self.names,
            "executed": self.executed,
            "replayed": self.replayed,
            "refused": self.refused,
            "last_refusal": self.refusals.status()["last_reason"],
        }


def builtin_commands(
    *,
    link: MqttLink,
    announce_prices: Callable[[], Awaitable[dict[str, Any] | None]],
    describe: Callable[[], Awaitable[dict[str, Any]]],
) -> list[CommandSpec]:
    """``ping`` (who and how is this store), ``resync`` (re-announce the price version on
    ``up/sync``), ``rebirth`` (publish the retained birth again). None changes state."""

    async def ping(_request: CommandRequest) -> CommandResult:
        return CommandResult({"pong": True, **await describe()})

    async def resync(_request: CommandRequest) -> CommandResult:
        sent = await announce_prices()
        if sent is None:
            raise DownlinkError("link down: sync announcement not sent")
        return CommandResult(
            {"have_version": sent["have_version"], "held_versions": sent["held_versions"]}
        )

    async def rebirth(_request: CommandRequest) -> CommandResult:
        try:
            await link.rebirth()
        except LinkError as exc:
            raise DownlinkError(f"birth not published: {exc}") from exc
        return CommandResult({"state_topic": link.state_topic})

    return [
        CommandSpec("ping", ping, changes_state=False, help="liveness and identity"),
        CommandSpec("resync", resync, changes_state=False, help="re-announce price version"),
        CommandSpec("rebirth", rebirth, changes_state=False, help="re-publish retained birth"),
    ]
