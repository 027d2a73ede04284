"""Print the stock-logic accuracy report: ``python -m tests.shelves.report``."""

from __future__ import annotations

import sys

from tests.shelves.harness import SCENARIOS, format_report, run_scenario


def main() -> int:
    results = [run_scenario(scenario) for scenario in SCENARIOS]
    print(format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
