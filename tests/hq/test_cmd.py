"""`storegw hq cmd`: reading a command's ``key=value`` arguments."""

from __future__ import annotations

from gateway.hq.cmd import parse_command_args


def test_command_arguments_parse() -> None:
    assert parse_command_args(["a=1", "b=x", 'c=["y"]']) == {"a": 1, "b": "x", "c": ["y"]}
    for bad in (["novalue"], ["=1"]):
        try:
            parse_command_args(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
