"""`storegw` pauses the garbage collector while it starts (see ``gateway/cli/main.py``) and
always gives it back: on every way out of ``main``, and never turning on a collector its
caller had turned off."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector_restored() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("collector_restored")
def test_a_short_command_leaves_the_collector_on() -> None:
    gc.enable()
    assert main(["check-config", str(ROOT / "config" / "demo.toml")]) == 0
    assert gc.isenabled()


@pytest.fixture
def root_logging_restored() -> Iterator[None]:
    """`storegw run` configures the root logger (level, handler): undone for the tests after."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("collector_restored", "root_logging_restored")
def test_a_run_that_fails_before_ready_leaves_the_collector_on(tmp_path: Path) -> None:
    gc.enable()
    broken = tmp_path / "broken.toml"
    broken.write_text("[store\n", encoding="utf-8")
    assert main(["run", "--config", str(broken)]) == 78
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_restored")
def test_bad_arguments_leave_the_collector_on() -> None:
    gc.enable()
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_restored")
def test_a_collector_the_caller_turned_off_stays_off() -> None:
    gc.disable()
    assert main(["check-config", str(ROOT / "config" / "demo.toml")]) == 0
    assert not gc.isenabled()
