"""Helpers shared by the functional and end-to-end tests (not shipped)."""
