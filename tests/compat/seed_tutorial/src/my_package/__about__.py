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

__title__ = "my_package"
__summary__ = "covid_shared's workflow tutorial, on gristmill.compat.covid_shared."
__uri__ = "https://example.org/my_package"

__version__ = "0.1.0"
__jobmon_tool_version__ = 15

__author__ = "The Tutorial Team"
__email__ = "tutorial@example.org"

__license__ = "BSD 3-clause"
__copyright__ = f"Copyright 2020 {__author__}"
