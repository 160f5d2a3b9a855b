"""The run store: one SQLite database (WAL) per run, its integrity checks, the run lock.

Only the engine writes it; the CLI reads it. Backends and the worker never touch it.
"""
