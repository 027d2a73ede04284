"""Modbus weight transmitters as data: register maps, decoding, and reply diagnosis (no I/O).

A :class:`RegisterMap` says where one weight channel lives in a device's registers and how to
read it: register kind, gross/net addresses, data type, word order, sign convention, decimals,
unit, status bits and the command register for zero/tare. Addresses are 0-based wire addresses
(manual register 30001 is input register 0).

Built-in models (:data:`BUILTIN_MODELS`) cover the common families; anything else is a custom
map in the configuration, validated by the same model. The simulator encodes with
:func:`encode_weight` and the driver decodes with :func:`decode_weight`, so both sides share one
definition of every map.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymodbus.framer import FramerRTU

from devices.scale.units import WeightUnit, to_grams
from gateway.drivers.contracts import ScaleStatus

__all__ = [
    "BUILTIN_MODELS",
    "MAX_READ_REGISTERS",
    "CommandRegister",
    "DataType",
    "DecodedWeight",
    "RegisterKind",
    "RegisterMap",
    "SignMode",
    "StatusBits",
    "WordOrder",
    "decode_weight",
    "diagnose_reply",
    "encode_weight",
    "read_response_size",
]

MAX_READ_REGISTERS = 125  # one FC03/FC04 request reads at most this many registers

_Address = Field(ge=0, le=0xFFFF)
_Bit = Field(None, ge=0, le=15)


class RegisterKind(StrEnum):
    INPUT = "input"  # FC04
    HOLDING = "holding"  # FC03


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"

    @property
    def width(self) -> int:
        """Registers one value takes."""
        return 1 if self in {DataType.INT16, DataType.UINT16} else 2


class WordOrder(StrEnum):
    BIG = "big"  # high word first (Modbus' own byte order, "ABCD")
    LITTLE = "little"  # low word first ("CDAB")


class SignMode(StrEnum):
    TWOS_COMPLEMENT = "twos_complement"  # the value carries its sign (or is float)
    STATUS_BITS = "status_bits"  # the value is a magnitude; the sign is a status bit


class StatusBits(BaseModel):
    """A status register and which of its bits (0 = least significant) mean what."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: int = _Address
    stable: int | None = Field(None, ge=0, le=15, description="Set while the weight is stable.")
    overload: int | None = _Bit
    underload: int | None = _Bit
    gross_negative: int | None = _Bit
    net_negative: int | None = _Bit


