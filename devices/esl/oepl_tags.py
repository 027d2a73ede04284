"""The tags one OpenEPaperLink access point serves, as the ``esl.oepl`` driver reads them:
its tag database (``/get_db``, paged only while ``pos`` fits the AP's uint8; tags past 255
are read one by one with ``?mac=``), and each tag's panel — the size and palette of its
``hwType``'s ``/tagtypes/HH.json``, turned upright when the tag's ``rotate`` is odd (the AP
turns our image by that many quarter turns, so a tag mounted upright is drawn height x width)."""

from __future__ import annotations

from dataclasses import replace

from devices.esl.oepl_http import ApClient
from devices.esl.oepl_state import ApMemory, panel_of_tag_type
from devices.esl.protocol import TagRecord, label_address
from gateway.drivers.contracts import LabelModel
from gateway.errors import DriverConfigError

__all__ = ["ApTags"]

_LAST_POSITION = 255  # /get_db's pos is a uint8 on the AP


class ApTags:
    def __init__(self, ap: ApClient, memory: ApMemory) -> None:
        self._ap = ap
        self._memory = memory
        # (hwType, turned upright, LED) → panel: asked for on every report
        self._shapes: dict[tuple[int | None, int, bool], LabelModel] = {}

    async def read_database(self) -> None:
        position: int | None = 0
        seen: set[str] = set()
        while position is not None and position <= _LAST_POSITION:
            records, position = await self._ap.tag_page({"pos": str(position)})
            for record in records:
                seen.add(record.mac)
                await self.learn(record)
        for mac in [mac for mac in self._memory.records if mac not in seen]:
            records, _ = await self._ap.tag_page({"mac": mac})  # beyond 255, or known before
            for record in records:
                await self.learn(record)

    async def record(self, label_id: str) -> TagRecord:
        """The label's tag record, asked for with ``?mac=`` when not known yet."""
        mac = label_address(label_id)
        if mac is None:
            raise DriverConfigError(f"{label_id!r} is not a tag address (16 hex digits)")
        record = self._memory.records.get(mac)
        if record is None:
            records, _ = await self._ap.tag_page({"mac": mac})
            for found in records:
                await self.learn(found)
            record = self._memory.records.get(mac)
        if record is None:
            raise DriverConfigError(f"tag {mac} is not known to {self._ap.url}")
        return record

    def panel(self, record: TagRecord) -> LabelModel | None:
        """What content for the tag is drawn on: its tag type's panel, upright when turned."""
        key = (record.hw_type, record.rotate % 2, record.has_led)
        found = self._shapes.get(key)
        if found is not None:
            return found
        panel = self._memory.panels.get(record.hw_type) if record.hw_type is not None else None
        if panel is None:
            return None
        if record.rotate % 2:
            panel = replace(panel, width=panel.height, height=panel.width)
        found = self._shapes[key] = replace(panel, has_led=record.has_led)
        return found

    async def learn(self, record: TagRecord) -> None:
        self._memory.records[record.mac] = record
        kind = record.hw_type
        if kind is None or kind in self._memory.panels:
            return
        document = await self._ap.tag_type(kind)
        panel = panel_of_tag_type(document)
        if panel is not None:
            self._memory.panels[kind] = panel
