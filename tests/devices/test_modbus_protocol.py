"""Modbus register maps without I/O: golden registers, round trips, validation, reply diagnosis."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pymodbus.framer import FramerRTU

from devices.scale.modbus_protocol import (
    BUILTIN_MODELS,
    DataType,
    RegisterMap,
    WordOrder,
    decode_weight,
    diagnose_reply,
    encode_weight,
    read_response_size,
)
from devices.scale.units import WeightUnit
from gateway.drivers.contracts import ScaleStatus

DGT = BUILTIN_MODELS["dini-argeo-dgt"]
FLOAT = BUILTIN_MODELS["generic-float32"]


def block(register_map: RegisterMap, values: dict[int, int]) -> list[int]:
    first, count = register_map.block()
    return [values.get(address, 0) for address in range(first, first + count)]


def test_dgt_magnitudes_with_sign_and_flags_in_the_status_register() -> None:
    # gross 70 000 g (0x0001_1170), net 1 234 g negative; status: net sign, stable, tare active
    registers = [0x0001, 0x1170, 0x0000, 1234, 0b0010_0101]
    decoded = decode_weight(DGT, registers)
    assert decoded.gross_grams == 70_000
    assert decoded.net_grams == -1234
    assert decoded.stable is True
    assert decoded.status is ScaleStatus.OK
    assert DGT.block() == (0, 5)


@pytest.mark.parametrize(
    ("status_word", "expected"),
    [(0b1_0000, ScaleStatus.OVERLOAD), (0b0_1000, ScaleStatus.UNDERLOAD), (0, ScaleStatus.OK)],
)
def test_dgt_overload_and_underload_bits(status_word: int, expected: ScaleStatus) -> None:
    decoded = decode_weight(DGT, [0, 5, 0, 5, status_word])
    assert decoded.status is expected
    assert decoded.stable is False


def test_float32_word_orders() -> None:
    # 1.5 kg as IEEE-754: 0x3FC00000
    big = FLOAT.adjusted(unit=WeightUnit.KG)
    little = FLOAT.adjusted(word_order=WordOrder.LITTLE, unit=WeightUnit.KG)
    assert decode_weight(big, [0x3FC0, 0x0000]).net_grams == 1500
    assert decode_weight(little, [0x0000, 0x3FC0]).net_grams == 1500
    assert decode_weight(big, [0x3FC0, 0x0000]).stable is None  # no flag: the core judges
    assert encode_weight(little, gross_grams=0, net_grams=1500) == {0: 0x0000, 1: 0x3FC0}


def test_a_float_that_is_not_a_number_is_an_error_not_a_weight() -> None:
    decoded = decode_weight(FLOAT, [0x7FC0, 0x0000])  # NaN
    assert decoded == type(decoded)(None, None, None, ScaleStatus.ERROR)
    assert decode_weight(FLOAT, [0x7F80, 0x0000]).status is ScaleStatus.ERROR  # +inf


def test_custom_int16_map_with_decimals_unit_and_scattered_registers() -> None:
    custom = RegisterMap.model_validate(
        {
            "registers": "holding",
            "net_address": 10,
            "data_type": "int16",
            "decimals": 2,
            "unit": "lb",
            "status": {"address": 14, "stable": 0, "overload": 1},
        }
    )
    assert custom.block() == (10, 5)
    decoded = decode_weight(custom, [0xFFFF - 99, 0, 0, 0, 0b01])  # -1.00 lb, stable
    assert decoded.net_grams == pytest.approx(-453.59237)
    assert decoded.gross_grams is None
    assert decoded.stable is True


def test_register_offset_moves_every_address() -> None:
    moved = DGT.adjusted(offset=100)
    assert moved.block() == (100, 5)
    assert moved.status is not None
    assert moved.status.address == 104
    assert moved.command is not None
    assert moved.command.address == 100


@st.composite
def maps_and_weights(draw: st.DrawFn) -> tuple[RegisterMap, float, float]:
    data_type = draw(st.sampled_from(list(DataType)))
    status_bits = data_type in {DataType.UINT16, DataType.UINT32} and draw(st.booleans())
    decimals = draw(st.integers(0, 3))
    spec: dict[str, Any] = {
        "gross_address": draw(st.integers(0, 50)),
        "net_address": draw(st.integers(60, 100)),
        "data_type": data_type,
        "word_order": draw(st.sampled_from(list(WordOrder))),
        "decimals": decimals,
    }
    if status_bits:
        spec |= {
            "sign": "status_bits",
            "status": {"address": 110, "gross_negative": 1, "net_negative": 0, "stable": 2},
        }
    register_map = RegisterMap.model_validate(spec)
    if data_type is DataType.FLOAT32:
        limit = 1e6
    else:
        bits = 16 * data_type.width
        signed = data_type in {DataType.INT16, DataType.INT32}
        limit = (2 ** (bits - 1) - 1 if signed else 2**bits - 1) / 10**decimals
    negative_ok = status_bits or data_type in {DataType.INT16, DataType.INT32, DataType.FLOAT32}
    low = -limit if negative_ok else 0.0
    step = 10.0**-decimals
    gross = round(draw(st.floats(low, limit)) / step) * step
    net = round(draw(st.floats(low, limit)) / step) * step
    return register_map, max(low, min(gross, limit)), max(low, min(net, limit))


@given(maps_and_weights(), st.booleans())
def test_encode_then_decode_round_trips(
    case: tuple[RegisterMap, float, float], stable: bool
) -> None:
    register_map, gross, net = case
    values = encode_weight(register_map, gross_grams=gross, net_grams=net, stable=stable)
    decoded = decode_weight(register_map, block(register_map, values))
    assert decoded.gross_grams is not None
    assert decoded.net_grams is not None
    tolerance = 0.51 * 10.0**-register_map.decimals
    if register_map.data_type is DataType.FLOAT32:
        tolerance = max(abs(gross), abs(net)) * 1e-6 + 1e-6
    assert math.isclose(decoded.gross_grams, gross, abs_tol=tolerance)
    assert math.isclose(decoded.net_grams, net, abs_tol=tolerance)


@given(st.lists(st.integers(0, 0xFFFF), min_size=5, max_size=5))
def test_any_register_contents_decode_without_crashing(registers: list[int]) -> None:
    for register_map in (DGT, FLOAT.adjusted(word_order=WordOrder.LITTLE)):
        _first, count = register_map.block()
        decoded = decode_weight(register_map, registers[:count])
        assert decoded.status in set(ScaleStatus)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"data_type": "int32"}, "needs gross_address or net_address"),
        ({"net_address": 0}, "data_type"),
        ({"net_address": 0, "data_type": "int32", "word_order": "middle"}, "word_order"),
        ({"net_address": 0, "data_type": "int32", "sign": "status_bits"}, "unsigned data_type"),
        ({"net_address": 0, "data_type": "uint32", "sign": "status_bits"}, "status register"),
        (
            {
                "net_address": 0,
                "data_type": "uint32",
                "sign": "status_bits",
                "status": {"address": 2, "stable": 0},
            },
            "status.net_negative",
        ),
        (
            {"gross_address": 0, "net_address": 200, "data_type": "int16"},
            "one read covers at most 125",
        ),
        ({"net_address": 0, "data_type": "int16", "colour": "red"}, "colour"),
    ],
)
def test_bad_register_maps_are_refused_with_the_reason(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RegisterMap.model_validate(spec)


def frame(unit: int, payload: bytes) -> bytes:
    body = bytes([unit]) + payload
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


def test_diagnosis_names_what_went_wrong_with_a_reply() -> None:
    size = read_response_size(5)
    good = frame(7, bytes([4, 10]) + bytes(10))
    assert len(good) == size
    assert diagnose_reply(7, size, b"") == "no reply"
    assert "truncated" in diagnose_reply(7, size, good[:-3])
    assert "CRC error" in diagnose_reply(7, size, good[:-1] + bytes([good[-1] ^ 1]))
    assert "reply from unit 8 instead of 7" in diagnose_reply(7, size, frame(8, good[1:-2]))
