"""``covid_shared.cli_tools`` on gristmill: application options, logging, metadata, run directories.

Run directories, links and provenance come from :mod:`gristmill.runs`; these functions
keep covid_shared's names, call patterns and file names. ``latest``, ``best`` and
production tags move only when an application succeeded, and a ``gristmill resume``
that completes a failed application's workflow run finishes its metadata and links
(:mod:`.completion`).
"""

from __future__ import annotations

from gristmill.compat.covid_shared.cli_tools.cleanup import finish_application
from gristmill.compat.covid_shared.cli_tools.decorators import (
    add_mobility_gpr_dependency_option,
    add_model_inputs_dependency_option,
    add_output_options,
    add_r_singularity_option,
    add_seir_covariates_dependency_option,
    add_snapshot_dependency_option,
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
    YamlIOMixin,
    get_function_full_argument_mapping,
    handle_exceptions,
    monitor_application,
    update_with_previous_metadata,
)
from gristmill.compat.covid_shared.cli_tools.run_directory import (
    get_current_previous_version,
    get_last_stage_directory,
    get_run_directory,
    make_links,
    make_run_directory,
    mark_best,
    mark_best_explicit,
    mark_explicit,
    mark_latest,
    mark_latest_explicit,
    mark_production,
    mark_production_explicit,
    move_link,
    setup_directory_structure,
)
from gristmill.compat.covid_shared.cli_tools.validation import validate_best_and_production_tags

__all__ = [
    "DEFAULT_LOG_MESSAGING_FORMAT",
    "LOG_FORMATS",
    "Metadata",
    "RunMetadata",
    "YamlIOMixin",
    "add_logging_sink",
    "add_mobility_gpr_dependency_option",
    "add_model_inputs_dependency_option",
    "add_output_options",
    "add_r_singularity_option",
    "add_seir_covariates_dependency_option",
    "add_snapshot_dependency_option",
    "add_verbose",
    "add_verbose_and_with_debugger",
    "add_with_debugger",
    "configure_logging_to_files",
    "configure_logging_to_terminal",
    "finish_application",
    "get_current_previous_version",
    "get_function_full_argument_mapping",
    "get_last_stage_directory",
    "get_run_directory",
    "handle_exceptions",
    "make_links",
    "make_run_directory",
    "mark_best",
    "mark_best_explicit",
    "mark_explicit",
    "mark_latest",
    "mark_latest_explicit",
    "mark_production",
    "mark_production_explicit",
    "monitor_application",
    "move_link",
    "pass_run_metadata",
    "setup_directory_structure",
    "update_with_previous_metadata",
    "validate_best_and_production_tags",
    "with_mark_best",
    "with_output_root",
    "with_production_tag",
]
