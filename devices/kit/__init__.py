"""The driver kit: what a driver package (ours or a third party's) builds on.

- ``plugin``: :func:`~devices.kit.plugin.driver_plugin` makes a driver module's ``PLUGIN`` for
  the ``storegw.drivers`` entry-point group, checking the options model and the family's
  members when the module is imported;
- ``conformance``: the checks every driver must pass (lifecycle, cancellation, silence,
  garbage) against the device it talks to, as coroutines or a pytest base class
  (``_probes``: its instruments);
- ``simulated``: the base of simulated drivers (seeded randomness per instance, the ``faults``
  options, the lifecycle), and ``faults``: the fault injection itself.

docs/drivers.md walks through adding a driver with it; ``devices/scale/toledo.py`` is the
walkthrough's worked example. The kit imports the gateway's driver contract, clock and errors;
``gateway`` never imports the kit (nor anything in ``devices``).
"""
