"""The Toledo continuous output format, pure: framing, decoding and encoding (no I/O).

Many weighing indicators (Mettler Toledo's, and Rice Lake, Cardinal, Fairbanks and others
emulating them) stream this frame several times a second::

    STX  SWA SWB SWC  wwwwww  tttttt  CR  [CKS]
    02   status words  weight  tare   0D  checksum (optional)

The weight is six digits without sign or decimal point (leading zeros may be spaces), the
displayed value: gross or net. The tare is six digits too, left out in the *short* format.
The status words (bit 7 is parity on the wire, so every byte is read as 7-bit ASCII):

- SWA bits 0-2: where the decimal point is, ``0`` = two dummy zeros (``XXXX00``) ... ``2`` =
  integer (``XXXXXX``) ... ``7`` = ``X.XXXXX``; bits 3-4 the display increment; bit 5 set.
- SWB bit 0 net, bit 1 negative, bit 2 out of range (over capacity or under zero), bit 3 in
  motion, bit 4 kg (else lb), bit 6 not zeroed since power-up.
- SWC bits 0-2: the unit when not 0 (1 grams, 2 metric tons); bit 3 print request.

The checksum is the two's complement of the 7-bit sum of every character from STX to CR.
:class:`FrameSplitter` finds frames in a byte stream and resynchronises after garbage;
:func:`decode_frame` reads one (None if it is not a valid frame); :func:`sample_fields` turns
a frame into what a :class:`~gateway.drivers.contracts.WeightSample` carries, in grams.
:func:`encode_frame` is for simulators. Check a device's manual for its variant: unit codes
beyond metric tons and the "expanded x10" display bit (SWC bit 4) are not interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.scale.units import WeightUnit, to_grams
from gateway.drivers.contracts import ScaleStatus

__all__ = [
    "FrameSplitter",
    "ToledoFrame",
    "checksum",
    "decode_frame",
    "encode_frame",
    "frame_length",
    "sample_fields",
]

STX, CR = 0x02, 0x0D
_DIGITS = frozenset(b"0123456789")
_SPACE = 0x20
_SWC_UNITS = {1: WeightUnit.G, 2: WeightUnit.T}


@dataclass(frozen=True, slots=True)
class ToledoFrame:
    """One decoded frame. ``weight``/``tare`` are in the frame's unit (``None``: a unit code
    this module does not read); ``tare`` is None in the short format."""

    weight: float
    tare: float | None
    net: bool
    stable: bool
    out_of_range: bool
    unit: WeightUnit | None
    not_zeroed: bool = False
    print_request: bool = False


def frame_length(*, tare_field: bool, with_checksum: bool) -> int:
    return 1 + 3 + 6 + (6 if tare_field else 0) + 1 + (1 if with_checksum else 0)


def checksum(data: bytes) -> int:
    """Two's complement of the 7-bit sum of ``data`` (STX to CR), as a 7-bit character."""
    return -sum(byte & 0x7F for byte in data) & 0x7F


def _field(raw: bytes) -> int | None:
    """Six digits, leading zeros possibly spaces; None if anything else."""
    digits = raw.lstrip(b" ")
    if not digits or not set(digits) <= _DIGITS:
        return None
    return int(digits)


def decode_frame(frame: bytes, *, tare_field: bool, with_checksum: bool) -> ToledoFrame | None:
    """One whole frame, STX first; None if its length, CR, digits or checksum are wrong."""
    data = bytes(byte & 0x7F for byte in frame)
    if len(data) != frame_length(tare_field=tare_field, with_checksum=with_checksum):
        return None
    end = len(data) - (2 if with_checksum else 1)
    if data[0] != STX or data[end] != CR:
        return None
    if with_checksum and checksum(data[: end + 1]) != data[-1]:
        return None
    swa, swb, swc = data[1], data[2], data[3]
    weight, tare = _field(data[4:10]), _field(data[10:16]) if tare_field else 0
    out_of_range = bool(swb & 0x04)
    if tare is None or (weight is None and not out_of_range):
        return None  # an out-of-range weight may be blank or dashes on some indicators
    scale = 10.0 ** (2 - (swa & 0x07))
    code = swc & 0x07
    unit = (WeightUnit.KG if swb & 0x10 else WeightUnit.LB) if code == 0 else _SWC_UNITS.get(code)
    sign = -1 if swb & 0x02 else 1
    return ToledoFrame(
        weight=sign * (weight or 0) * scale,
        tare=tare * scale if tare_field else None,
        net=bool(swb & 0x01),
        stable=not swb & 0x08,
        out_of_range=out_of_range,
        unit=unit,
        not_zeroed=bool(swb & 0x40),
        print_request=bool(swc & 0x08),
    )


