"""BLE receivers: drivers that turn what a radio hears into ``Advertisement`` readings.

What goes where:

- ``frames``: the beacon frames stores use (iBeacon, AltBeacon, Eddystone UID/URL/TLM),
  pure encoders and decoders over the bytes bleak reports (manufacturer data after the company
  id, service data after the service UUID). Garbage decodes to ``None``, never an exception.
- ``advertising``: raw advertising data (AD structures, as remote receivers and ``btmon``
  captures deliver it) split into the same maps, and what a BLE address says about itself
  (a resolvable private address rotates).
- one driver module per receiver kind, each publishing its own ``PLUGIN`` (the next is a
  bleak scanner of the box's adapter; see research/ble.md for BlueZ's traps). Heavy imports
  (bleak) belong to the driver module, never to this ``__init__``.

The pure modules import nothing but the standard library; drivers and the simulator
(:mod:`devices.simulated.beacon`) use them. The gateway core never imports ``devices``.
"""
