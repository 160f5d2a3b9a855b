"""``python -m gristmill.backends.arrays``: the array-element path of gristmill 0.1.

Kept because batch scripts written by gristmill 0.1 (array elements still queued when a
run is resumed after an upgrade) run this path; see :mod:`.batch.element`.
"""

import sys

from gristmill.backends.batch.element import main

if __name__ == "__main__":
    sys.exit(main())
