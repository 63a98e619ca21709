"""Scoring heads: one file per head family, registered by name (``registry.py``)."""
