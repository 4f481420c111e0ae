"""Helpers shared by the tests: servers to start, conditions to wait on, clients to read with.

Fixtures stay in the conftest files; everything a test module imports lives here.
"""
