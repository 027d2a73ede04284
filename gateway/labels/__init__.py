"""Shelf labels: rendering what HQ's price book says onto ESL panels."""
