"""Events and messages as the bytes HQ receives: event bodies, stored events, envelopes.

An event is encoded once, when it is appended: its body (a wire model's fields, in declaration
order) becomes compact, ASCII-only JSON, the standard encoder's text (orjson does the work,
about 7x faster; what orjson does not take goes to the standard encoder). The outbox stores it
as one JSON object without its seq — ``{"id":…,"ts":…,"type":…[,"unsynced":true],…fields}`` —
and the uplink splices the seq in front and packs consecutive events into an envelope without
parsing them again: the backlog after an outage is large and the box small.

A field holding its default is left out of the body: on the wire a default means absent (the
schema of such a field has no default, see :func:`gateway.wire.fields.no_default`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from itertools import repeat
from operator import attrgetter
from typing import Any

import orjson
from pydantic import BaseModel

from gateway.clock import isoformat_utc
from gateway.wire.envelope import ENVELOPE_VERSION

__all__ = [
    "OutboxEvent",
    "WireBatch",
    "encode_bodies",
    "encode_event",
    "encode_events",
    "encode_fields",
    "encode_message",
    "event_objects",
    "pack_envelope",
    "pack_wire_batch",
    "wire_batch",
]


# --- models as JSON objects -----------------------------------------------------------------

_MISSING = object()
_DEFAULTED: dict[type[BaseModel], tuple[tuple[str, Any], ...]] = {}


def _fields_defaulted(model: type[BaseModel]) -> tuple[tuple[str, Any], ...]:
    """The fields of ``model`` with a default, and the default (left out while held)."""
    defaulted = _DEFAULTED.get(model)
    if defaulted is None:
        defaulted = _DEFAULTED[model] = tuple(
            (name, field.default)
            for name, field in model.model_fields.items()
            if not field.is_required() and field.default_factory is None
        )
    return defaulted


def _fields(model: BaseModel) -> Mapping[str, Any]:
    """A model's wire fields in declaration order, those holding their default left out,
    then its extra fields (a model that allows any)."""
    defaulted = _fields_defaulted(type(model))
    fields: Mapping[str, Any] = model.__dict__
    if defaulted:
        fields = dict(fields)
        for name, default in defaulted:
            if fields.get(name, _MISSING) == default:
                del fields[name]
    extra = model.__pydantic_extra__
    return {**fields, **extra} if extra else fields


def _plain_default(value: Any) -> Any:
    """What the standard encoder makes of a type JSON has no form for: a model its fields,
    an Enum its value, anything else its ``str()``."""
    if isinstance(value, BaseModel):
        return _fields(value)
    return value.value if isinstance(value, Enum) else str(value)


def _fast_default(value: Any) -> Any:
    """orjson's ``default``: subclasses of the JSON types (a NamedTuple, numpy's float64, a
    dict with its own ``items()``) go to the standard encoder, which knows them; the rest as
    :func:`_plain_default`."""
    if isinstance(value, BaseModel):
        return _fields(value)
    if isinstance(value, (str, int, float, tuple, list, dict)):
        raise TypeError("a subclass of a JSON type: the standard encoder takes it")
    return _plain_default(value)


def _chunk_encoder() -> Callable[[Any, int], Iterable[str]]:
    """The standard library's C encoder, built once (``JSONEncoder.encode`` builds a new one
    on every call), compact and ASCII-only; NaN and infinities raise ValueError."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        encode = json.JSONEncoder(
            separators=(",", ":"), default=_plain_default, allow_nan=False
        ).encode
        return lambda value, _level: (encode(value),)
    return make(  # type: ignore[no-any-return]
        None,
        _plain_default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        False,
        False,
        False,
    )


_ENCODE_CHUNKS = _chunk_encoder()
_JOIN = "".join

# orjson encodes an event about 7x faster than the standard encoder (the producers' hot path).
# Datetimes and dataclasses pass through to ``default`` as the standard encoder has them, and
# so do subclasses of the JSON types (:func:`_fast_default`).
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_FAST_DUMPS = orjson.dumps
_NON_ASCII = re.compile(r"[^\x00-\x7e]")  # DEL too, as the standard encoder has it


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters beyond the BMP
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON has no form for them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, BaseModel):
        return _finite(_fields(value))
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _encode_plain(body: Mapping[str, Any] | BaseModel) -> str:
    """The standard encoder's text for what orjson does not take (an integer beyond 64 bits,
    a subclass of a JSON type, a circular reference raises as before)."""
    try:
        return _JOIN(_ENCODE_CHUNKS(body, 0))
    except ValueError:  # NaN or an infinity somewhere
        return _JOIN(_ENCODE_CHUNKS(_finite(body), 0))


