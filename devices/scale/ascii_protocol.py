"""ASCII scale protocols as pure functions: line splitting and the three line formats (no I/O).

- :class:`LineSplitter` turns a byte stream into text lines (CR, LF or CR LF), dropping the
  partial first line after a port opens, over-long runs and lines with binary noise — each
  counted in :attr:`LineSplitter.dropped`, never raised.
- :func:`parse_sics`: Mettler-Toledo MT-SICS replies (``S S     100.00 g``, ``S D ...``,
  ``S I``, ``S +``, ``S -``, ``Z A``, ``T S ...``, ``ES``, ``ET``, ``EL``).
- :func:`parse_ad_stream`: the A&D-style continuous stream (``ST,+00123.45  g``; headers
  ``ST`` stable, ``US`` unstable, ``QT`` counting, ``OL`` overload).
- :func:`parse_st_gs`: the indicator family ``[addr]ST,GS,     0.0,kg`` (``ST``/``US``/``OL``/
  ``UL``; ``GS`` gross, ``NT`` net; vendors vary in spacing, signs and commas).

Every parser returns None for a line that is not of its format (the driver counts those as
noise) and converts the device's unit to grams. A value made only of 9s (``99999.9``) or an
``E+19`` exponent is how scales print overload: it becomes OVERLOAD with no weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devices.scale.units import to_grams, unit_from_text
from gateway.drivers.contracts import ScaleStatus

__all__ = [
    "LineSplitter",
    "ScaleLine",
    "SicsReply",
    "parse_ad_stream",
    "parse_sics",
    "parse_st_gs",
    "parse_value",
]

_TERMINATORS = re.compile(rb"\r\n|\r|\n")
_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x09}


class LineSplitter:
    """Bytes in, clean ASCII lines out (see the module docstring)."""

    def __init__(self, *, max_line: int = 128, drop_first: bool = True) -> None:
        self._max_line = max_line
        self._buffer = bytearray()
        self._skip_to_terminator = drop_first  # the first line after opening may be partial
        self._overflowed = False
        self.dropped = 0  # lines/runs discarded as noise
        self.lines = 0  # clean lines returned

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        lines: list[str] = []
        while True:
            match = _TERMINATORS.search(self._buffer)
            if match is None:
                if len(self._buffer) > self._max_line:
                    # A run without terminator: noise or the wrong baud rate. Keep the tail
                    # that may begin the next line, and drop this one up to its end.
                    self._buffer.clear()
                    if not self._overflowed:
                        self.dropped += 1
                    self._overflowed = True
                    self._skip_to_terminator = True
                return lines
            raw = bytes(self._buffer[: match.start()])
            del self._buffer[: match.end()]
            if self._skip_to_terminator:
                self._skip_to_terminator = False
                self._overflowed = False
                continue
            if not raw.strip():
                continue  # the LF of a CR LF split across reads, or a blank line
            if len(raw) > self._max_line or any(byte not in _PRINTABLE for byte in raw):
                self.dropped += 1
                continue
            self.lines += 1
            lines.append(raw.decode("ascii").strip())

    def reset(self, *, drop_first: bool = True) -> None:
        self._buffer.clear()
        self._skip_to_terminator = drop_first
        self._overflowed = False


@dataclass(frozen=True, slots=True)
class ScaleLine:
    """What one line says about the weight. Weights are grams; None when the line carries
    no weight (overload, an error, a count instead of a weight)."""

    status: ScaleStatus
    stable: bool | None
    gross_grams: float | None = None
    net_grams: float | None = None
    unit: str | None = None  # the unit as the device wrote it
    address: str | None = None  # RS-485 address prefix, when the line had one


_OVERLOAD = "overload"


def parse_value(text: str) -> float | str | None:
    """A weight field: a float, the string ``"overload"`` for 9s/exponent overload markers,
    or None when it is not a number. Tolerates spaces between sign and digits."""
    compact = text.replace(" ", "")
    if not compact:
        return None
    if re.fullmatch(r"[+-]?[0-9.]*[0-9][0-9.]*[eE][+-]?\d+", compact):
        return _OVERLOAD
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", compact):
        return None
    digits = compact.lstrip("+-").replace(".", "")
    if len(digits) >= 5 and set(digits) == {"9"}:
        return _OVERLOAD
    return float(compact)


def _weight_line(
    value_text: str,
    unit_text: str,
    *,
    stable: bool | None,
    net: bool,
    address: str | None = None,
) -> ScaleLine | None:
    value = parse_value(value_text)
    if value is None:
        return None
    if value == _OVERLOAD:
        return ScaleLine(ScaleStatus.OVERLOAD, stable, unit=unit_text or None, address=address)
    assert isinstance(value, float)
    unit = unit_from_text(unit_text)
    if unit is None:  # counting mode, percent, or a unit we do not know: no weight
        return ScaleLine(ScaleStatus.ERROR, stable, unit=unit_text or None, address=address)
    grams = to_grams(value, unit)
    return ScaleLine(
        ScaleStatus.OK,
        stable,
        gross_grams=None if net else grams,
        net_grams=grams if net else None,
        unit=unit_text,
        address=address,
    )


# --- MT-SICS ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SicsReply:
    """One MT-SICS reply: the command it answers (``S``, ``Z``, ``T``…; ``ES``/``ET``/``EL``
    for the scale's error replies), its status letter, and the weight when it carries one."""

    command: str
    status: str
    line: ScaleLine | None = None

    @property
    def is_error(self) -> bool:
        return self.command in {"ES", "ET", "EL"}


_SICS = re.compile(r"^(?P<command>[A-Z][A-Z0-9]{0,3})(?:\s+(?P<status>\S))?(?:\s+(?P<rest>.*))?$")
_SICS_WEIGHT = re.compile(r"^(?P<value>[+-]?\s*[0-9.]+(?:[eE][+-]?\d+)?)\s*(?P<unit>\S*)$")


def parse_sics(line: str) -> SicsReply | None:  # noqa: PLR0911 - one return per reply kind
    """Parse an MT-SICS reply line; None when it is not one."""
    text = line.strip()
    if text in {"ES", "ET", "EL"}:
        return SicsReply(text, "")
    match = _SICS.match(text)
    if match is None or match["status"] is None:
        return None
    command, status, rest = match["command"], match["status"], (match["rest"] or "").strip()
    if command in {"S", "SI", "SIR"}:
        command = "S"
        if status in {"S", "D"}:
            weight = _SICS_WEIGHT.match(rest)
            if weight is None:
                return None
            parsed = _weight_line(weight["value"], weight["unit"], stable=status == "S", net=True)
            return None if parsed is None else SicsReply(command, status, parsed)
        if status == "+":
            return SicsReply(command, status, ScaleLine(ScaleStatus.OVERLOAD, None))
        if status == "-":
            return SicsReply(command, status, ScaleLine(ScaleStatus.UNDERLOAD, None))
        if status == "I":
            return SicsReply(command, status, ScaleLine(ScaleStatus.ERROR, None))
        return None
    if status in {"A", "S", "I", "+", "-", "L", "B"}:
        return SicsReply(command, status)
    return None


# --- A&D stream ---------------------------------------------------------------------------

_AD = re.compile(
    r"^(?P<header>ST|US|QT|OL)\s*,\s*(?P<value>[+-]?\s*[0-9.]+(?:[eE][+-]?\d+)?)\s*(?P<unit>[A-Za-z%]*)\s*$"
)


def parse_ad_stream(line: str) -> ScaleLine | None:
    """Parse one A&D-style stream line; None when it is not one."""
    match = _AD.match(line.strip())
    if match is None:
        return None
    header = match["header"]
    if header == "OL":
        return ScaleLine(ScaleStatus.OVERLOAD, None, unit=match["unit"] or None)
    if header == "QT":  # counting mode: the value is pieces, not weight
        return ScaleLine(ScaleStatus.ERROR, None, unit=match["unit"] or None)
    return _weight_line(match["value"], match["unit"], stable=header == "ST", net=True)


# --- ST,GS indicators ---------------------------------------------------------------------

_ST_GS = re.compile(
    r"^(?P<address>\d{2})?\s*(?P<header>ST|US|OL|UL)\s*,\s*(?P<kind>GS|NT|GR|NET|TR)\s*,"
    r"\s*(?P<value>[+-]?\s*[0-9.]*[0-9][0-9.]*(?:[eE][+-]?\d+)?)\s*,?\s*(?P<unit>[A-Za-z%]*)\s*$"
)


def parse_st_gs(line: str) -> ScaleLine | None:
    """Parse one ``ST,GS`` family line (optional 2-digit RS-485 address); None when it is not
    one. The address (if any) is in :attr:`ScaleLine.address` for the driver to filter on."""
    match = _ST_GS.match(line.strip())
    if match is None:
        return None
    header, kind, address = match["header"], match["kind"], match["address"]
    unit = match["unit"] or None
    if kind == "TR":
        return None  # a tare line: not the weight on the plate
    if header == "OL":
        return ScaleLine(ScaleStatus.OVERLOAD, None, unit=unit, address=address)
    if header == "UL":
        return ScaleLine(ScaleStatus.UNDERLOAD, None, unit=unit, address=address)
    return _weight_line(
        match["value"],
        match["unit"],
        stable=header == "ST",
        net=kind in {"NT", "NET"},
        address=address,
    )
