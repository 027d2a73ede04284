"""The fleet simulator's parts: virtual stores speaking the real protocol, the processes that
run them, the HQ consumers they talk to, and the checks on what HQ holds (bench/fleet.py, and
the smoke test tests/hq/test_fleet.py)."""
