"""Logging: journald gets syslog priority prefixes and no timestamps of its own."""

from __future__ import annotations

import logging

import pytest

from gateway.logsetup import configure_logging, running_under_journald


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("gateway.drivers").setLevel(logging.NOTSET)


def test_journald_lines_carry_priority_and_no_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", {"gateway.drivers": "WARNING"}, journald=True)
    logging.getLogger("gateway.app").warning("went %s", "degraded")
    logging.getLogger("gateway.drivers").info("hidden by the per-module level")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("gateway.app").exception("failed")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "<4>gateway.app: went degraded"
    assert lines[1] == "<3>gateway.app: failed"
    assert all(line.startswith("<3>") for line in lines[1:])  # traceback stays one priority
    assert not any("hidden" in line for line in lines)


def test_terminal_lines_have_time_and_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", journald=False)
    logging.getLogger("gateway.x").debug("hello")
    line = capsys.readouterr().err.strip()
    assert line.endswith("DEBUG   gateway.x: hello")
    assert line[2] == ":"  # HH:MM:SS prefix


def test_journald_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert not running_under_journald()
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert running_under_journald()
