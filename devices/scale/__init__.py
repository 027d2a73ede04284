"""Real scale drivers: Modbus RTU weight transmitters and ASCII scale heads on serial lines.

Each protocol is split the way the rest of ``devices`` is: a pure module that encodes and
decodes (no I/O, exhaustively unit-tested) and a driver module that does the I/O:

- ``units``: device units to grams, and the plausibility check every driver applies;
- ``modbus_protocol``: register maps (built-in models and custom maps) and their decoding;
- ``modbus``: the ``modbus.rtu`` driver, many units on one RS-485 bus, via pymodbus;
- ``ascii_protocol``: line splitting and the MT-SICS, A&D stream and ``ST,GS`` parsers;
- ``serial_link``: a pyserial port (device path or URL) driven by the event loop;
- ``ascii``: the ``ascii.scale`` driver.

Each driver module publishes its own ``PLUGIN`` (entry points ``modbus.rtu`` and
``ascii.scale``), so naming one driver never imports the other's libraries.
"""
