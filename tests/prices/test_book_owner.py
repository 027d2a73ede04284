"""The price book has one owner: no module of the gateway but :mod:`gateway.prices.book` (and
its statements, ``_book_sql``) writes ``price_book``, ``price_history``, ``promotions`` or
``promotion_history`` — the downlink, the label planner and everything else go through
``PriceBook``. Schema migrations are the exception (they create and reshape the tables)."""

from __future__ import annotations

from tests.sql_scan import modules_using, tables_in

TABLES = ("price_book", "price_history", "promotions", "promotion_history")
OWNERS = {"prices/book.py", "prices/_book_sql.py"}
MIGRATIONS = {"store/migrations.py"}


def test_only_the_price_book_writes_its_tables() -> None:
    found = modules_using(TABLES, writes_only=True)
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
    assert tables_in(source, TABLES, writes_only=True) == {
        "promotions",
        "price_book",
        "price_history",
    }
