"""``covid_shared.cli_tools`` on gristmill: application options, logging, metadata, run directories.

Run directories, links and provenance come from :mod:`gristmill.runs.directory`; these
functions keep covid_shared's names and call patterns.
"""

from __future__ import annotations

from gristmill.compat.covid_shared.cli_tools.cleanup import finish_application, make_links
from gristmill.compat.covid_shared.cli_tools.decorators import (
    add_output_options,
    add_verbose,
    add_verbose_and_with_debugger,
    add_with_debugger,
    pass_run_metadata,
    with_mark_best,
    with_output_root,
    with_production_tag,
)
from gristmill.compat.covid_shared.cli_tools.logging import (
    DEFAULT_LOG_MESSAGING_FORMAT,
    LOG_FORMATS,
    add_logging_sink,
    configure_logging_to_files,
    configure_logging_to_terminal,
)
from gristmill.compat.covid_shared.cli_tools.metadata import (
    Metadata,
    RunMetadata,
    get_function_full_argument_mapping,
    handle_exceptions,
    monitor_application,
    update_with_previous_metadata,
)
from gristmill.compat.covid_shared.cli_tools.run_directory import (
    get_last_stage_directory,
    make_run_directory,
    mark_best,
    mark_latest,
    mark_production,
    setup_directory_structure,
)
from gristmill.compat.covid_shared.cli_tools.validation import validate_best_and_production_tags

__all__ = [
    "DEFAULT_LOG_MESSAGING_FORMAT",
    "LOG_FORMATS",
    "Metadata",
    "RunMetadata",
    "add_logging_sink",
    "add_output_options",
    "add_verbose",
    "add_verbose_and_with_debugger",
    "add_with_debugger",
    "configure_logging_to_files",
    "configure_logging_to_terminal",
    "finish_application",
    "get_function_full_argument_mapping",
    "get_last_stage_directory",
    "handle_exceptions",
    "make_links",
    "make_run_directory",
    "mark_best",
    "mark_latest",
    "mark_production",
    "monitor_application",
    "pass_run_metadata",
    "setup_directory_structure",
    "update_with_previous_metadata",
    "validate_best_and_production_tags",
    "with_mark_best",
    "with_output_root",
    "with_production_tag",
]
