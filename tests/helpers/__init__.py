"""Shared test helpers (importable as ``helpers.*``: setup.cfg puts tests/ on the path)."""