def sample_fields(frame: ToledoFrame) -> tuple[ScaleStatus, float | None, float | None]:
    """``(status, gross_grams, net_grams)``: out of range is OVERLOAD (UNDERLOAD when the sign
    says below zero) and an unknown unit ERROR, both without weights. Gross and net follow
    from the displayed weight and the tare; without a tare field only the shown one is known.
    """
    if frame.out_of_range:
        status = ScaleStatus.UNDERLOAD if frame.weight < 0 else ScaleStatus.OVERLOAD
        return status, None, None
    if frame.unit is None:
        return ScaleStatus.ERROR, None, None
    shown = to_grams(frame.weight, frame.unit)
    tare = None if frame.tare is None else to_grams(frame.tare, frame.unit)
    if frame.net:
        return ScaleStatus.OK, None if tare is None else shown + tare, shown
    return ScaleStatus.OK, shown, None if tare is None else shown - tare


class FrameSplitter:
    """Bytes in, decoded frames out. Bytes before an STX are noise; a frame that does not
    decode is skipped and the search resumes just after its STX (so a frame hidden behind a
    stray STX is still found). Counted, never raised."""

    def __init__(self, *, tare_field: bool = True, with_checksum: bool = True) -> None:
        self._tare_field = tare_field
        self._checksum = with_checksum
        self._length = frame_length(tare_field=tare_field, with_checksum=with_checksum)
        self._buffer = bytearray()
        self.frames = 0  # frames decoded
        self.rejected = 0  # STX-led runs that were no valid frame
        self.noise = 0  # bytes outside any frame

    def reset(self) -> None:
        self._buffer.clear()

    def feed(self, data: bytes) -> list[ToledoFrame]:
        self._buffer += bytes(byte & 0x7F for byte in data)
        found: list[ToledoFrame] = []
        while True:
            start = self._buffer.find(STX)
            if start < 0:
                self.noise += len(self._buffer)
                self._buffer.clear()
                return found
            self.noise += start
            del self._buffer[:start]
            if len(self._buffer) < self._length:
                return found
            frame = decode_frame(
                bytes(self._buffer[: self._length]),
                tare_field=self._tare_field,
                with_checksum=self._checksum,
            )
            if frame is None:
                self.rejected += 1
                del self._buffer[:1]
                continue
            self.frames += 1
            found.append(frame)
            del self._buffer[: self._length]


def encode_frame(
    weight: float,
    *,
    tare: float = 0.0,
    net: bool = False,
    stable: bool = True,
    out_of_range: bool = False,
    unit: WeightUnit = WeightUnit.KG,
    decimals: int = 2,
    tare_field: bool = True,
    with_checksum: bool = True,
    parity: bool = False,
) -> bytes:
    """A frame as an indicator sends it (for simulators and tests). ``weight`` and ``tare``
    are in ``unit`` (kg, lb, g or t), shown with ``decimals`` (-2 to 5) decimal places;
    ``parity`` sets bit 7 as even parity, as a 7E1 device seen on an 8N1 line."""
    if not -2 <= decimals <= 5:
        raise ValueError("decimals is -2 (two dummy zeros) to 5")
    scale = 10.0**decimals
    shown, tare_units = round(abs(weight) * scale), round(tare * scale)
    if out_of_range:
        shown = 999_999
    if shown > 999_999 or not 0 <= tare_units <= 999_999:
        raise ValueError("weight and tare must fit six digits")
    swa = 0x20 | 0x08 | (decimals + 2)
    swb = 0x20 | int(net) | (0x02 if weight < 0 else 0) | (0x04 if out_of_range else 0)
    swb |= (0 if stable else 0x08) | (0x10 if unit is WeightUnit.KG else 0)
    if unit not in (WeightUnit.KG, WeightUnit.LB, WeightUnit.G, WeightUnit.T):
        raise ValueError(f"the frame has no code for {unit}")
    swc = 0x20 | {WeightUnit.G: 1, WeightUnit.T: 2}.get(unit, 0)
    body = bytes([STX, swa, swb, swc]) + f"{shown:6d}".encode()
    if tare_field:
        body += f"{tare_units:06d}".encode()
    body += bytes([CR])
    if with_checksum:
        body += bytes([checksum(body)])
    return bytes(_with_parity(byte) for byte in body) if parity else body


def _with_parity(byte: int) -> int:
    return byte | 0x80 if byte.bit_count() % 2 else byte
