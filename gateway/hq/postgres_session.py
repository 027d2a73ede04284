"""The PostgreSQL sink's connection: made with the settings a custody consumer needs, checked
(a UTF8 database, the schema migrated), and its health — since when PostgreSQL has stored
nothing, unreachable or refusing every batch — which ``hq tail`` turns into exit 74."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from gateway.clock import Clock
from gateway.errors import ConfigError, ConfigIssue, StorageError, StorageUnavailableError
from gateway.hq.postgres_schema import migrate

__all__ = ["PostgresSession", "describe_url"]

_LOGGER = logging.getLogger(__name__)

# A session stalled in a batch's transaction (its consumer's host frozen, or cut off without a
# reset) holds the ledger rows of its keys, and every other consumer's batch touching one of
# them waits. PostgreSQL ends such a session after this (idle in transaction), or when its own
# TCP keepalives find the peer gone, and the batch rolls back: nothing was acked.
_STALLED_TRANSACTION = "60s"
_SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}
_CONNECT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    "application_name": "storegw-hq",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def describe_url(url: str) -> str:
    """``url`` without its password, for logs and errors."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable URL)"
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    return f"postgresql://{parts.get('user') or ''}@{host}:{port}/{parts.get('dbname') or ''}"


class PostgresSession:
    """One autocommit connection to HQ's database, made again after it is lost; and since
    when PostgreSQL has taken nothing (:attr:`unavailable_since`)."""

    def __init__(self, url: str, *, clock: Clock) -> None:
        try:
            self._given = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            issue = ConfigIssue("hq.database", f"not a valid PostgreSQL URL: {exc}")
            raise ConfigError("hq", [issue]) from None
        self._url = url
        self.name = describe_url(url)
        self._clock = clock
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self.connections = 0  # made so far: a new one may be another server (a failover)
        self.unavailable_since: float | None = None  # clock.monotonic() of the first failure

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """The live connection, or a new one (StorageUnavailableError if none can be made;
        ConfigError for a database that cannot hold any text)."""
        if self._connection is not None and not self._connection.closed:
            return self._connection
        # A database that stops answering (no RST: a partition, a frozen host) must fail, not
        # hang: libpq's TCP keepalives unless the URL says otherwise.
        defaults = {
            name: value for name, value in _CONNECT_DEFAULTS.items() if name not in self._given
        }
        try:
            # The COPY text is UTF-8 bytes, whatever PGCLIENTENCODING or the URL would say.
            connection = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, client_encoding="UTF8", **defaults
            )
        except psycopg.Error as exc:
            raise self.unavailable(exc) from None
        encoding = connection.info.parameter_status("server_encoding")
        if encoding != "UTF8":  # fixed when the database was made: a configuration error
            await connection.close()
            issue = ConfigIssue(
                "hq.database",
                f"the database's encoding is {encoding}; the stores' events may hold any "
                "text, which needs a UTF8 database (CREATE DATABASE … ENCODING 'UTF8')",
            )
            raise ConfigError("hq", [issue])
        try:
            for name, value in (
                ("idle_in_transaction_session_timeout", _STALLED_TRANSACTION),
                *_SERVER_KEEPALIVES.items(),
            ):
                await connection.execute("SELECT set_config(%s, %s, false)", (name, value))
            await migrate(connection, name=self.name)
        except psycopg.Error as exc:
            await connection.close()
            raise self.unavailable(exc) from None
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self.connections += 1
        return connection

    def unavailable(self, exc: psycopg.Error) -> StorageUnavailableError:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.unavailable_since is None:
            self.unavailable_since = self._clock.monotonic()
            _LOGGER.error(
                "PostgreSQL %s unreachable: nothing is stored or acknowledged until it is "
                "back (%s)",
                self.name,
                reason,
            )
        return StorageUnavailableError(self.name, reason)

    def refusing(self, error: StorageError) -> StorageError:
        """A batch refused while PostgreSQL answers (a privilege revoked, a read-only server,
        a constraint): no more custody than an outage, so it counts as one."""
        if self.unavailable_since is None:
            self.unavailable_since = self._clock.monotonic()
            _LOGGER.error(
                "PostgreSQL %s refuses batches: nothing is stored or acknowledged until it "
                "takes them again (%s)",
                self.name,
                error.reason.splitlines()[0] if error.reason else "",
            )
        return error

    def recovered(self) -> None:
        if self.unavailable_since is not None:
            down = self._clock.monotonic() - self.unavailable_since
            self.unavailable_since = None
            _LOGGER.warning("PostgreSQL %s storing again after %.1f s", self.name, down)

    async def drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                await connection.close()
