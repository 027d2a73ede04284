"""Prices from HQ: the signed batch format, the price book and the downlink that applies it."""
