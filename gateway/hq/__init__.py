"""HQ-side reference tools: the consumer integrators copy (``storegw hq tail``)."""
