"""The ``[downlink]`` section: HQ's signing keys, the store's groups, price parts and history,
and which "was" price a promotion shows; :meth:`DownlinkConfig.verifier` turns the keys into
the :class:`~gateway.sync.signing.Verifier` every signed downlink message goes through."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from gateway.section import ConfigSection
from gateway.sync.signing import KEY_ID_PATTERN, Verifier, decode_public_key

__all__ = ["DownlinkConfig"]


class DownlinkConfig(ConfigSection):
    hq_public_keys: dict[str, str] = Field(
        default_factory=dict,
        description="HQ's Ed25519 public keys by key id (base64, 32 bytes); empty = unsigned.",
    )
    groups: list[str] = Field(
        default_factory=list, description="Groups this store belongs to (batch scopes)."
    )
    parts_timeout_s: float = Field(600.0, gt=0, le=86400)
    resync_interval_s: float = Field(60.0, ge=1, le=86400)
    price_history_days: float = Field(90.0, gt=0, le=3650)
    was_price: Literal["hq", "lowest_30_days"] = Field(
        "hq",
        description="A promotion's \"was\" price: only HQ's, or else the prior price: the "
        "lowest applied in the 30 days before the reduction began, earlier promotions included "
        "(EU Price Indication Directive art. 6a).",
    )

    @field_validator("hq_public_keys")
    @classmethod
    def _keys_decode(cls, value: dict[str, str]) -> dict[str, str]:
        for kid, key in value.items():
            if re.fullmatch(KEY_ID_PATTERN, kid) is None:
                raise ValueError(f"key id {kid!r} must match {KEY_ID_PATTERN}")
            try:
                decode_public_key(key)
            except ValueError as exc:
                raise ValueError(f"hq_public_keys.{kid}: {exc}") from None
        return value

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: list[str]) -> list[str]:
        for group in value:
            if re.fullmatch(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", group) is None:
                raise ValueError(f"group {group!r} is not a valid name")
        return value

    def verifier(self) -> Verifier:
        return Verifier({kid: decode_public_key(key) for kid, key in self.hq_public_keys.items()})