class CommandRegister(BaseModel):
    """Where zero and tare are commanded. Edge-triggered devices act on a change of value, so
    the driver writes ``idle`` again after ``hold_s`` (and a repeated command is a new edge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: int = _Address
    zero: int | None = Field(None, ge=0, le=0xFFFF, description="Value that zeroes the scale.")
    tare: int | None = Field(None, ge=0, le=0xFFFF, description="Value that tares the scale.")
    idle: int = Field(0, ge=0, le=0xFFFF, description="Value written after a command.")
    edge_triggered: bool = Field(True, description="Write `idle` after each command.")
    hold_s: float = Field(0.1, ge=0, le=10, description="Time the command value is held.")
    function: Literal[6, 16] = Field(6, description="Write Single (6) or Multiple (16).")


class RegisterMap(BaseModel):
    """One weight channel of a device (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registers: RegisterKind = RegisterKind.INPUT
    gross_address: int | None = Field(None, ge=0, le=0xFFFF)
    net_address: int | None = Field(None, ge=0, le=0xFFFF)
    data_type: DataType
    word_order: WordOrder = WordOrder.BIG
    sign: SignMode = SignMode.TWOS_COMPLEMENT
    decimals: int = Field(0, ge=0, le=6, description="Raw integer / 10**decimals = weight.")
    unit: WeightUnit = WeightUnit.G
    status: StatusBits | None = None
    command: CommandRegister | None = None

    @model_validator(mode="after")
    def _coherent(self) -> RegisterMap:
        if self.gross_address is None and self.net_address is None:
            raise ValueError("a register map needs gross_address or net_address (or both)")
        if self.sign is SignMode.STATUS_BITS:
            if self.data_type not in {DataType.UINT16, DataType.UINT32}:
                raise ValueError("sign = 'status_bits' needs an unsigned data_type")
            status = self.status
            if status is None:
                raise ValueError("sign = 'status_bits' needs a status register")
            if self.gross_address is not None and status.gross_negative is None:
                raise ValueError("sign = 'status_bits' needs status.gross_negative")
            if self.net_address is not None and status.net_negative is None:
                raise ValueError("sign = 'status_bits' needs status.net_negative")
        first, count = self.block()
        if count > MAX_READ_REGISTERS:
            raise ValueError(
                f"the registers span {count} registers from {first}; one read covers at most "
                f"{MAX_READ_REGISTERS}"
            )
        if first + count - 1 > 0xFFFF:
            raise ValueError("registers run past address 65535")
        return self

    def block(self) -> tuple[int, int]:
        """``(first address, count)`` of the one read that covers every register of the map."""
        spans = [
            (address, address + self.data_type.width)
            for address in (self.gross_address, self.net_address)
            if address is not None
        ]
        if self.status is not None:
            spans.append((self.status.address, self.status.address + 1))
        first = min(start for start, _ in spans)
        return first, max(end for _, end in spans) - first

    def adjusted(
        self,
        *,
        offset: int = 0,
        word_order: WordOrder | None = None,
        decimals: int | None = None,
        unit: WeightUnit | None = None,
    ) -> RegisterMap:
        """This map for one installed device: addresses shifted by ``offset`` (a sub-channel
        of a multi-channel transmitter) and per-device settings overridden. Validated again."""
        data = self.model_dump()
        for key in ("gross_address", "net_address"):
            if data[key] is not None:
                data[key] += offset
        for key in ("status", "command"):
            if data[key] is not None:
                data[key]["address"] += offset
        if word_order is not None:
            data["word_order"] = word_order
        if decimals is not None:
            data["decimals"] = decimals
        if unit is not None:
            data["unit"] = unit
        return RegisterMap.model_validate(data)


#: Known models. Check addresses and settings against the device's manual; anything that
#: differs is a custom map in ``[devices.options.models]``.
BUILTIN_MODELS: Mapping[str, RegisterMap] = MappingProxyType(
    {
        # Dini Argeo DGT4X / DGT1S family (Laumas TLU and CAS CI-600D work the same way):
        # magnitudes with the sign in the status register, edge-triggered command register.
        "dini-argeo-dgt": RegisterMap(
            registers=RegisterKind.INPUT,
            gross_address=0,
            net_address=2,
            data_type=DataType.UINT32,
            word_order=WordOrder.BIG,
            sign=SignMode.STATUS_BITS,
            status=StatusBits(
                address=4, net_negative=0, gross_negative=1, stable=2, underload=3, overload=4
            ),
            command=CommandRegister(address=0, zero=1, tare=2, idle=0, edge_triggered=True),
        ),
        # Transmitters reporting net weight as IEEE-754 float32 (Seneca Z-SG style): the word
        # order is a device setting, so set `word_order` per device; no stable flag (the core
        # judges stability from the samples) and no command register.
        "generic-float32": RegisterMap(
            registers=RegisterKind.INPUT,
            net_address=0,
            data_type=DataType.FLOAT32,
            word_order=WordOrder.BIG,
        ),
    }
)


@dataclass(frozen=True, slots=True)
class DecodedWeight:
    gross_grams: float | None
    net_grams: float | None
    stable: bool | None
    status: ScaleStatus


_STRUCT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
}


def _words(value_bytes: bytes) -> list[int]:
    return [int.from_bytes(value_bytes[i : i + 2], "big") for i in range(0, len(value_bytes), 2)]


def _value(words: Sequence[int], data_type: DataType, word_order: WordOrder) -> float:
    if data_type.width == 2 and word_order is WordOrder.LITTLE:
        words = [words[1], words[0]]
    raw = b"".join(word.to_bytes(2, "big") for word in words)
    value: float = struct.unpack(_STRUCT[data_type], raw)[0]
    return value


def _bit(status_word: int, bit: int | None) -> bool:
    return bit is not None and bool(status_word >> bit & 1)


