"""Frozen encoders (one architecture per file) and the weights registry."""
