"""Enrolment by HQ: the signed ``enrol`` command adds store tags (by beacon id) and devices (by
identity resolving key), or removes what HQ enrolled before; kept in SQLite (migration 14) and
merged with the ``[presence]`` file's own, which HQ can neither replace nor remove.

Command arguments::

    {"tags": [{"name": "cart-17", "beacon": "ibeacon:<uuid>:100:17"}],
     "identity_keys": [{"name": "app-user-1", "irk": "<32 hex>"}],
     "remove": ["cart-3"]}

Anything malformed refuses the whole command with the reason (nothing changes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, ValidationError

from gateway.errors import CommandRefusedError
from gateway.presence.config import NAME_PATTERN, IdentityKeyConfig, PresenceConfig, TagConfig
from gateway.section import ConfigSection
from gateway.store.database import Database

__all__ = ["Enrolled", "EnrolmentBook", "EnrolmentUpdate", "decide_enrolment", "merged"]

Statement = tuple[str, Sequence[Any]]

_UPSERT = (
    "INSERT INTO presence_enrolment (name, kind, value, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, value = excluded.value, "
    "updated_at = excluded.updated_at"
)
_DELETE = "DELETE FROM presence_enrolment WHERE name = ?"
_MAX_ITEMS = 10_000


class EnrolmentUpdate(ConfigSection):
    tags: list[TagConfig] = Field(default_factory=list)
    identity_keys: list[IdentityKeyConfig] = Field(default_factory=list)
    remove: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Enrolled:
    """Everything enrolled, file and HQ together: beacon id -> tag name, key name -> IRK."""

    tags: Mapping[str, str]
    keys: Mapping[str, bytes]

    @property
    def names(self) -> set[str]:
        return set(self.tags.values()) | set(self.keys)


def decide_enrolment(
    args: Mapping[str, Any], config: PresenceConfig, enrolled_by_hq: Mapping[str, tuple[str, str]]
) -> tuple[EnrolmentUpdate, list[str]]:
    """Validate HQ's arguments against the file and what HQ enrolled before; returns the
    update and the names it removes. CommandRefusedError names the problem."""
    try:
        update = EnrolmentUpdate.model_validate(dict(args))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CommandRefusedError(f"enrol: {where}: {first['msg']}") from None
    count = len(update.tags) + len(update.identity_keys) + len(update.remove)
    if count == 0:
        raise CommandRefusedError("enrol: nothing to enrol or remove")
    if count > _MAX_ITEMS:
        raise CommandRefusedError(f"enrol: {count} entries in one command (at most {_MAX_ITEMS})")
    local = {tag.name for tag in config.tags} | {key.name for key in config.identity_keys}
    local_beacons = {tag.beacon for tag in config.tags} | {b.beacon for b in config.fixed_beacons}
    names = [tag.name for tag in update.tags] + [key.name for key in update.identity_keys]
    seen: set[str] = set()
    for name in names + update.remove:
        if name in seen:
            raise CommandRefusedError(f"enrol: {name!r} appears twice")
        seen.add(name)
        if name in local:
            raise CommandRefusedError(f"enrol: {name!r} is enrolled by the store's own file")
    for tag in update.tags:
        if tag.beacon in local_beacons:
            raise CommandRefusedError(f"enrol: {tag.beacon} is configured locally")
    return update, [name for name in update.remove if name in enrolled_by_hq]


class EnrolmentBook:
    """What HQ enrolled, in SQLite."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def load(self) -> dict[str, tuple[str, str]]:
        """name -> (kind, value) of HQ's enrolments."""
        rows = await self._db.fetchall("SELECT name, kind, value FROM presence_enrolment")
        return {str(row["name"]): (str(row["kind"]), str(row["value"])) for row in rows}

    @staticmethod
    def statements(update: EnrolmentUpdate, removed: list[str], now: str) -> list[Statement]:
        statements: list[Statement] = [(_DELETE, (name,)) for name in removed]
        statements += [(_UPSERT, (tag.name, "tag", tag.beacon, now)) for tag in update.tags]
        statements += [
            (_UPSERT, (key.name, "key", key.irk.lower(), now)) for key in update.identity_keys
        ]
        return statements


def merged(config: PresenceConfig, by_hq: Mapping[str, tuple[str, str]]) -> Enrolled:
    """The file's enrolments and HQ's together."""
    tags = {tag.beacon: tag.name for tag in config.tags}
    keys = {key.name: bytes.fromhex(key.irk) for key in config.identity_keys}
    for name, (kind, value) in by_hq.items():
        if kind == "tag":
            tags.setdefault(value, name)
        else:
            keys.setdefault(name, bytes.fromhex(value))
    return Enrolled(tags, keys)
