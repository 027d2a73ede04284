"""devices.scale.toledo_protocol: frames built by hand from the status-word tables of the
indicators' manuals, the checksum rule, and a splitter that survives any garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.scale.toledo_protocol import (
    FrameSplitter,
    ToledoFrame,
    checksum,
    decode_frame,
    encode_frame,
    frame_length,
    sample_fields,
)
from devices.scale.units import WeightUnit
from gateway.drivers.contracts import ScaleStatus

# 12.34 kg net, 0.50 kg tare, stable. SWA 0x2C: bit 5 set, bits 3-4 = 01 (increment x1),
# bits 0-2 = 100 (XXXX.XX). SWB 0x31: bit 5 set, bit 4 kg, bit 0 net. SWC 0x20: bit 5 set.
BODY = b"\x02" + b"\x2c\x31\x20" + b"001234" + b"000050" + b"\r"
NET_KG = BODY + bytes([checksum(BODY)])


def test_the_checksum_makes_the_7_bit_sum_zero() -> None:
    assert (sum(NET_KG) & 0x7F) == 0
    # STX + CR alone: 0x02 + 0x0D = 0x0F; its two's complement in 7 bits is 0x71.
    assert checksum(b"\x02\r") == 0x71


def test_a_net_frame_by_the_manuals_tables() -> None:
    frame = decode_frame(NET_KG, tare_field=True, with_checksum=True)
    assert frame == ToledoFrame(
        weight=12.34, tare=0.5, net=True, stable=True, out_of_range=False, unit=WeightUnit.KG
    )
    status, gross, net = sample_fields(frame)
    assert status is ScaleStatus.OK
    assert net == pytest.approx(12_340.0)
    assert gross == pytest.approx(12_840.0)  # net + tare


@pytest.mark.parametrize(
    ("swa", "digits", "weight"),
    [
        (0x28, b"  1234", 123_400.0),  # XXXX00: two dummy zeros
        (0x29, b"  1234", 12_340.0),  # XXXXX0
        (0x2A, b"  1234", 1_234.0),  # XXXXXX
        (0x2B, b"  1234", 123.4),
        (0x2F, b"123456", 1.23456),  # X.XXXXX
    ],
)
def test_the_decimal_point_code_of_status_word_a(swa: int, digits: bytes, weight: float) -> None:
    body = bytes([0x02, swa, 0x20, 0x20]) + digits + b"\r"  # short format, lb, gross
    frame = decode_frame(body, tare_field=False, with_checksum=False)
    assert frame is not None
    assert frame.weight == pytest.approx(weight)
    assert (frame.unit, frame.tare, frame.net) == (WeightUnit.LB, None, False)


def test_status_word_b_and_c_bits() -> None:
    def frame(swb: int, swc: int = 0x20) -> ToledoFrame:
        body = bytes([0x02, 0x2A, swb, swc]) + b"    42" + b"000000\r"
        decoded = decode_frame(body, tare_field=True, with_checksum=False)
        assert decoded is not None
        return decoded

    assert frame(0x22).weight == -42  # bit 1: negative
    assert frame(0x28).stable is False  # bit 3: in motion
    assert frame(0x60).not_zeroed  # bit 6: not zeroed since power-up
    assert frame(0x20).unit is WeightUnit.LB
    assert frame(0x30).unit is WeightUnit.KG
    assert frame(0x30, 0x21).unit is WeightUnit.G  # SWC unit code 1
    assert frame(0x30, 0x22).unit is WeightUnit.T
    assert frame(0x30, 0x23).unit is None  # ounces and beyond: not read
    assert frame(0x30, 0x28).print_request
    over, under = frame(0x24), frame(0x26)
    assert sample_fields(over) == (ScaleStatus.OVERLOAD, None, None)
    assert sample_fields(under) == (ScaleStatus.UNDERLOAD, None, None)
    assert sample_fields(frame(0x30, 0x23)) == (ScaleStatus.ERROR, None, None)


def test_gross_frames_give_net_from_the_tare() -> None:
    frame = decode_frame(encode_frame(2.5, tare=0.5, unit=WeightUnit.KG), **FULL)
    assert frame is not None
    assert sample_fields(frame) == (ScaleStatus.OK, 2500.0, 2000.0)
    short = decode_frame(encode_frame(2.5, tare_field=False), tare_field=False, with_checksum=True)
    assert short is not None
    assert sample_fields(short) == (ScaleStatus.OK, 2500.0, None)


FULL = {"tare_field": True, "with_checksum": True}


@pytest.mark.parametrize(
    "frame",
    [
        NET_KG[:-1] + bytes([(NET_KG[-1] + 1) & 0x7F]),  # checksum wrong
        NET_KG.replace(b"001234", b"0012x4"),  # not a digit
        NET_KG.replace(b"001234", b"00 234"),  # a space inside the number
        NET_KG.replace(b"\r", b"\n"),  # no CR where it belongs
        NET_KG[:-2],  # truncated
        NET_KG + b"\x00",  # oversized
        b"\x03" + NET_KG[1:],  # no STX
    ],
)
def test_what_is_not_a_frame(frame: bytes) -> None:
    assert decode_frame(frame, **FULL) is None


def test_parity_in_bit_7_is_ignored() -> None:
    with_parity = encode_frame(12.34, tare=0.5, net=True, parity=True)
    assert any(byte & 0x80 for byte in with_parity)
    assert decode_frame(with_parity, **FULL) == decode_frame(NET_KG, **FULL)
    # Leading zeros go out as spaces, as the manuals allow.
    assert encode_frame(12.34, tare=0.5, net=True)[4:10] == b"  1234"


def test_the_splitter_resynchronises_after_garbage() -> None:
    splitter = FrameSplitter()
    stream = NET_KG[7:] + b"\xff\x00noise" + NET_KG + b"\x02\x2c" + NET_KG + NET_KG[:5]
    frames = splitter.feed(stream[:10]) + splitter.feed(stream[10:])
    assert len(frames) == 2  # the torn first frame and the stray STX cost nothing else
    assert splitter.rejected == 1
    assert splitter.noise > 0
    assert splitter.feed(NET_KG[5:]) == frames[:1]  # the tail completes the last frame


def test_frame_lengths() -> None:
    assert frame_length(tare_field=True, with_checksum=True) == 18
    assert frame_length(tare_field=False, with_checksum=False) == 11


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_any_bytes_are_frames_or_counted_never_raised(chunks: list[bytes]) -> None:
    splitter = FrameSplitter()
    frames = [frame for chunk in chunks for frame in splitter.feed(chunk)]
    assert all(isinstance(frame, ToledoFrame) for frame in frames)
    # a valid frame after the garbage is always found
    assert splitter.feed(b"\r" + NET_KG)[-1:] == [decode_frame(NET_KG, **FULL)]


@given(
    st.integers(-99_999, 999_999),
    st.integers(0, 999_999),
    st.sampled_from([-2, -1, 0, 1, 2, 3, 4, 5]),
    st.sampled_from([WeightUnit.KG, WeightUnit.LB, WeightUnit.G, WeightUnit.T]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_encoded_frames_decode_to_what_was_shown(
    shown: int, tare: int, decimals: int, unit: WeightUnit, net: bool, stable: bool, cks: bool
) -> None:
    scale = 10.0**decimals
    encoded = encode_frame(
        shown / scale, tare=tare / scale, net=net, stable=stable, unit=unit,
        decimals=decimals, with_checksum=cks,
    )  # fmt: skip
    frame = decode_frame(encoded, tare_field=True, with_checksum=cks)
    assert frame is not None
    assert frame.weight == pytest.approx(shown / scale)
    assert frame.tare == pytest.approx(tare / scale)
    assert (frame.net, frame.stable, frame.unit) == (net, stable, unit)
