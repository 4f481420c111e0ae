"""Benchmarks: ``make bench`` (``python -m bench``) runs them on loopback and prints a table."""
