"""HQ-side reference tools: the consumer integrators copy (``storegw hq tail``)."""

__all__ = ["DEFAULT_DEADLINE_S"]

#: How long ``push-prices`` waits for the stores' receipts by default. Here, not in
#: :mod:`gateway.hq.push`, so that building the CLI (``storegw run`` too) does not import
#: the HQ tools.
DEFAULT_DEADLINE_S = 120.0
