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

__title__ = "covid-shared-tutorial"
__summary__ = "The covid_shared SEIIR workflow tutorial, running on gristmill."
__uri__ = "https://github.com/ihmeuw/covid-shared"

__version__ = "0.1.0"
__jobmon_tool_version__ = 15

__author__ = "The gristmill developers"
__email__ = "gristmill@example.org"

__license__ = "BSD 3-clause"
__copyright__ = f"Copyright 2026 {__author__}"
