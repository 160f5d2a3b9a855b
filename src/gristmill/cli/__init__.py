"""The ``gristmill`` command: the click group (:mod:`.app`) and one module per command family.

``main`` is the console script's target (``gristmill = "gristmill.cli:main"``), the same
spelling since gristmill 0.1, so an environment installed then still finds it.
"""

from gristmill.cli.app import main

__all__ = ["main"]
