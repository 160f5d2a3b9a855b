"""The covid_shared workflow tutorial (fit draws, validate them, forecast locations).

Written exactly as the tutorial describes, except that ``covid_shared`` is imported
from ``gristmill.compat``.
"""

from covid_tutorial.__about__ import (
    __author__,
    __copyright__,
    __email__,
    __jobmon_tool_version__,
    __license__,
    __summary__,
    __title__,
    __uri__,
    __version__,
)

__all__ = [
    "__author__",
    "__copyright__",
    "__email__",
    "__jobmon_tool_version__",
    "__license__",
    "__summary__",
    "__title__",
    "__uri__",
    "__version__",
]
