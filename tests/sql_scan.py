"""Which gateway modules hold SQL on which tables: read from the string literals of every
module under ``gateway/`` (an f-string's literal parts joined; adjacent literals are one string
to the parser already). The ownership tests use it: a table's owner is the one module (with
its private statement modules) whose SQL names it."""

from __future__ import annotations

import ast
import re
from collections.abc import Collection
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[1] / "gateway"

_WRITE = r"(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)"
_ANY = rf"(?:{_WRITE}|FROM|JOIN|ALTER\s+TABLE|CREATE\s+TABLE|DROP\s+TABLE)"


def _literals(source: str) -> list[str]:
    texts = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            texts.append(
                " ".join(
                    part.value
                    for part in node.values
                    if isinstance(part, ast.Constant) and isinstance(part.value, str)
                )
            )
    return texts


def tables_in(source: str, tables: Collection[str], *, writes_only: bool) -> set[str]:
    """The ``tables`` the SQL in ``source`` writes (``writes_only``) or names at all."""
    verb = _WRITE if writes_only else _ANY
    pattern = re.compile(
        rf"\b{verb}\s+[\"`\[]?({'|'.join(map(re.escape, tables))})\b", re.IGNORECASE
    )
    return {match.lower() for text in _literals(source) for match in pattern.findall(text)}


def modules_using(tables: Collection[str], *, writes_only: bool) -> dict[str, set[str]]:
    """Module (relative to gateway/) → which of ``tables`` its SQL writes or names."""
    result = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        found = tables_in(path.read_text(encoding="utf-8"), tables, writes_only=writes_only)
        if found:
            result[path.relative_to(GATEWAY).as_posix()] = found
    return result
