"""HQ's side of price batches: build, split into parts under a size cap, sign.

Used by ``storegw hq push-prices`` and by the tests; it is also the reference for integrators:
the payload is plain JSON, the signature covers its exact bytes (docs/protocol.md).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from gateway.clock import isoformat_utc
from gateway.prices.batch import PriceItem, Promotion
from gateway.sync.inbound import MAX_MESSAGE_BYTES
from gateway.sync.signing import Signer

__all__ = ["PriceParts", "build_price_messages", "read_price_list", "read_promotions"]

_RELATIVE = re.compile(r"^\+(\d{1,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

_PART_OVERHEAD = 600  # bytes of a part besides its items (header, scope, signature wrapper)


def build_price_messages(
    items: Sequence[Mapping[str, Any]],
    *,
    version: int,
    kind: Literal["full", "delta"],
    issued_at: datetime,
    stores: Sequence[str] = (),
    groups: Sequence[str] = (),
    valid_for: timedelta | None = timedelta(days=1),
    delete: Sequence[str] = (),
    promotions: Sequence[Mapping[str, Any]] = (),
    cancel_promotions: Sequence[str] = (),
    signer: Signer | None = None,
    max_message_bytes: int = 128 * 1024,
) -> list[bytes]:
    """The MQTT payloads for one batch version: as many parts as the size cap needs (a signed
    part is base64, so items get ~3/4 of the cap), each signed when ``signer`` is given. The
    cap is at most what a store reads (:data:`~gateway.sync.inbound.MAX_MESSAGE_BYTES`)."""
    parts = PriceParts.of(items, signed=signer is not None, max_message_bytes=max_message_bytes)
    return parts.messages(
        version=version,
        kind=kind,
        issued_at=issued_at,
        stores=stores,
        groups=groups,
        valid_for=valid_for,
        delete=delete,
        promotions=promotions,
        cancel_promotions=cancel_promotions,
        signer=signer,
    )


@dataclass(frozen=True, slots=True)
class PriceParts:
    """A price list encoded once and cut into parts under the size cap: the items of every
    store's batch in a fleet push (each store's header, version and signature differ, its
    items do not — encoding them again per store cost most of a push's time)."""

    chunks: tuple[str, ...]  # the items of each part, JSON objects joined by commas

    @classmethod
    def of(
        cls, items: Sequence[Mapping[str, Any]], *, signed: bool, max_message_bytes: int
    ) -> PriceParts:
        max_message_bytes = min(max_message_bytes, MAX_MESSAGE_BYTES)
        budget = (max_message_bytes * 3 // 4 if signed else max_message_bytes) - _PART_OVERHEAD
        chunks: list[list[str]] = [[]]
        size = 0
        for item in items:
            text = json.dumps(dict(item), separators=(",", ":"))
            if chunks[-1] and size + len(text) + 1 > budget:
                chunks.append([])
                size = 0
            chunks[-1].append(text)
            size += len(text) + 1
        return cls(tuple(",".join(chunk) for chunk in chunks))

    def messages(
        self,
        *,
        version: int,
        kind: Literal["full", "delta"],
        issued_at: datetime,
        stores: Sequence[str] = (),
        groups: Sequence[str] = (),
        valid_for: timedelta | None = timedelta(days=1),
        delete: Sequence[str] = (),
        promotions: Sequence[Mapping[str, Any]] = (),
        cancel_promotions: Sequence[str] = (),
        signer: Signer | None = None,
    ) -> list[bytes]:
        """One batch version's payloads, each part signed when ``signer`` is given."""
        header: dict[str, Any] = {
            "v": 1,
            "type": "prices",
            "scope": {"stores": list(stores), "groups": list(groups)},
            "version": version,
            "kind": kind,
            "issued_at": isoformat_utc(issued_at),
        }
        if valid_for is not None:
            header["valid_until"] = isoformat_utc(issued_at + valid_for)
        messages = []
        for index, chunk in enumerate(self.chunks, start=1):
            part = {**header, "part": index, "parts": len(self.chunks)}
            if index == 1:  # the rest of the batch travels with the first part
                part.update(
                    delete=list(delete),
                    promotions=[dict(p) for p in promotions],
                    cancel_promotions=list(cancel_promotions),
                )
            head = json.dumps(part, separators=(",", ":"))[:-1]
            payload = (head + ',"items":[' + chunk + "]}").encode()
            messages.append(signer.wrap(payload) if signer else payload)
        return messages


def read_price_list(text: str, *, filename: str = "") -> list[dict[str, Any]]:
    """A price list from CSV (header row: sku, price, currency, optional unit_price, unit,
    name, reference_price) or JSON (a list of such objects). Every row is validated; all bad
    rows are reported at once (ValueError)."""
    rows = _rows(text, filename, "items")
    return _validated(rows, "price list", PriceItem.model_validate)


def read_promotions(text: str, *, now: datetime, filename: str = "") -> list[dict[str, Any]]:
    """Promotions from CSV (header row: id, sku, price, currency, optional reference_price,
    optional unit_price, effective_from, effective_to, optional progressive) or JSON (a list,
    or ``{promotions: [...]}``). Instants are ISO 8601 with an offset, or relative to ``now``
    as ``+90s``, ``+10m``, ``+2h``, ``+1d`` (a flash sale "starting in a minute").
    ``progressive`` (CSV ``true``/``false``, JSON a boolean) marks a further step of the
    reduction running right before it. Every row is validated; all bad rows are reported at
    once (ValueError)."""
    rows = _rows(text, filename, "promotions")
    from_csv = not _is_json(text, filename)

    def promotion(row: dict[str, Any]) -> Promotion:
        for key in ("effective_from", "effective_to"):
            value = row.get(key)
            match = _RELATIVE.fullmatch(value) if isinstance(value, str) else None
            if match is not None:
                offset = timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
                row = {**row, key: isoformat_utc(now + offset)}
        if from_csv and "progressive" in row:
            row = {**row, "progressive": _csv_flag(row["progressive"])}
        return Promotion.model_validate(row)

    promotions = _validated(rows, "promotions", promotion)
    for promo in promotions:  # the wire carries instants as text, like every other instant
        promo["effective_from"] = isoformat_utc(promo["effective_from"])
        promo["effective_to"] = isoformat_utc(promo["effective_to"])
        if not promo["progressive"]:  # the default stays off the wire (stores before it)
            del promo["progressive"]
    return promotions


def _csv_flag(value: object) -> object:
    """``true``/``false`` (any case) of a CSV cell as a boolean; anything else as it is, for
    the validation to refuse."""
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return value


def _is_json(text: str, filename: str) -> bool:
    return filename.endswith(".json") or text.lstrip().startswith(("[", "{"))


def _rows(text: str, filename: str, key: str) -> list[Any]:
    if _is_json(text, filename):
        loaded = json.loads(text)
        rows = loaded.get(key) if isinstance(loaded, dict) else loaded
        if not isinstance(rows, list):
            raise ValueError(f"a JSON {key} file must be a list (or {{{key}: [...]}})")
        return rows
    reader = csv.DictReader(io.StringIO(text))
    return [{k: v for k, v in row.items() if v not in (None, "")} for row in reader]


def _validated(
    rows: list[Any], what: str, model: Callable[[dict[str, Any]], Any]
) -> list[dict[str, Any]]:
    problems = []
    valid = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            problems.append(f"row {number}: not an object")
            continue
        try:
            valid.append(model(row).model_dump(exclude_none=True))
        except ValueError as exc:
            problems.append(f"row {number}: {exc}".replace("\n", " "))
    if problems:
        raise ValueError(f"invalid {what}:\n" + "\n".join(problems[:20]))
    return valid
