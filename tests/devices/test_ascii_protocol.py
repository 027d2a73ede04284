"""ASCII scale parsers and the line splitter without I/O, including garbage of every kind."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.scale.ascii_protocol import (
    LineSplitter,
    ScaleLine,
    parse_ad_stream,
    parse_sics,
    parse_st_gs,
    parse_value,
)
from gateway.drivers.contracts import ScaleStatus

OK, OVER, UNDER, ERROR = (
    ScaleStatus.OK,
    ScaleStatus.OVERLOAD,
    ScaleStatus.UNDERLOAD,
    ScaleStatus.ERROR,
)

# --- splitter -------------------------------------------------------------------------------


def test_the_partial_first_line_after_opening_is_dropped() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"0123.45  g\r\nST,+00001.00  g\r\n") == ["ST,+00001.00  g"]


def test_lines_split_across_reads_and_any_terminator() -> None:
    splitter = LineSplitter(drop_first=False)
    assert splitter.feed(b"S S      1.00 g\r") == ["S S      1.00 g"]
    assert splitter.feed(b"\nS S ") == []
    assert splitter.feed(b"     2.00 g\nZ A\r") == ["S S      2.00 g", "Z A"]


def test_binary_noise_and_overlong_runs_are_dropped_and_counted() -> None:
    splitter = LineSplitter(max_line=32, drop_first=False)
    lines = splitter.feed(b"ST,+00001.00  g\r\n\x00\xff\xfeST\x02\r\n" + b"x" * 100)
    assert lines == ["ST,+00001.00  g"]
    assert splitter.feed(b"tail of the run\r\nST,+00002.00  g\r\n") == ["ST,+00002.00  g"]
    assert splitter.dropped == 2  # the binary line and the overlong run (once)
    assert splitter.lines == 2


@given(st.binary(max_size=400), st.integers(0, 3))
def test_the_splitter_never_crashes_and_yields_only_clean_lines(data: bytes, chunk: int) -> None:
    splitter = LineSplitter(max_line=40)
    step = max(1, chunk * 7)
    out: list[str] = []
    for offset in range(0, len(data), step):
        out += splitter.feed(data[offset : offset + step])
    for line in out:
        assert line.isascii()
        assert "\r" not in line
        assert "\n" not in line
        assert len(line) <= 40


@given(st.binary(max_size=200))
def test_a_good_line_after_garbage_and_a_terminator_is_recovered(garbage: bytes) -> None:
    splitter = LineSplitter(max_line=64)
    lines = splitter.feed(garbage + b"\r\nST,+00123.45  g\r\n")
    assert lines[-1] == "ST,+00123.45  g"


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+00123.45", 123.45),
        ("-  4.876", -4.876),
        ("     0.0", 0.0),
        (".5", 0.5),
        ("99999.9", "overload"),
        ("+9999999E+19", "overload"),
        ("9999", 9999.0),  # four 9s can be a real weight
        ("12.3.4", None),
        ("", None),
        ("abc", None),
    ],
)
def test_parse_value(text: str, expected: float | str | None) -> None:
    assert parse_value(text) == expected


# --- MT-SICS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command", "status", "reading"),
    [
        ("S S     100.00 g", "S", "S", ScaleLine(OK, True, net_grams=100.0, unit="g")),
        ("S D      1.234 kg", "S", "D", ScaleLine(OK, False, net_grams=1234.0, unit="kg")),
        ("S S     -12.50 g", "S", "S", ScaleLine(OK, True, net_grams=-12.5, unit="g")),
        ("S S      2.000 lb", "S", "S", ScaleLine(OK, True, net_grams=907.18474, unit="lb")),
        ("S I", "S", "I", ScaleLine(ERROR, None)),
        ("S +", "S", "+", ScaleLine(OVER, None)),
        ("S -", "S", "-", ScaleLine(UNDER, None)),
        ("S S     12.00 PCS", "S", "S", ScaleLine(ERROR, True, unit="PCS")),
        ("Z A", "Z", "A", None),
        ("Z I", "Z", "I", None),
        ("T S     100.00 g", "T", "S", None),
        ("ES", "ES", "", None),
        ("ET", "ET", "", None),
        ("EL", "EL", "", None),
    ],
)
def test_sics_replies(line: str, command: str, status: str, reading: ScaleLine | None) -> None:
    reply = parse_sics(line)
    assert reply is not None
    assert (reply.command, reply.status) == (command, status)
    if reading is None:
        assert reply.line is None
    else:
        assert reply.line is not None
        assert reply.line.status is reading.status
        assert reply.line.stable == reading.stable
        assert reply.line.net_grams == pytest.approx(reading.net_grams)
    assert reply.is_error == (command in {"ES", "ET", "EL"})


@pytest.mark.parametrize("line", ["", "S", "S S", "S S abc g", "ST,+00001.00  g", "hello world"])
def test_non_sics_lines(line: str) -> None:
    assert parse_sics(line) is None


# --- A&D stream -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "status", "stable", "grams"),
    [
        ("ST,+00123.45  g", OK, True, 123.45),
        ("US,-00001.20  g", OK, False, -1.2),
        ("ST,+0001.234 kg", OK, True, 1234.0),
        ("ST,+00002.00 oz", OK, True, 56.69904625),
        ("ST,+000012.5 lb", OK, True, 5669.904625),
        ("OL,+9999999E+19", OVER, None, None),
        ("OL,+99999.99  g", OVER, None, None),
        ("ST,+99999.99  g", OVER, True, None),  # 9s without the OL header: still overload
        ("QT,+00000012 PC", ERROR, None, None),  # counting mode: not a weight
        ("ST , +00005.00 g", OK, True, 5.0),  # vendors vary in spacing
    ],
)
def test_ad_stream_lines(line: str, status: ScaleStatus, stable: bool | None, grams: float) -> None:
    parsed = parse_ad_stream(line)
    assert parsed is not None
    assert parsed.status is status
    assert parsed.stable == stable
    assert parsed.net_grams == (None if grams is None else pytest.approx(grams))


@pytest.mark.parametrize("line", ["XX,+00001.00  g", "ST,", "ST,+00,01  g", "S S 1.00 g"])
def test_non_ad_lines(line: str) -> None:
    assert parse_ad_stream(line) is None


# --- ST,GS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "address", "status", "gross", "net"),
    [
        ("01ST,GS,     0.0,kg", "01", OK, 0.0, None),
        ("ST,GS,+  4.876kg", None, OK, 4876.0, None),
        ("02US,NT,-  1.500,kg", "02", OK, None, -1500.0),
        ("ST,GS,   125.0,g", None, OK, 125.0, None),
        ("OL,GS,9999999.9,kg", None, OVER, None, None),
        ("01UL,GS,-   9.9,kg", "01", UNDER, None, None),
        ("ST,GS,  99999.9,kg", None, OVER, None, None),
    ],
)
def test_st_gs_lines(
    line: str, address: str | None, status: ScaleStatus, gross: float | None, net: float | None
) -> None:
    parsed = parse_st_gs(line)
    assert parsed is not None
    assert parsed.address == address
    assert parsed.status is status
    assert parsed.gross_grams == (None if gross is None else pytest.approx(gross))
    assert parsed.net_grams == (None if net is None else pytest.approx(net))


@pytest.mark.parametrize(
    "line", ["ST,XX,   1.0,kg", "1ST,GS,1.0,kg", "ST,TR,  1.0,kg", "ST,GS,,kg"]
)
def test_non_st_gs_lines(line: str) -> None:
    assert parse_st_gs(line) is None


@given(st.text(max_size=60))
def test_no_parser_crashes_on_any_text(text: str) -> None:
    for parse in (parse_ad_stream, parse_st_gs):
        parsed = parse(text)
        assert parsed is None or isinstance(parsed, ScaleLine)
    reply = parse_sics(text)
    assert reply is None or isinstance(reply.command, str)
