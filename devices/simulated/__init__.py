"""Simulated drivers for all three device families, driven by seeded scenarios.

They implement the real driver contracts, so the supervisor, the demo store, tests and
benchmarks exercise the production code paths above the driver. Each instance is deterministic
for its ``seed`` (mixed with the instance name, so two instances differ). ``speed`` compresses
shopper time for demos and tests. The ``faults`` options inject the failures the supervisor must
survive (see :mod:`devices.simulated.faults`).
"""
