"""``covid_shared.paths``: the share's stage roots, the run-directory names, and permissions.

covid_shared hard-coded IHME's share (``/ihme/covid-19``). Here the roots are the
same names under a site root read from the environment when this module is first
imported, so a pipeline that says ``paths.SEIR_FIT_ROOT`` works on another cluster,
or in a test, without a change:

``GRISTMILL_COVID_SHARED_ROOT``
    the share (``COVID_19``; default ``/ihme/covid-19``); every stage root is under it.
``GRISTMILL_COVID_SHARED_R_SCRIPT`` / ``GRISTMILL_COVID_SHARED_R_IMAGE``
    the R launcher and singularity image (``EXEC_R_SCRIPT_PATH``,
    ``R_SINGULARITY_IMAGE_PATH``).

The names of files and links inside a run (``metadata.yaml``, ``logs/master_log.txt``,
``best``, ``latest``, ``production-runs``) are covid_shared's, so stages written
against either read each other's output.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import yaml

#: Environment variables that move the site paths.
ROOT_ENV = "GRISTMILL_COVID_SHARED_ROOT"
R_SCRIPT_ENV = "GRISTMILL_COVID_SHARED_R_SCRIPT"
R_IMAGE_ENV = "GRISTMILL_COVID_SHARED_R_IMAGE"


def _from_env(variable: str, default: str) -> Path:
    value = os.environ.get(variable, "").strip()
    return Path(value or default)


##################
# Executor paths #
##################
EXEC_R_SCRIPT_PATH = _from_env(R_SCRIPT_ENV, "/share/singularity-images/lbd/shells/singR.sh")
R_SINGULARITY_IMAGE_PATH = _from_env(
    R_IMAGE_ENV, "/ihme/singularity-images/lbd/releases/lbd_full_20200128.simg"
)

################
# Shared paths #
################
COVID_19 = _from_env(ROOT_ENV, "/ihme/covid-19")
ARCHIVE_ROOT = COVID_19 / "archive"
RCLONE_CONFIG_PATH = COVID_19 / ".config" / "rclone" / "rclone.conf"

AGE_SPECIFIC_RATES_ROOT = COVID_19 / "age-specific-rates"
AIRLINE_DATA_ROOT = COVID_19 / "airline-data"
BRIEFS_DATA_ROOT = COVID_19 / "briefs-data"
BRIEFS_OUTPUT_ROOT = COVID_19 / "briefs-outputs"
COUNTIES_ROOT = COVID_19 / "counties"
DATA_FIXES_ROOT = COVID_19 / "data-fixes"
DATA_INTAKE_ROOT = COVID_19 / "data_intake"
DEMOG_EM_INPUTS_ROOT = COVID_19 / "demog-em-inputs"
DURATIONS_ROOT = COVID_19 / "durations"
EXCESS_MORTALITY_ROOT = COVID_19 / "excess-mortality"
GBD_ROOT = COVID_19 / "gbd"
MANDATES_ROOT = COVID_19 / "mandates"
MASK_USE_OUTPUT_ROOT = COVID_19 / "mask-use-outputs"
MOBILITY_COVARIATES_OUTPUT_ROOT = COVID_19 / "mobility-covariate"
MOBILITY_COVARIATES_GPR_OUTPUT_ROOT = MOBILITY_COVARIATES_OUTPUT_ROOT / "gpr_outputs"
MODEL_COMPARISON_INPUTS_ROOT = COVID_19 / "model-comparison-inputs"
MODEL_INPUTS_ROOT = COVID_19 / "model-inputs"
MORTALITY_AGE_PATTERN_ROOT = COVID_19 / "mortality-age-pattern"
MORTALITY_SCALARS_ROOT = COVID_19 / "mortality-scalars"
NPI_REGRESSION_DATA_ROOT = COVID_19 / "npi-regression-data"
NPI_REGRESSION_OUTPUT_ROOT = COVID_19 / "npi-regression-output"
PNEUMONIA_OUTPUT_ROOT = COVID_19 / "pneumonia"
POPULATION_DENSITY_OUTPUT_ROOT = COVID_19 / "population-density"
QC_PLOTS_ROOT = COVID_19 / "qc-plots"
RATES_COVARIATES_ROOT = COVID_19 / "rates-covariates"
RESULTRON_ROOT = COVID_19 / "resultron"
SEIR_COUNTERFACTUAL_ROOT = COVID_19 / "seir-counterfactual"
SEIR_COUNTERFACTUAL_INPUT_ROOT = COVID_19 / "seir-counterfactual-input"
SEIR_COVARIATE_PRIORS_ROOT = COVID_19 / "seir-covariate-priors"
SEIR_COVARIATES_OUTPUT_ROOT = COVID_19 / "seir-covariates"
SEIR_DIAGNOSTICS_OUTPUTS = COVID_19 / "seir-diagnostics"
SEIR_FIT_ROOT = COVID_19 / "seir-fit"
SEIR_FORECAST_OUTPUTS = COVID_19 / "seir-forecast"
SEIR_OOS_ANALYSIS_OUTPUTS = COVID_19 / "seir-oos-analysis"
SEIR_FINAL_OUTPUTS = COVID_19 / "seir-outputs"
SEIR_PREPROCESS_ROOT = COVID_19 / "seir-preprocess"
SEIR_REGRESSION_OUTPUTS = COVID_19 / "seir-regression"
SHAPEFILE_ROOT = COVID_19 / "shapefiles"
SNAPSHOT_ROOT = COVID_19 / "snapshot-data"
STATIC_DATA_INPUTS_ROOT = COVID_19 / "static-data"
SYMPTOM_SURVEY_ROOT = COVID_19 / "symptom-survey-data"
TESTING_OUTPUT_ROOT = COVID_19 / "testing-outputs"
UNVERSIONED_INPUTS_ROOT = COVID_19 / "unversioned-inputs"
VACCINE_COVERAGE_OUTPUT_ROOT = COVID_19 / "vaccine-coverage"
VACCINE_EFFICACY_ROOT = COVID_19 / "vaccine-efficacy"
VARIANT_OUTPUT_ROOT = COVID_19 / "variant-scaleup"
VISIT_VOLUME_ROOT = COVID_19 / "visit-volume"
WANING_IMMUNITY_OUTPUT_ROOT = COVID_19 / "waning-immunity"
WEBSCRAPER_ROOT = COVID_19 / "webscrape"
ZIP_VACCINE_HESITANCY_ROOT = COVID_19 / "zip-vaccine-hesitancy"

######################################
# Shared file and subdirectory names #
######################################
METADATA_FILE_NAME = Path("metadata.yaml")

LOG_DIR = Path("logs")
LOG_FILE_NAME = Path("master_log.txt")
DETAILED_LOG_FILE_NAME = Path("master_log.json")

BEST_LINK = Path("best")
LATEST_LINK = Path("latest")
PRODUCTION_RUN = Path("production-runs")


def latest_production_snapshot_path() -> Path:
    """The snapshot the latest production model-inputs run was made from."""
    return _latest_prod_source_path(SNAPSHOT_ROOT)


def latest_production_data_fixes_path() -> Path:
    """The data fixes the latest production model-inputs run was made from."""
    return _latest_prod_source_path(DATA_FIXES_ROOT)


def latest_production_etl_path() -> Path:
    """The run ``model-inputs/production-runs`` tags with the latest date."""
    return _latest_prod_path(MODEL_INPUTS_ROOT)


def _latest_prod_path(prefix: Path) -> Path:
    production = prefix / PRODUCTION_RUN
    try:
        tagged = list(production.iterdir())
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot list the production runs in {production}: {exc.strerror}; is "
            f"{ROOT_ENV} set to the share that holds them?"
        ) from exc
    dated = []
    for path in tagged:
        try:
            dated.append((datetime.datetime.strptime(path.name, "%Y_%m_%d"), path))
        except ValueError:
            continue  # covid_shared failed on any other name; it names no production run
    if not dated:
        raise FileNotFoundError(
            f"{production} holds no production run tagged YYYY_MM_DD; mark one with "
            "cli_tools.mark_production(run_directory, 'YYYY_MM_DD')"
        )
    return max(dated)[1].resolve()


def _latest_prod_source_path(prefix: Path) -> Path:
    etl = latest_production_etl_path()
    metadata_file = etl / METADATA_FILE_NAME
    with metadata_file.open(encoding="utf-8") as stream:
        metadata = yaml.safe_load(stream)
    key = {"snapshot-data": "snapshot_metadata", "data-fixes": "data_fixes_metadata"}.get(
        prefix.name
    )
    if key is None:
        raise NotImplementedError(
            f"no production source is recorded for {prefix}; only {SNAPSHOT_ROOT} and "
            f"{DATA_FIXES_ROOT} are"
        )
    try:
        source = metadata[key]["app_metadata"]["run_arguments"]["snapshot_directory"]
    except (KeyError, TypeError) as exc:
        raise KeyError(
            f"{metadata_file} has no {key}.app_metadata.run_arguments.snapshot_directory; "
            "was that run made by the model-inputs stage?"
        ) from exc
    return Path(source)


#################
# I/O utilities #
#################
DIRECTORY_PERMISSIONS = 0o775
FILE_PERMISSIONS = 0o664


def make_dir_tree(directory: Path) -> None:
    """Make ``directory`` and its missing parents, each with :data:`DIRECTORY_PERMISSIONS`.

    ``Path.mkdir(parents=True)`` gives the parents the default mode; a group share
    needs every new level group-writable.
    """
    to_create = []
    path = Path(directory)
    while not path.exists():
        to_create.append(path)
        path = path.parent
    while to_create:
        made = to_create.pop()
        made.mkdir()
        made.chmod(DIRECTORY_PERMISSIONS)  # mkdir's mode is cut by the umask


def recursive_set_permissions(path: Path) -> None:
    """Give ``path`` and everything under it the default file and directory permissions."""
    path = Path(path)
    if path.is_file():
        path.chmod(FILE_PERMISSIONS)
        return
    path.chmod(DIRECTORY_PERMISSIONS)
    for child in path.iterdir():
        recursive_set_permissions(child)
