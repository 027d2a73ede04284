"""Helpers shared across the test packages (fixtures stay in tests/conftest.py)."""
