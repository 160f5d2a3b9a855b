"""``python -m gristmill.cli``: the ``gristmill`` command."""

from gristmill.cli.app import main

main()
