"""HQ fixtures: one real PostgreSQL server for the session (tests/support/postgres.py), a new
database for each test that asks for one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server (started again if a test stopped it)."""
    postgres_server.ensure_running()
    return postgres_server.create_database()
