"""``python -m gristmill.cli``: the ``gristmill`` command."""

from gristmill.cli.main import main

main()
