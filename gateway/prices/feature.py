"""The prices feature at its edges: section ``[downlink]`` (:mod:`gateway.prices.config`), the
daemon's one :class:`~gateway.prices.book.PriceBook` (the downlink writes it, the label
pipeline and ``storegw prices`` read it), the price downlink on ``down/prices``, the control
command ``prices`` and the status block ``downlink``.

HQ's ``resync`` re-announces the price version through :meth:`PricesFeature.announce`; it is one
of the link's built-in commands (:func:`gateway.sync.commands.builtin_commands`), so this
feature declares no HQ command of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.control.args import optional_text_arg
from gateway.control.server import Handler
from gateway.feature import FeatureServices, TaskFactory
from gateway.prices.book import PriceBook
from gateway.prices.config import DownlinkConfig
from gateway.prices.downlink import PriceDownlink, PriceDownlinkSettings
from gateway.sync.commands import CommandSpec
from gateway.sync.link import MqttLink

__all__ = ["PricesFeature"]

_LOGGER = logging.getLogger(__name__)


class PricesFeature:
    """Build with :meth:`start`."""

    section = "downlink"

    def __init__(self, services: FeatureServices, config: DownlinkConfig, *, store_id: str) -> None:
        self._clock = services.clock
        self.book = PriceBook(services.database, was_price=config.was_price)
        verifier = config.verifier()
        if not verifier.signed:
            _LOGGER.warning(
                "no HQ public keys configured ([downlink] hq_public_keys): price batches and "
                "commands are accepted UNSIGNED — anyone who can publish to the broker can "
                "change prices"
            )
        self.downlink = PriceDownlink(
            database=services.database,
            outbox=services.outbox,
            alerts=services.alerts,
            clock=services.clock,
            verifier=verifier,
            store_id=store_id,
            settings=PriceDownlinkSettings(
                groups=tuple(config.groups),
                parts_timeout_s=config.parts_timeout_s,
                resync_interval_s=config.resync_interval_s,
                history_days=config.price_history_days,
            ),
            book=self.book,
        )
        self._linked = False

    @classmethod
    async def start(
        cls, services: FeatureServices, config: DownlinkConfig, *, store_id: str
    ) -> PricesFeature:
        """The feature with its price head loaded (and prior prices a stop left to do)."""
        feature = cls(services, config, store_id=store_id)
        await feature.downlink.load()
        return feature

    def attach(self, link: MqttLink) -> None:
        """Take ``down/prices`` from ``link`` (MQTT enabled): the downlink's task then runs."""
        self.downlink.attach(link)
        self._linked = True

    async def announce(self) -> dict[str, Any] | None:
        """``up/sync`` with the price version (HQ's ``resync``); None while the link is down."""
        return await self.downlink.announce()

    # --- edges ------------------------------------------------------------------------------

    def control_handlers(self) -> Mapping[str, Handler]:
        return {"prices": self._prices_command}

    def hq_commands(self) -> Sequence[CommandSpec]:
        return ()

    def tasks(self) -> Mapping[str, TaskFactory]:
        # Without a link no batch arrives: nothing to expire, resync or prune.
        return {"prices.downlink": self.downlink.run} if self._linked else {}

    async def status(self) -> Mapping[str, object]:
        return {"downlink": self.downlink.status()}

    async def _prices_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``storegw prices [SKU]``: the book's listing at this instant, the downlink's state."""
        listing = await self.book.listing(self._clock.utc_now(), optional_text_arg(args, "sku"))
        listing["downlink"] = self.downlink.status()
        return listing