def decode_weight(register_map: RegisterMap, registers: Sequence[int]) -> DecodedWeight:
    """Decode the block read for ``register_map`` (see :meth:`RegisterMap.block`).

    A value that is not a number (a float NaN/infinity) gives status ERROR with no weights.
    """
    first, count = register_map.block()
    if len(registers) != count:
        raise ValueError(f"expected {count} registers, got {len(registers)}")
    status_word = 0
    bits = register_map.status
    if bits is not None:
        status_word = registers[bits.address - first]
    scale = 10.0**-register_map.decimals

    def weight(address: int | None, negative_bit: int | None) -> float | None:
        if address is None:
            return None
        width = register_map.data_type.width
        words = registers[address - first : address - first + width]
        value = _value(words, register_map.data_type, register_map.word_order)
        if register_map.sign is SignMode.STATUS_BITS and _bit(status_word, negative_bit):
            value = -value
        return to_grams(value * scale, register_map.unit)

    gross = weight(register_map.gross_address, bits.gross_negative if bits else None)
    net = weight(register_map.net_address, bits.net_negative if bits else None)
    if any(value is not None and not math.isfinite(value) for value in (gross, net)):
        return DecodedWeight(None, None, None, ScaleStatus.ERROR)
    status = ScaleStatus.OK
    stable: bool | None = None
    if bits is not None:
        if _bit(status_word, bits.overload):
            status = ScaleStatus.OVERLOAD
        elif _bit(status_word, bits.underload):
            status = ScaleStatus.UNDERLOAD
        if bits.stable is not None:
            stable = _bit(status_word, bits.stable)
    return DecodedWeight(gross, net, stable, status)


def _raw(register_map: RegisterMap, grams: float) -> tuple[list[int], bool]:
    """Registers for one weight, and whether it is negative (for sign bits)."""
    value = grams / to_grams(1.0, register_map.unit) * 10.0**register_map.decimals
    data_type = register_map.data_type
    negative = value < 0
    if data_type is DataType.FLOAT32:
        raw = struct.pack(">f", value)
    else:
        integer = round(abs(value) if register_map.sign is SignMode.STATUS_BITS else value)
        bits = 16 * data_type.width
        if data_type in {DataType.UINT16, DataType.UINT32}:
            integer = max(0, min(integer, 2**bits - 1))
        else:
            integer = max(-(2 ** (bits - 1)), min(integer, 2 ** (bits - 1) - 1))
        raw = struct.pack(_STRUCT[data_type], integer)
    words = _words(raw)
    if data_type.width == 2 and register_map.word_order is WordOrder.LITTLE:
        words.reverse()
    return words, negative


def encode_weight(
    register_map: RegisterMap,
    *,
    gross_grams: float,
    net_grams: float,
    stable: bool = True,
    overload: bool = False,
    underload: bool = False,
) -> dict[int, int]:
    """The register values (address → word) a device following ``register_map`` shows for
    these weights: what the simulator serves and the round-trip tests check."""
    values: dict[int, int] = {}
    status_word = 0
    bits = register_map.status
    for address, grams, negative_bit in (
        (register_map.gross_address, gross_grams, bits.gross_negative if bits else None),
        (register_map.net_address, net_grams, bits.net_negative if bits else None),
    ):
        if address is None:
            continue
        words, negative = _raw(register_map, grams)
        for index, word in enumerate(words):
            values[address + index] = word
        if negative and negative_bit is not None and register_map.sign is SignMode.STATUS_BITS:
            status_word |= 1 << negative_bit
    if bits is not None:
        for flag, bit in ((stable, bits.stable), (overload, bits.overload)):
            if flag and bit is not None:
                status_word |= 1 << bit
        if underload and bits.underload is not None:
            status_word |= 1 << bits.underload
        values[bits.address] = status_word
    return values


def read_response_size(count: int) -> int:
    """Bytes of an RTU reply to a read of ``count`` registers: unit, function, byte count,
    data, CRC."""
    return 5 + 2 * count


def diagnose_reply(unit_id: int, expected_size: int, received: bytes) -> str:
    """Why ``received`` (what came back after a request to ``unit_id``) is not a valid reply,
    in words a technician can act on."""
    if not received:
        return "no reply"
    if received[0] != unit_id and len(received) >= 4:
        return f"reply from unit {received[0]} instead of {unit_id} (address clash or echo)"
    if len(received) >= 2 and received[1] & 0x80:
        expected_size = 5
    if len(received) < expected_size:
        return f"truncated reply ({len(received)} of {expected_size} bytes)"
    frame = received[:expected_size]
    crc = int.from_bytes(frame[-2:], "big")
    if not FramerRTU.check_CRC(frame[:-2], crc):
        return "CRC error (noise, wrong baud/parity, or A/B swapped)"
    return f"unexpected reply ({len(received)} bytes)"
