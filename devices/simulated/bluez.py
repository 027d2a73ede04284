# mypy: disable-error-code="valid-type,name-defined,misc,no-untyped-call,no-redef"
"""A fake BlueZ: the small part of ``org.bluez`` a BLE scanner uses, served with dbus-fast on
a (private) D-Bus, so bleak's real BlueZ backend runs against it (research/ble.md, "Testing
without Bluetooth hardware").

Adapters (``org.bluez.Adapter1``: StartDiscovery, StopDiscovery, SetDiscoveryFilter,
RemoveDevice; Address, Powered, Discovering) and devices (``org.bluez.Device1``: Address,
AddressType, Alias, Adapter, RSSI, ManufacturerData, ServiceData, UUIDs) are exported objects;
dbus-fast answers ``GetManagedObjects`` and emits ``InterfacesAdded``/``InterfacesRemoved`` as
they come and go, and ``PropertiesChanged`` as adverts change them. As BlueZ does, a device is
reported only while its adapter discovers. BlueZ's errors can be injected into the next
StartDiscovery calls (``org.bluez.Error.InProgress``, ``NotReady``, ``Failed``), and adapters
can vanish and return.
"""

from collections import deque
from collections.abc import Mapping
from typing import Any

from dbus_fast import DBusError, PropertyAccess, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_property, method

__all__ = ["FakeBlueZ"]

# dbus-fast reads D-Bus signatures from the annotations: keep them as strings, unevaluated.
# ruff: noqa: F821, F722, N802


class _Adapter(ServiceInterface):
    def __init__(self, name: str, address: str) -> None:
        super().__init__("org.bluez.Adapter1")
        self.adapter_name, self._address = name, address
        self._powered, self._discovering = True, False
        self.filters: dict[str, Any] = {}
        self.errors: deque[str] = deque()
        self.starts = self.stops = 0

    @method()
    def StartDiscovery(self) -> None:
        self.starts += 1
        if self.errors:
            name = self.errors.popleft()
            raise DBusError(name, f"injected {name.rsplit('.', 1)[-1]}")
        if not self._powered:
            raise DBusError("org.bluez.Error.NotReady", "Resource Not Ready")
        if self._discovering:
            raise DBusError("org.bluez.Error.InProgress", "Operation already in progress")
        self._set_discovering(True)

    @method()
    def StopDiscovery(self) -> None:
        self.stops += 1
        if not self._discovering:
            raise DBusError("org.bluez.Error.Failed", "No discovery started")
        self._set_discovering(False)

    @method()
    def SetDiscoveryFilter(self, properties: "a{sv}") -> None:
        self.filters = {key: value.value for key, value in properties.items()}

    @method()
    def RemoveDevice(self, device: "o") -> None:
        pass

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> "s":
        return self._address

    @dbus_property()
    def Powered(self) -> "b":
        return self._powered

    @Powered.setter
    def Powered(self, value: "b") -> None:
        self._powered = value
        self.emit_properties_changed({"Powered": value})
        if not value and self._discovering:
            self._set_discovering(False)

    @dbus_property(access=PropertyAccess.READ)
    def Discovering(self) -> "b":
        return self._discovering

    @property
    def discovering(self) -> bool:
        return self._discovering

    def _set_discovering(self, value: bool) -> None:
        self._discovering = value
        self.emit_properties_changed({"Discovering": value})


class _Device(ServiceInterface):
    def __init__(self, adapter_path: str, address: str) -> None:
        super().__init__("org.bluez.Device1")
        self._adapter_path, self._address = adapter_path, address
        self.rssi = -100
        self.manufacturer: dict[int, Variant] = {}
        self.service: dict[str, Variant] = {}
        self.uuids: list[str] = []

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> "s":
        return self._address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> "s":
        return "random"

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> "s":
        return self._address.replace(":", "-")

    @dbus_property(access=PropertyAccess.READ)
    def Adapter(self) -> "o":
        return self._adapter_path

    @dbus_property(access=PropertyAccess.READ)
    def Paired(self) -> "b":
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Connected(self) -> "b":
        return False

    @dbus_property(access=PropertyAccess.READ)
    def RSSI(self) -> "n":
        return self.rssi

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> "a{qv}":
        return self.manufacturer

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> "a{sv}":
        return self.service

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> "as":
        return self.uuids


class FakeBlueZ:
    """``org.bluez`` on the bus at ``address`` (a private ``dbus-daemon``'s)."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._bus: MessageBus | None = None
        self.adapters: dict[str, _Adapter] = {}
        self._devices: dict[str, _Device] = {}

    async def start(self, adapters: tuple[str, ...] = ("hci0",)) -> "FakeBlueZ":
        self._bus = await MessageBus(bus_address=self._address).connect()
        for name in adapters:
            self.add_adapter(name)
        await self._bus.request_name("org.bluez")
        return self

    def stop(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None

    async def __aenter__(self) -> "FakeBlueZ":
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def bus(self) -> MessageBus:
        assert self._bus is not None, "start() first"
        return self._bus

    def add_adapter(self, name: str) -> None:
        """An adapter appears (plugged in, or BlueZ restarted)."""
        index = len(self.adapters) + 1
        adapter = _Adapter(name, f"00:1A:7D:DA:71:{index:02X}")
        self.adapters[name] = adapter
        self.bus.export(f"/org/bluez/{name}", adapter)

    def remove_adapter(self, name: str) -> None:
        """An adapter vanishes (unplugged): its devices with it."""
        for path in [p for p in self._devices if p.startswith(f"/org/bluez/{name}/")]:
            self.bus.unexport(path)
            del self._devices[path]
        self.bus.unexport(f"/org/bluez/{name}")
        del self.adapters[name]

    def inject(self, adapter: str, error: str, times: int = 1) -> None:
        """The next ``times`` StartDiscovery calls fail with ``org.bluez.Error.<error>``."""
        self.adapters[adapter].errors.extend([f"org.bluez.Error.{error}"] * times)

    def advertise(
        self,
        adapter: str,
        address: str,
        rssi: int,
        *,
        manufacturer: Mapping[int, bytes] | None = None,
        service: Mapping[str, bytes] | None = None,
    ) -> bool:
        """One advert heard by ``adapter``; False if it is not discovering (not reported)."""
        owner = self.adapters.get(adapter)
        if owner is None or not owner.discovering:
            return False
        adapter_path = f"/org/bluez/{adapter}"
        path = f"{adapter_path}/dev_{address.replace(':', '_')}"
        device = self._devices.get(path)
        fresh = device is None
        if device is None:
            device = self._devices[path] = _Device(adapter_path, address)
        device.rssi = rssi
        changed: dict[str, Any] = {"RSSI": rssi}
        if manufacturer is not None:
            device.manufacturer = {k: Variant("ay", bytes(v)) for k, v in manufacturer.items()}
            changed["ManufacturerData"] = device.manufacturer
        if service is not None:
            device.service = {k: Variant("ay", bytes(v)) for k, v in service.items()}
            device.uuids = list(service)
            changed["ServiceData"] = device.service
        if fresh:
            self.bus.export(path, device)  # InterfacesAdded, with every property
        else:
            device.emit_properties_changed(changed)
        return True

    def forget(self, adapter: str, address: str) -> None:
        """BlueZ drops a device it has not heard for a while (InterfacesRemoved)."""
        path = f"/org/bluez/{adapter}/dev_{address.replace(':', '_')}"
        if self._devices.pop(path, None) is not None:
            self.bus.unexport(path)
