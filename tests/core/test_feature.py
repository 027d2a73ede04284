"""gateway/feature.py: every feature declares its edges, and they live in its own package.

The features are built the way the daemon builds them, on real SQLite; what each declares —
section, control commands, HQ commands, tasks, status block — is checked against what the
daemon has always served (tests/control, tests/cli and the daemon tests call them through
the socket), and each control handler is checked to live in its feature's package.
"""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.alerts import Alerts
from gateway.clock import FakeClock
from gateway.config import GatewaySettings
from gateway.drivers.contracts import DeviceFamily
from gateway.errors import InvalidArgsError
from gateway.feature import Feature, FeatureServices
from gateway.hub import ReadingHub
from gateway.labels.config import LabelsConfig
from gateway.labels.feature import LabelsFeature
from gateway.prices.config import DownlinkConfig
from gateway.prices.feature import PricesFeature
from gateway.shelves.config import ShelvesConfig
from gateway.shelves.feature import ShelvesFeature
from gateway.store.database import Database
from gateway.store.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]

#: The daemon's own control commands (gateway/diagnostics.py); the rest are the features'.
DAEMON_COMMANDS = {"status", "devices", "alerts"}
FEATURE_COMMANDS = {
    "gateway.prices": {"prices"},
    "gateway.labels": {
        "label.preview",
        "label.bind",
        "label.unbind",
        "label.flash",
        "label.seed",
        "labels",
        "label.show",
    },
    "gateway.shelves": {"slots", "scale.read", "scale.tare", "scale.calibrate"},
}


class NoDevices:
    """LiveDevices with nothing configured and nothing running."""

    def configured(self, family: DeviceFamily) -> tuple[str, ...]:
        return ()

    def driver(self, name: str) -> object | None:
        return None


@asynccontextmanager
async def built_features(tmp_path: Path) -> AsyncIterator[tuple[Feature, ...]]:
    clock = FakeClock()
    async with Database.running(tmp_path / "g.db", clock=clock) as database:
        outbox = Outbox(database, clock)
        await outbox.open(("stock", "dwell", "receipts", "alerts"))
        alerts = Alerts(database, outbox, clock)
        await alerts.load()
        services = FeatureServices(database, outbox, alerts, clock, ReadingHub(), NoDevices())
        prices = await PricesFeature.start(services, DownlinkConfig(), store_id="s1")
        labels = await LabelsFeature.start(
            services, LabelsConfig(), prices=prices, timezone="UTC", locale="en_GB"
        )
        shelves = await ShelvesFeature.start(services, ShelvesConfig())
        try:
            yield prices, labels, shelves
        finally:
            if labels.pipeline is not None:
                labels.pipeline.close()


def _package(feature: Feature) -> str:
    return type(feature).__module__.rpartition(".")[0]


@pytest.mark.parametrize("feature", [PricesFeature, LabelsFeature, ShelvesFeature])
def test_a_feature_names_the_section_its_own_package_models(feature: type[Feature]) -> None:
    field = GatewaySettings.model_fields.get(feature.section)
    assert field is not None, f"[{feature.section}] is no section of the configuration"
    model = field.annotation
    assert model is not None
    package = feature.__module__.rpartition(".")[0]
    assert model.__module__ == f"{package}.config", (
        f"[{feature.section}] is modelled in {model.__module__}, not in {package}/config.py"
    )


async def test_each_feature_declares_its_edges_and_its_handlers_live_in_its_package(
    tmp_path: Path,
) -> None:
    async with built_features(tmp_path) as features:
        served = set(DAEMON_COMMANDS)
        for feature in features:
            package = _package(feature)
            handlers = feature.control_handlers()
            assert set(handlers) == FEATURE_COMMANDS[package]
            assert not served & set(handlers), "a control command declared twice"
            served |= set(handlers)
            for name, handler in handlers.items():
                assert handler.__module__.startswith(package + "."), (
                    f"{name} is handled in {handler.__module__}, outside {package}"
                )
        assert served == DAEMON_COMMANDS.union(*FEATURE_COMMANDS.values())

        prices, labels, shelves = features
        assert [spec.name for spec in prices.hq_commands()] == []
        assert [spec.name for spec in labels.hq_commands()] == ["bind", "unbind", "flash"]
        assert [spec.name for spec in shelves.hq_commands()] == ["slots"]
        assert set(await prices.status()) == {"downlink"}
        assert set(await labels.status()) == {"labels"}
        assert await shelves.status() == {"slots": []}
        # Without a link no price batch arrives: the downlink has no task to run.
        assert set(prices.tasks()) == set()
        assert set(labels.tasks()) == {"labels", "labels-health"}
        assert set(shelves.tasks()) == {"shelves"}


async def test_the_daemon_reads_and_writes_one_price_book(tmp_path: Path) -> None:
    async with built_features(tmp_path) as (prices, labels, _shelves):
        assert isinstance(prices, PricesFeature)
        assert isinstance(labels, LabelsFeature)
        assert labels.pipeline is not None
        assert labels.pipeline.book is prices.book
        # The downlink's on_applied hook is the label planner's.
        assert prices.downlink.on_applied == labels.pipeline.on_prices_applied


async def test_the_handlers_answer_through_their_feature(tmp_path: Path) -> None:
    async with built_features(tmp_path) as (prices, labels, shelves):
        listing = await prices.control_handlers()["prices"]({})
        assert listing["head_version"] == 0
        assert listing["downlink"]["signing"] == "UNSIGNED"
        bound = await labels.control_handlers()["label.bind"]({"label": "L1", "sku": "S1"})
        assert (bound["label"], bound["sku"]) == ("L1", "S1")
        with pytest.raises(InvalidArgsError, match="has not been heard"):
            await labels.control_handlers()["label.flash"]({"label": "L1"})
        with pytest.raises(InvalidArgsError, match="no slot 'A1'"):
            await shelves.control_handlers()["scale.read"]({"slot": "A1"})


def test_the_wiring_declares_no_control_command_of_its_own() -> None:
    """gateway/app.py registers what the features and gateway/diagnostics.py declare: it names
    no control command itself."""
    tree = ast.parse((ROOT / "gateway" / "app.py").read_text(encoding="utf-8"))
    named = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "register"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    handlers = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.endswith("_command")
    ]
    assert not named, f"app.py registers a control command by name at line(s) {named}"
    assert not handlers, f"app.py defines control handlers: {handlers}"
