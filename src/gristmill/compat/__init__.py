"""Compatibility layers: older pipeline APIs translated onto gristmill's tasks, workflows and runs.

Each layer is a thin translation, not a second engine: see
:mod:`gristmill.compat.covid_shared`.
"""
