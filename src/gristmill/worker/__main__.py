"""``python -m gristmill.worker``: run one attempt under the wrapper (see :mod:`.wrapper`)."""

import sys

from gristmill.worker.wrapper import main

sys.exit(main())
