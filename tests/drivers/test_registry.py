"""The driver registry: names, lazy entry-point loading, broken plugins as config errors."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.drivers.contracts import DeviceFamily, Driver, DriverContext, DriverPlugin
from gateway.drivers.registry import ENTRY_POINT_GROUP, DriverRegistry
from gateway.errors import DriverConfigError


class NoOptions(BaseModel):
    pass


def _never_called(context: DriverContext, options: NoOptions) -> Driver:
    raise AssertionError("the registry never builds drivers")


PLUGIN = DriverPlugin(family=DeviceFamily.BEACON, options_model=NoOptions, factory=_never_called)
NOT_A_PLUGIN = object()


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_names_merge_entry_points_and_given_plugins_sorted() -> None:
    registry = DriverRegistry(
        {"zeta": entry_point("zeta", f"{__name__}:PLUGIN")}, plugins={"alpha": PLUGIN}
    )
    assert registry.names() == ("alpha", "zeta")
    assert "alpha" in registry
    assert "zeta" in registry
    assert "nope" not in registry
    assert registry.load("alpha") is PLUGIN


def test_unknown_name_is_a_key_error() -> None:
    registry = DriverRegistry(plugins={"alpha": PLUGIN})
    with pytest.raises(KeyError):
        registry.load("nope")


def test_entry_point_is_loaded_lazily_and_cached() -> None:
    registry = DriverRegistry({"beacon": entry_point("beacon", f"{__name__}:PLUGIN")})
    assert registry.load("beacon") is PLUGIN
    assert registry.load("beacon") is PLUGIN


def test_an_unused_group_finds_nothing() -> None:
    assert DriverRegistry.from_entry_points("storegw.tests.no-such-group").names() == ()


@pytest.mark.parametrize(
    "value",
    ["storegw_no_such_module_xyz:PLUGIN", f"{__name__}:NO_SUCH_ATTRIBUTE"],
)
def test_a_plugin_that_fails_to_import_is_a_config_error(value: str) -> None:
    registry = DriverRegistry({"broken": entry_point("broken", value)})
    with pytest.raises(DriverConfigError, match="failed to import") as caught:
        registry.load("broken")
    assert value in str(caught.value)
    assert caught.value.__cause__ is not None


def test_a_plugin_module_that_raises_on_import_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "storegw_test_exploding_plugin.py").write_text(
        "raise RuntimeError('missing native library')\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(tmp_path)
    registry = DriverRegistry({"boom": entry_point("boom", "storegw_test_exploding_plugin:PLUGIN")})
    with pytest.raises(DriverConfigError, match="missing native library"):
        registry.load("boom")


def test_an_entry_point_that_is_not_a_driver_plugin_is_a_config_error() -> None:
    registry = DriverRegistry({"wrong": entry_point("wrong", f"{__name__}:NOT_A_PLUGIN")})
    for _ in range(2):  # not cached: every load reports it
        with pytest.raises(DriverConfigError, match="not a DriverPlugin"):
            registry.load("wrong")
