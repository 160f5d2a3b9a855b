"""From a recorded workflow to a finished run: the runner plans it, the engine loop runs it.

The engine reaches backends only through :mod:`gristmill.backends.base` and the
registry; it never imports a concrete backend.
"""
