"""The floors of the code: imports point down (or sideways), never up, never round in a circle,
and ``gateway`` never imports ``devices``.

Every import of every module under ``gateway/`` and ``devices/`` counts — at the top, inside a
function or under ``TYPE_CHECKING`` — as does the ``__init__`` of each package an import
loads on the way. :data:`FLOORS` is the map (docs/architecture.md, "Floors"): each entry is a
*unit*, a module or a package, on a floor; a module belongs to the longest entry naming it or
a package above it, so a new module lands on its package's floor unless the map says
otherwise. An import may reach its own floor or one below; between units no cycle is allowed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("gateway", "devices")

#: Bottom to top. An import reaches the same floor or one below.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        # What every floor speaks, drivers included: no I/O services, no feature.
        "foundation",
        (
            "gateway",  # the package itself: its version
            "gateway.errors",
            "gateway.clock",
            "gateway.backoff",
            "gateway.section",
            "gateway.drivers.contracts",
            "gateway.wire",  # the wire contract: models, registry, encoding
        ),
    ),
    (
        # Driver packages, found through the storegw.drivers entry points (never imported by
        # gateway): built on the foundation only.
        "devices",
        ("devices",),
    ),
    (
        # Sans-IO domain logic: pure functions and state machines fed (reading, now).
        "logic",
        (
            "gateway.shelves.item_count",
            "gateway.shelves.slot_counter",
            "gateway.prices.unit_price",
            "gateway.store.budget",
            "gateway.labels.words",
            "gateway.labels.localization",
            "gateway.labels.render",
            "gateway.labels.faces",
            "gateway.labels.glyphs",
            "gateway.labels.layout",
            "gateway.labels.template",
            "gateway.presence.zone_tracker",
            "gateway.presence.visits",
            "gateway.presence.zone_stats",
            "gateway.presence.beacon_fleet",
        ),
    ),
    (
        # Shared services: storage, alerts, the MQTT link and uplink, the driver supervisor,
        # the readings hub, the control socket.
        "services",
        (
            "gateway.store",
            "gateway.alerts",
            "gateway.sync",
            "gateway.drivers",
            "gateway.hub",
            "gateway.control",
            # The contract between a feature and the wiring (what a feature is built with
            # and what it declares): below the features, above the services it names.
            "gateway.feature",
        ),
    ),
    (
        # Feature packages: each owns its config section, its services, its control and HQ
        # commands, its tasks and its status block (declared in its feature.py).
        "features",
        (
            "gateway.prices",
            "gateway.labels",
            "gateway.shelves",
            "gateway.presence",
        ),
    ),
    (
        # Wiring and tools, only on top: config composes the sections, app wires the daemon
        # (diagnostics: its own status/devices/alerts; reload: SIGHUP), cli/ and hq/ are the
        # commands; logging and sd_notify are only theirs to set up. wire.schema_doc writes
        # protocol.md's schemas, the downlink's and commands' included.
        "wiring",
        (
            "gateway.config",
            "gateway.app",
            "gateway.diagnostics",
            "gateway.reload",
            "gateway.cli",
            "gateway.hq",
            "gateway.wire.schema_doc",
            "gateway.logsetup",
            "gateway.systemd",
        ),
    ),
)

FLOOR_OF: Mapping[str, int] = {
    unit: level for level, (_name, units) in enumerate(FLOORS) for unit in units
}


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    imported: str
    line: int

    def where(self) -> str:
        path = _MODULES[self.importer].relative_to(ROOT)
        return f"{path}:{self.line} {self.importer} -> {self.imported}"


def _discover() -> dict[str, Path]:
    modules = {}
    for package in FIRST_PARTY:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


_MODULES = _discover()


def _is_package(module: str) -> bool:
    return _MODULES[module].name == "__init__.py"


def _resolve(name: str) -> str | None:
    """The first-party module an import name loads: itself, else its package (``from x
    import name`` where ``name`` is no module)."""
    while name:
        if name in _MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _named(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: from its package
        package = module if _is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    submodules = [f"{base}.{alias.name}" for alias in node.names]
    if not all(name in _MODULES for name in submodules):
        yield base  # a name from the module itself (``from pkg import mod`` loads only mod)
    yield from submodules


def _loads_nothing(package: str) -> bool:
    """A package ``__init__`` without first-party imports: reaching it loads nothing more."""
    return not any(True for _ in _direct_imports(package))


def _direct_imports(module: str) -> Iterator[Import]:
    tree = ast.parse(_MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # every level: functions and TYPE_CHECKING blocks too
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for name in _named(module, node):
            if name.split(".")[0] not in FIRST_PARTY:
                continue
            target = _resolve(name)
            if target is not None and target != module:
                yield Import(module, target, node.lineno)


def imports(module: str) -> set[Import]:
    """What ``module`` loads: each module it names and every package ``__init__`` on the way
    that imports something itself (its own packages excepted: they are loaded before it)."""
    found = set()
    for direct in _direct_imports(module):
        found.add(direct)
        package = direct.imported.rpartition(".")[0]
        while package:
            own = module == package or module.startswith(package + ".")
            if not own and not _loads_nothing(package):
                found.add(Import(module, package, direct.line))
            package = package.rpartition(".")[0]
    return found


def unit_of(module: str) -> str | None:
    """The longest map entry naming ``module`` or a package above it. ``gateway`` itself
    names only the package module: another module on no floor is unmapped."""
    name = module
    while name:
        if name in FLOOR_OF and (name != "gateway" or module == "gateway"):
            return name
        name = name.rpartition(".")[0]
    return None


def _units(found: Import) -> tuple[str, str]:
    importer, imported = unit_of(found.importer), unit_of(found.imported)
    assert importer is not None, f"{found.importer} is on no floor"
    assert imported is not None, f"{found.imported} is on no floor"
    return importer, imported


def _all_imports() -> list[Import]:
    return sorted(
        (found for module in _MODULES for found in imports(module)),
        key=lambda i: (i.importer, i.imported, i.line),
    )


def _cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its nodes in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_every_module_is_on_a_floor_and_every_entry_names_a_module() -> None:
    unmapped = [module for module in _MODULES if unit_of(module) is None]
    assert not unmapped, f"modules on no floor (add them to FLOORS): {unmapped}"
    stale = [unit for unit in FLOOR_OF if not any(unit_of(m) == unit for m in _MODULES)]
    assert not stale, f"FLOORS entries naming no module: {stale}"


def test_gateway_never_imports_devices() -> None:
    found = [
        i.where()
        for i in _all_imports()
        if i.importer.startswith("gateway") and i.imported.split(".")[0] == "devices"
    ]
    assert not found, "gateway imports devices (drivers arrive by entry point):\n" + "\n".join(
        found
    )


def test_no_import_goes_up_a_floor() -> None:
    upward = []
    for found in _all_imports():
        importer, imported = _units(found)
        if FLOOR_OF[imported] > FLOOR_OF[importer]:
            upward.append(
                f"{found.where()}  ({FLOORS[FLOOR_OF[importer]][0]} imports "
                f"{FLOORS[FLOOR_OF[imported]][0]})"
            )
    assert not upward, "imports going up a floor:\n" + "\n".join(upward)


def test_no_import_cycle_between_units() -> None:
    graph: dict[str, set[str]] = {}
    for found in _all_imports():
        importer, imported = _units(found)
        if importer != imported:
            graph.setdefault(importer, set()).add(imported)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle between units: " + " -> ".join(cycle or ())


def test_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for found in _all_imports():
        graph.setdefault(found.importer, set()).add(found.imported)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle or ())


def test_the_checks_see_what_they_must() -> None:
    """The checks above can fail: the parser finds imports inside functions and under
    TYPE_CHECKING, packages loaded on the way, and the cycle finder finds a cycle."""
    config = {i.imported for i in imports("gateway.config")}
    assert "gateway.labels.localization" in config  # imported inside a validator
    assert "gateway.drivers.contracts" in {i.imported for i in imports("gateway.errors")}
    assert "gateway.store" in {i.imported for i in imports("gateway.alerts")}  # its __init__
    assert "gateway" not in {i.imported for i in imports("gateway.alerts")}  # loads nothing
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert unit_of("gateway.shelves.service") == "gateway.shelves"
    assert unit_of("gateway.shelves.slot_counter") == "gateway.shelves.slot_counter"
    assert unit_of("gateway.nowhere") is None
