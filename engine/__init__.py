"""Sharecart's rules engine: pure functions over frozen dataclasses (no IO, no clock)."""
