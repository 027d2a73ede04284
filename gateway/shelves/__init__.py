"""Smart shelves: weight samples to item counts, pick/put events and stock alerts.

- :mod:`gateway.shelves.item_count` — the rule that turns grams into items (or refuses to);
- :mod:`gateway.shelves.slot_counter` — :class:`SlotCounter`, one slot's sans-IO stock logic.
"""
