"""Simulated drivers for all three device families, driven by seeded scenarios.

They implement the real driver contracts, so the supervisor, the demo store, tests and
benchmarks exercise the production code paths above the driver:

- ``scale``: load cells under shelf slots, shoppers picking and putting back, staff restocking;
- ``beacon``: a BLE receiver hearing fixed beacons, carts and phones, with real frame bytes
  (encoded by :mod:`devices.ble.frames`);
- ``esl``: an access point with a sequential radio and labels that confirm (late, or never),
  check in and reboot;
- ``shelf_folder``: where ``esl`` draws what each label shows (PNGs and an index);
- ``faults``: the ``faults`` options every plugin accepts, to exercise the supervisor;
- ``plugins``: the ``storegw.drivers`` entry points.

Each instance is deterministic for its ``seed`` mixed with the instance name (two instances
differ). ``speed`` compresses scenario time for demos and tests. Readings are stamped with the
injected clock; pacing is real time (``asyncio.sleep``).
"""
