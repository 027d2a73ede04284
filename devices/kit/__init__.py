"""The driver kit: what a driver package (ours or a third party's) builds on.

- ``plugin``: :func:`~devices.kit.plugin.driver_plugin` makes a driver module's ``PLUGIN`` for
  the ``storegw.drivers`` entry-point group, checking the options model and the family's
  members when the module is imported;
- ``simulated``: the base of simulated drivers (seeded randomness per instance, the ``faults``
  options, the lifecycle), and ``faults``: the fault injection itself.

docs/drivers.md walks through adding a driver with it. The kit imports the driver contract
(``gateway.drivers.contracts``) and nothing else of the gateway; ``gateway`` never imports it.
"""
