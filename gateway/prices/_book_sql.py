"""The statements by which the price book changes: run only by
:class:`gateway.prices.book.PriceBook`, the one owner of ``price_book``, ``price_history``,
``promotions`` and ``promotion_history`` (``tests/prices/test_book_owner.py`` checks that no
other module writes them)."""

from __future__ import annotations

from gateway.prices.faces import PRECEDENCE

# --- a version's items ------------------------------------------------------------------------

# The items of a version are one JSON array of rows (?3, of ``ItemRow``): two set-based
# statements whatever its size, not two per item.
UPSERT_BOOK = (
    "INSERT INTO price_book (sku, price, currency, unit_price, unit, name, reference_price, "
    "version, updated_at) SELECT i.value ->> 0, i.value ->> 1, i.value ->> 2, i.value ->> 3, "
    "i.value ->> 4, i.value ->> 5, i.value ->> 6, ?1, ?2 FROM json_each(?3) i WHERE true "
    "ON CONFLICT (sku) DO UPDATE SET "
    "price = excluded.price, currency = excluded.currency, unit_price = excluded.unit_price, "
    "unit = excluded.unit, name = excluded.name, reference_price = excluded.reference_price, "
    "version = excluded.version, updated_at = excluded.updated_at"
)
# A history row only when the shown price really changes (or the SKU is new); before the
# upsert, which it compares with.
HISTORY_SET = (
    "INSERT OR REPLACE INTO price_history (sku, version, change, price, currency, "
    "reference_price, at) SELECT i.value ->> 0, ?1, 'set', i.value ->> 1, i.value ->> 2, "
    "i.value ->> 6, ?2 FROM json_each(?3) i WHERE NOT EXISTS ("
    "SELECT 1 FROM price_book b WHERE b.sku = i.value ->> 0 AND b.price = i.value ->> 1 "
    "AND b.currency = i.value ->> 2 AND b.reference_price IS i.value ->> 6)"
)
# The same for one item, bound exactly: SQLite's JSON functions cut a text at a NUL
# character, which a name or unit may hold (never a SKU, price or currency).
UPSERT_ONE = (
    "INSERT INTO price_book (sku, price, currency, unit_price, unit, name, reference_price, "
    "version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO UPDATE SET "
    "price = excluded.price, currency = excluded.currency, unit_price = excluded.unit_price, "
    "unit = excluded.unit, name = excluded.name, reference_price = excluded.reference_price, "
    "version = excluded.version, updated_at = excluded.updated_at"
)
HISTORY_SET_ONE = (
    "INSERT OR REPLACE INTO price_history (sku, version, change, price, currency, "
    "reference_price, at) SELECT ?1, ?2, 'set', ?3, ?4, ?5, ?6 WHERE NOT EXISTS ("
    "SELECT 1 FROM price_book WHERE sku = ?1 AND price = ?3 AND currency = ?4 "
    "AND reference_price IS ?5)"
)
HISTORY_DELETE_MISSING = (
    "INSERT OR REPLACE INTO price_history (sku, version, change, at) "
    "SELECT sku, ?1, 'delete', ?2 FROM price_book "
    "WHERE sku NOT IN (SELECT value FROM json_each(?3))"
)
DELETE_MISSING = "DELETE FROM price_book WHERE sku NOT IN (SELECT value FROM json_each(?))"
HISTORY_DELETE = (
    "INSERT OR REPLACE INTO price_history (sku, version, change, at) "
    "SELECT sku, ?2, 'delete', ?3 FROM price_book WHERE sku = ?1"
)
DELETE = "DELETE FROM price_book WHERE sku = ?"

# --- a version's promotions ---------------------------------------------------------------------

UPSERT_PROMOTION = (
    "INSERT OR REPLACE INTO promotions (id, sku, price, currency, reference_price, "
    "effective_from, effective_to, version, cancelled_version, progressive, unit_price) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)"
)
CANCEL_PROMOTION = "UPDATE promotions SET cancelled_version = ?2 WHERE id = ?1"
# The revision a promotion sent again or cancelled replaces stops applying now (?2).
END_REVISION = "UPDATE promotion_history SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL"
ADD_REVISION = (
    "INSERT OR REPLACE INTO promotion_history (id, version, sku, price, currency, "
    "effective_from, effective_to, progressive, applied_at, ended_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
)
# The live promotions of the SKUs a batch touched (?2 JSON array, NULL: all; ?3 the ids it
# cancels) get their prior price worked out again. ?1 now.
PRIOR_STALE = """
UPDATE promotions SET prior_price = NULL, reduction_from = NULL
WHERE cancelled_version IS NULL AND effective_to > ?1 AND (?2 IS NULL
  OR sku IN (SELECT value FROM json_each(?2))
  OR sku IN (SELECT sku FROM promotions WHERE id IN (SELECT value FROM json_each(?3))))
"""

# --- prior prices ---------------------------------------------------------------------------

# The revisions of the SKUs in ?1 (a JSON array), by SKU in precedence order.
REVISIONS = f"""
SELECT id, version, sku, price, currency, effective_from, effective_to, progressive, applied_at,
  ended_at
FROM promotion_history WHERE sku IN (SELECT value FROM json_each(?1))
ORDER BY sku, {PRECEDENCE}
"""  # noqa: S608 - constant fragments
SET_PRIOR = (
    "UPDATE promotions SET prior_price = ?1, reduction_from = ?2 "
    "WHERE id = ?3 AND version = ?4 AND reduction_from IS NULL"
)

# --- retention ------------------------------------------------------------------------------

# History before the cut ?1 goes, except the price in force at the cut (a SKU deleted by
# then has none: its "deleted" row goes too); so do revisions that stopped before it.
PRUNE_BASE = (
    "DELETE FROM price_history WHERE at < ?1 AND version < (SELECT max(version) "
    "FROM price_history h WHERE h.sku = price_history.sku AND h.at < ?1)"
)
PRUNE_DELETED = "DELETE FROM price_history WHERE at < ? AND change = 'delete'"
PRUNE_REVISIONS = (
    "DELETE FROM promotion_history WHERE min(effective_to, coalesce(ended_at, effective_to)) < ?"
)
# Promotions ended, or cancelled and begun, before ?1.
PRUNE_PROMOTIONS = (
    "DELETE FROM promotions WHERE effective_to < ?1 OR (cancelled_version IS NOT NULL "
    "AND effective_from < ?1)"
)
