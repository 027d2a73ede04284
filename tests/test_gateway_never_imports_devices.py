"""The core never imports the driver packages: drivers reach it only through the
``storegw.drivers`` entry-point group, so a third party's driver is a peer of ours. Checked on
the source (lazy imports inside functions included) and on a real import of every module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_gateway_source_imports_devices() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "gateway").rglob("*.py"))
        for name in imported_modules(path)
        if name == "devices" or name.startswith("devices.")
    ]
    assert offenders == []
    assert len(list((ROOT / "gateway").rglob("*.py"))) > 20  # the walk saw the package


def test_importing_every_gateway_module_loads_no_driver_package() -> None:
    script = (
        "import importlib, pkgutil, sys, gateway\n"
        "for module in pkgutil.walk_packages(gateway.__path__, 'gateway.'):\n"
        "    importlib.import_module(module.name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'devices' or m.startswith('devices.'))\n"
        "print(len([m for m in sys.modules if m.startswith('gateway.')]), loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    count, loaded = result.stdout.strip().split(" ", 1)
    assert int(count) > 20
    assert loaded == "[]"
