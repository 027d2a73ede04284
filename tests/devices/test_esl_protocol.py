"""devices.esl.protocol: OpenEPaperLink frames as research/esl.md and the access point's own
log lines describe them; garbage decodes to None, never an exception."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.esl.protocol import (
    DEEP_SLEEP_CHECKIN,
    ApLog,
    ApRebooting,
    ApStatus,
    DbPage,
    TagRecord,
    TagsChanged,
    TransferComplete,
    TransferTimeout,
    UploadOutcome,
    UploadProgress,
    content_hash,
    decode_db_page,
    decode_tag_record,
    decode_ws_frame,
    label_address,
    upload_outcome,
)

RECORD = {
    "mac": "0000021C5D9EB37F",
    "hash": "B2C3D4E5F6071829" + "0" * 16,
    "lastseen": 1_764_000_000,
    "nextcheckin": 1_764_000_040,
    "pending": 1,
    "alias": "aisle 3",
    "contentMode": 24,
    "LQI": 100,
    "RSSI": -62,
    "temperature": 21,
    "batteryMv": 2950,
    "hwType": 4,
    "wakeupReason": 0,
    "capabilities": 0x41,
    "updatecount": 7,
    "updatelast": 1_763_999_000,
}


def test_label_addresses() -> None:
    assert label_address("0000021c5d9eb37f") == "0000021C5D9EB37F"
    assert label_address("021C5D9EB37F") == "0000021C5D9EB37F"  # a 12-digit MAC is padded
    for bad in ("", "021C5D9EB37", "0000021C5D9EB37G", "00:00:02:1C", 5, None):
        assert label_address(bad) is None


def test_content_hash_is_half_an_md5_and_zeros() -> None:
    digest = hashlib.md5(b"label image", usedforsecurity=False).hexdigest()
    assert content_hash(b"label image") == digest[:16] + "0" * 16


def test_a_tag_record() -> None:
    record = decode_tag_record(RECORD)
    assert record == TagRecord(
        mac="0000021C5D9EB37F",
        content_hash="b2c3d4e5f6071829" + "0" * 16,
        last_seen=1_764_000_000,
        next_checkin=1_764_000_040,
        pending=1,
        battery_mv=2950,
        rssi=-62,
        lqi=100,
        temperature_c=21,
        hw_type=4,
        wakeup_reason=0,
        capabilities=0x41,
        update_count=7,
        update_last=1_763_999_000,
        alias="aisle 3",
    )
    assert record.has_led
    assert record.has_nfc
    assert not record.rebooted
    assert not record.low_battery
    assert not record.asleep
    assert not record.timed_out(1_764_000_040 + 600)
    assert record.timed_out(1_764_000_040 + 601)


def test_what_a_record_implies() -> None:
    def record(**fields: object) -> TagRecord:
        decoded = decode_tag_record(RECORD | fields)
        assert decoded is not None
        return decoded

    asleep = record(nextcheckin=DEEP_SLEEP_CHECKIN)
    assert asleep.asleep
    assert not asleep.timed_out(DEEP_SLEEP_CHECKIN + 10_000)
    assert record(wakeupReason=0xE0).rebooted
    assert record(batteryMv=2399).low_battery
    assert not record(batteryMv=0).low_battery  # 0: not measured
    assert record(hash="0" * 32).content_hash is None  # nothing confirmed
    assert not record(capabilities=0).has_led


def test_a_record_tolerates_fields_of_the_wrong_type_but_not_a_missing_mac() -> None:
    odd = decode_tag_record(RECORD | {"RSSI": "-62", "pending": -3, "batteryMv": True, "hash": 7})
    assert odd is not None
    assert (odd.rssi, odd.pending, odd.battery_mv, odd.content_hash) == (None, 0, None, None)
    assert decode_tag_record({k: v for k, v in RECORD.items() if k != "mac"}) is None
    assert decode_tag_record(RECORD | {"mac": "not a mac"}) is None
    assert decode_tag_record(["mac", "0000021C5D9EB37F"]) is None


def test_database_pages() -> None:
    page = decode_db_page(json.dumps({"tags": [RECORD, {"mac": "?"}], "continu": 12}))
    assert isinstance(page, DbPage)
    assert [r.mac for r in page.records] == ["0000021C5D9EB37F"]
    assert (page.next_position, page.unusable) == (12, 1)
    last = decode_db_page(b'{"tags": [], "continu": 0}')
    assert last == DbPage((), None, 0)
    for garbage in (b"", b"<html>", b'{"tags": {}}', b"[]", b"\xff\xfe"):
        assert decode_db_page(garbage) is None


@pytest.mark.parametrize(
    ("frame", "event"),
    [
        # Log lines as the access point's firmware prints them: older ones with "< " and 12
        # digits, newer ones with 16.
        (
            {"logMsg": "< 021C5D9EB37F reports xfer complete\n"},
            TransferComplete("0000021C5D9EB37F"),
        ),
        (
            {"logMsg": "0000021C5D9EB37F reports xfer complete"},
            TransferComplete("0000021C5D9EB37F"),
        ),
        ({"errMsg": "< 021C5D9EB37F xfer timeout\n"}, TransferTimeout("0000021C5D9EB37F")),
        ({"errMsg": "REBOOTING"}, ApRebooting()),
        ({"sys": {"uptime": 3600, "apstate": 1, "heap": 81234}}, ApStatus(3600, 1)),
        (
            {"upload": {"src": "0000021C5D9EB37F", "current": 1, "total": 2}},
            UploadProgress("0000021C5D9EB37F", 1, 2),
        ),
        ({"logMsg": "Updating 0000021C5D9EB37F"}, ApLog("Updating 0000021C5D9EB37F", False)),
        ({"errMsg": "< MAC xfer timeout"}, ApLog("< MAC xfer timeout", True)),
    ],
)
def test_websocket_frames(frame: dict[str, object], event: object) -> None:
    assert decode_ws_frame(json.dumps(frame)) == event


def test_a_tags_frame_carries_whole_records() -> None:
    event = decode_ws_frame(json.dumps({"tags": [RECORD]}))
    assert isinstance(event, TagsChanged)
    assert event.records == (decode_tag_record(RECORD),)


@pytest.mark.parametrize(
    "frame",
    ["", "null", "[1]", '{"tags": []}', '{"upload": {"src": "x"}}', '{"other": 1}', "{" * 5000],
)
def test_unknown_or_malformed_frames_are_none(frame: str) -> None:
    assert decode_ws_frame(frame) is None


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, "Ok, saved", UploadOutcome.QUEUED),
        (409, "Come back later", UploadOutcome.BUSY),
        (400, "mac not found", UploadOutcome.UNKNOWN_LABEL),
        (400, "mac not found in tagDB", UploadOutcome.UNKNOWN_LABEL),
        (400, "parameters incomplete", UploadOutcome.REJECTED),
        (500, "", UploadOutcome.REJECTED),
    ],
)
def test_upload_answers(status: int, body: str, outcome: UploadOutcome) -> None:
    assert upload_outcome(status, body) is outcome


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["tags", "sys", "upload", "logMsg", "errMsg", "mac", "hash", "src"])
            | st.text(max_size=8),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


EVENTS = (
    TagsChanged,
    ApStatus,
    TransferComplete,
    TransferTimeout,
    ApRebooting,
    UploadProgress,
    ApLog,
)


@given(JSON)
def test_any_json_decodes_or_is_none(value: object) -> None:
    text = json.dumps(value)
    event = decode_ws_frame(text)
    assert event is None or isinstance(event, EVENTS)
    page = decode_db_page(text)
    assert page is None or all(isinstance(r, TagRecord) for r in page.records)
    record = decode_tag_record(value)
    assert record is None or len(record.mac) == 16


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_none(data: bytes) -> None:
    event = decode_ws_frame(data)
    assert event is None or isinstance(event, EVENTS)
    page = decode_db_page(data)
    assert page is None or isinstance(page, DbPage)
