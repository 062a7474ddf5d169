"""Helpers shared by several test modules (plain modules, not tests)."""
