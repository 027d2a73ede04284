"""BLE presence: which zone each tag is in and for how long (sans-IO :mod:`.zone_tracker` and
:mod:`.visits`), from the advertisements beacon drivers report."""
