"""The price book has one owner: no module of the gateway but :mod:`gateway.prices.book` (and
its statements, ``_book_sql``) writes ``price_book``, ``price_history``, ``promotions`` or
``promotion_history`` — the downlink, the label planner and everything else go through
``PriceBook``. Schema migrations are the exception (they create and reshape the tables)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
TABLES = ("price_book", "price_history", "promotions", "promotion_history")
OWNERS = {"prices/book.py", "prices/_book_sql.py"}
MIGRATIONS = {"store/migrations.py"}

_WRITE = re.compile(
    r"\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)"
    r"\s+[\"`\[]?(" + "|".join(TABLES) + r")\b",
    re.IGNORECASE,
)


def written_tables(source: str) -> set[str]:
    """The owned tables the SQL in ``source``'s string literals writes (an f-string's literal
    parts count, joined; adjacent literals are one string to the parser already)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = " ".join(
                part.value
                for part in node.values
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            )
        else:
            continue
        found.update(match.lower() for match in _WRITE.findall(text))
    return found


def writers() -> dict[str, set[str]]:
    """Module (relative to gateway/) → the owned tables it writes."""
    result = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        tables = written_tables(path.read_text(encoding="utf-8"))
        if tables:
            result[path.relative_to(GATEWAY).as_posix()] = tables
    return result


def test_only_the_price_book_writes_its_tables() -> None:
    found = writers()
    intruders = {module: tables for module, tables in found.items() if module not in OWNERS}
    assert set(intruders) <= MIGRATIONS, f"write the price book through PriceBook: {intruders}"
    # The scan sees the owner's own writes: every table is written, and only there.
    owned = set().union(*(found.get(module, set()) for module in OWNERS))
    assert owned == set(TABLES)


def test_the_scan_finds_writes_however_they_are_spelled() -> None:
    source = '''
A = "insert or replace into promotions (id) VALUES (?)"
B = ("UPDATE price_book SET price = ? "
     "WHERE sku = ?")
C = f"""DELETE FROM
  price_history WHERE at < {cut}"""
D = "SELECT sku FROM price_book"  # a read is no write
E = "INSERT INTO promotion_history_archive SELECT * FROM promotion_history"
'''
    assert written_tables(source) == {"promotions", "price_book", "price_history"}
