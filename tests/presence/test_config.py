"""``[presence]``: sane defaults, and garbage refused with a message naming the problem."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.presence.config import PresenceConfig, parse_beacon_id

UUID_TEXT = "5f0c1a2e-8d7b-4c4e-9a61-3f2b7d9e0c11"


def test_off_by_default_with_the_tuning_the_harness_was_calibrated_with() -> None:
    config = PresenceConfig()
    assert not config.enabled
    assert config.settings().ema_alpha == 0.7
    assert config.rules().min_visit_s == 10.0


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (f"ibeacon:{UUID_TEXT}:100:17", f"ibeacon:{UUID_TEXT}:100:17"),
        (f"IBeacon:{UUID_TEXT.upper()}:1:2", f"ibeacon:{UUID_TEXT}:1:2"),
        ("altbeacon:" + "ab" * 20, "altbeacon:" + "ab" * 20),
        ("eddystone:00112233445566778899:0000000000e1", None),
    ],
)
def test_beacon_ids_are_read_in_the_drivers_form(text: str, canonical: str | None) -> None:
    assert parse_beacon_id(text) == (canonical or text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ibeacon",
        "ibeacon:",
        f"ibeacon:{UUID_TEXT}:100",
        f"ibeacon:{UUID_TEXT}:100:70000",
        f"ibeacon:{UUID_TEXT}:-1:2",
        "ibeacon:not-a-uuid-at-all-not-a-uuid-at-all-x:1:2",
        "altbeacon:" + "zz" * 20,
        "altbeacon:abc",
        "eddystone:0011:22",
        "eddystone:00112233445566778899",
        "bluetooth:aa:bb:cc:dd:ee:ff",
        "\x00",
    ],
)
def test_garbage_beacon_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"beacon id|well-formed"):
        parse_beacon_id(text)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"zones": [{"name": "a", "receivers": []}]}, "at least 1"),
        ({"zones": [{"name": "a", "receivers": ["r"], "enter_rssi": 10}]}, "less than or equal"),
        ({"zones": [{"name": "a", "receivers": ["r"]}] * 2}, "zone 'a' is configured twice"),
        ({"zones": [{"name": "bad name", "receivers": ["r"]}]}, "pattern"),
        ({"tags": [{"name": "c", "beacon": "nonsense"}]}, "not a beacon id"),
        (
            {
                "tags": [
                    {"name": "c1", "beacon": f"ibeacon:{UUID_TEXT}:1:1"},
                    {"name": "c2", "beacon": f"ibeacon:{UUID_TEXT}:1:1"},
                ]
            },
            "configured twice",
        ),
        ({"identity_keys": [{"name": "k", "irk": "00" * 15}]}, "pattern"),
        (
            {
                "tags": [{"name": "x", "beacon": f"ibeacon:{UUID_TEXT}:1:1"}],
                "fixed_beacons": [{"name": "f", "beacon": f"ibeacon:{UUID_TEXT}:1:1"}],
            },
            "id of a fixed beacon",
        ),
        ({"gone_min_s": 30, "gone_max_s": 20}, "gone_max_s"),
        ({"ema_alpha": 0}, "greater than 0"),
        ({"aggregate_interval_s": "soon"}, "number"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_garbage_sections_are_refused_with_the_reason(
    section: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        PresenceConfig.model_validate(section)
