"""storegw: the store-edge gateway core."""

__version__ = "0.1.0"