def encode_bodies(bodies: Iterable[Mapping[str, Any] | BaseModel]) -> list[str]:
    """Event bodies (wire models, or plain objects) as compact, ASCII-only JSON texts: the
    standard encoder's output, except that NaN and infinities become null (valid JSON) and an
    Enum its value. Non-ASCII text is escaped, so a stored event's size in characters is its
    size in bytes."""
    encoded: list[str] = []
    add = encoded.append
    for given in bodies:  # a loop, not a comprehension: ``bodies`` may be a generator
        # A model's fields taken here: cheaper than through orjson's ``default``.
        body = _fields(given) if isinstance(given, BaseModel) else given
        try:
            text = _FAST_DUMPS(body, _fast_default, _ORJSON_OPTIONS).decode()
        except orjson.JSONEncodeError:
            text = _encode_plain(body)
        else:
            if not text.isascii() or "\x7f" in text:  # these only ever stand inside strings
                text = _NON_ASCII.sub(_escape, text)
        add(text)
    return encoded


_PLAIN: dict[type[BaseModel], bool] = {}
_FIELDS_OF = attrgetter("__dict__")
_DECODE = bytes.decode


def _encode_plain_fields(fields: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """:func:`encode_bodies` of plain field mappings in C-level loops (no Python step per
    event: the producers' hot path), or None when one of them needs the careful path (what
    orjson refuses, non-ASCII text, DEL) — rare, and then the whole batch takes it."""
    try:
        texts = list(
            map(_DECODE, map(_FAST_DUMPS, fields, repeat(_fast_default), repeat(_ORJSON_OPTIONS)))
        )
    except orjson.JSONEncodeError:
        return None
    probe = "".join(texts)  # one scan of the batch, not one per event
    if not probe.isascii() or "\x7f" in probe:
        return None
    return texts


def _plain(model: type[BaseModel]) -> bool:
    """Whether ``model``'s fields all go on the wire as they are (none left out)."""
    plain = _PLAIN.get(model)
    if plain is None:
        plain = _PLAIN[model] = not _fields_defaulted(model) and (
            model.model_config.get("extra") != "allow"
        )
    return plain


def encode_event(event: BaseModel) -> str:
    """One event (a single producer's append) as :func:`encode_events` has it."""
    if not _plain(type(event)):
        return encode_bodies((event,))[0]
    try:
        text: str = _FAST_DUMPS(event.__dict__, _fast_default, _ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return encode_bodies((event.__dict__,))[0]
    if not text.isascii() or "\x7f" in text:
        return encode_bodies((event.__dict__,))[0]
    return text


def encode_fields(model: type[BaseModel], fields: Sequence[Mapping[str, Any]]) -> list[str]:
    """Events of ``model`` given as their fields (all of them, in order: a
    :class:`~gateway.wire.envelope.TrustedEvents`), as :func:`encode_events` has them."""
    if not fields:
        return []
    if not _plain(model):
        return encode_bodies([model.model_construct(**one) for one in fields])
    texts = _encode_plain_fields(fields)
    return encode_bodies(fields) if texts is None else texts


def encode_events(events: Sequence[BaseModel]) -> list[str]:
    """Events of one model (the outbox's appends) as :func:`encode_bodies` has them; a
    model whose fields all go on the wire as they are is read straight from its instances
    (the producers' hot path)."""
    if not events:
        return []
    if len(events) == 1:
        return [encode_event(events[0])]
    if not _plain(type(events[0])):
        return encode_bodies(events)
    fields = list(map(_FIELDS_OF, events))
    texts = _encode_plain_fields(fields)
    return encode_bodies(fields) if texts is None else texts


def encode_message(message: BaseModel) -> bytes:
    """A message published as it is (``up/health``): compact, ASCII-only JSON."""
    return json.dumps(message, separators=(",", ":"), default=_plain_default).encode()


# --- events as the outbox stores them -------------------------------------------------------


def event_objects(
    ids: Sequence[str], ts: str, type_json: str, encoded: Sequence[str], *, unsynced: bool = False
) -> list[str]:
    """Stored events: each body of ``encoded`` (from :func:`encode_bodies`) behind its
    header, ``{"id":…,"ts":…,"type":…[,"unsynced":true],…}``. ``ids``: one 16-character id
    per event; ``ts``: an instant as :func:`~gateway.clock.isoformat_utc` writes it (needs no
    escaping); ``type_json``: the type name as JSON text."""
    head = f'","ts":"{ts}","type":{type_json}'
    if unsynced:
        head += ',"unsynced":true'
    if len(ids) != len(encoded):
        raise ValueError(f"{len(ids)} ids for {len(encoded)} events")
    if len(encoded) == 1:  # a single producer's event
        text = encoded[0]
        return [f'{{"id":"{ids[0]}{head}' + ("}" if text == "{}" else "," + text[1:])]
    if "{}" in encoded:  # an event without fields of its own: no comma after its header
        return [
            f'{{"id":"{event_id}{head}' + ("}" if text == "{}" else "," + text[1:])
            for event_id, text in zip(ids, encoded, strict=True)
        ]
    # Each body's opening brace becomes its header, in C-level loops: no Python step per event.
    heads = map(str.__add__, map('{"id":"'.__add__, ids), repeat(head + ","))
    return list(map(str.replace, encoded, repeat("{"), heads, repeat(1)))


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One buffered event as it goes on the wire (``body`` is its JSON object text)."""

    stream: str
    seq: int
    id: str
    ts: str
    type: str
    body: str
    size: int

    def wire(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.body)
        return {"seq": self.seq, "id": self.id, "ts": self.ts, "type": self.type, **event}


@dataclass(frozen=True, slots=True)
class WireBatch:
    """Consecutive events of one stream, ready for an envelope's ``events`` array."""

    stream: str
    seq_from: int
    seq_to: int
    count: int
    events_json: str  # the events' JSON objects, comma-separated, in seq order


def wire_batch(stream: str, runs: Sequence[tuple[int, Sequence[str]]]) -> WireBatch | None:
    """Runs of stored events (first seq, their JSON objects), consecutive across runs, as
    one batch: each object gets its seq spliced in front, none is parsed."""
    if not runs:
        return None
    wire = [
        f'{{"seq":{seq},{text[1:]}'
        for first, texts in runs
        for seq, text in enumerate(texts, first)
    ]
    last_first, last_texts = runs[-1]
    return WireBatch(
        stream=stream,
        seq_from=runs[0][0],
        seq_to=last_first + len(last_texts) - 1,
        count=len(wire),
        events_json=",".join(wire),
    )


# --- the envelope ---------------------------------------------------------------------------


def _event_json(event: OutboxEvent) -> str:
    head = (
        f'{{"seq":{event.seq},"id":{json.dumps(event.id)},"ts":{json.dumps(event.ts)},'
        f'"type":{json.dumps(event.type)}'
    )
    body = event.body.strip()
    if body == "{}":
        return head + "}"
    return head + "," + body[1:]


def pack_envelope(
    *,
    store: str,
    stream: str,
    epoch: str,
    boot: int,
    events: Sequence[OutboxEvent],
    sent_at: datetime,
) -> bytes:
    """Serialise ``events`` (consecutive seqs of one stream, at least one) as one envelope."""
    if not events:
        raise ValueError("an envelope carries at least one event")
    return pack_wire_batch(
        store=store,
        epoch=epoch,
        boot=boot,
        batch=WireBatch(
            stream, events[0].seq, events[-1].seq, len(events), ",".join(map(_event_json, events))
        ),
        sent_at=sent_at,
    )


def pack_wire_batch(
    *, store: str, epoch: str, boot: int, batch: WireBatch, sent_at: datetime
) -> bytes:
    """One envelope around a batch whose events are already wire JSON (the uplink's path):
    ``{v, type, store, stream, epoch, boot, seq_from, seq_to, sent_at, events: [...]}``."""
    header = json.dumps(
        {
            "v": ENVELOPE_VERSION,
            "type": "events",
            "store": store,
            "stream": batch.stream,
            "epoch": epoch,
            "boot": boot,
            "seq_from": batch.seq_from,
            "seq_to": batch.seq_to,
            "sent_at": isoformat_utc(sent_at),
        },
        separators=(",", ":"),
    )
    return (header[:-1] + ',"events":[' + batch.events_json + "]}").encode()
