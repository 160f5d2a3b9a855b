"""``python -m gristmill.backends.jobmon_driver``: the jobmon driver's path in gristmill 0.1.

Kept because jobmon tasks created by gristmill 0.1 keep their command in jobmon's
database, and resuming such a workflow runs it; see :mod:`.jobmon.driver`.
"""

import sys

from gristmill.backends.jobmon.driver import main

if __name__ == "__main__":
    sys.exit(main())
