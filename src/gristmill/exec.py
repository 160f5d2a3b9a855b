"""``python -m gristmill.exec``: the module path of :mod:`gristmill.dsl.exec` in gristmill 0.1.

Kept because job scripts and array manifests written by gristmill 0.1 (still queued
when a run is resumed after an upgrade) run this path.
"""

import sys

from gristmill.dsl.exec import main

if __name__ == "__main__":
    sys.exit(main())
