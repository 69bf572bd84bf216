"""Constants of the data contract (``shared/data-contract.md``, schema version 1).

One place for table names, column names and allowed values, shared by the
extract reader, the synthetic generator's writer and the cohort derivation.
Extracts come in two contract versions (``contract_version`` in ``extract.yml``,
absent = 1): version 1, the designed extract (groups and index dates given), and
version 2, the history extract (treatment histories; the target trial's
initiators, index dates and risk sets are derived, see ``analysis.data.risk_sets``).
The ``HISTORY_*`` constants describe version 2.
"""

from __future__ import annotations

__all__ = [
    "ASSESSMENT_COVARIATES",
    "BOOLEAN_COVARIATES",
    "CALENDAR_COVARIATE",
    "CAUSES",
    "COLUMNS",
    "CONTRACT_VERSIONS",
    "DATE_COLUMNS",
    "DAYS_PER_YEAR",
    "GROUPS",
    "HAT_MEDICATION",
    "HISTORY_COLUMNS",
    "HISTORY_DATE_COLUMNS",
    "HISTORY_OPTIONAL_COLUMNS",
    "HISTORY_OPTIONAL_TABLES",
    "HISTORY_REQUIRED_TABLES",
    "HISTORY_TABLES",
    "HISTORY_VERSION",
    "MEDICATIONS",
    "NUMERIC_COVARIATES",
    "OFFENCES",
    "OPTIONAL_PERSON_COLUMNS",
    "OPTIONAL_TABLES",
    "OST_MEDICATIONS",
    "OUTCOMES",
    "PRIMARY_OUTCOMES",
    "REGIONS",
    "REQUIRED_TABLES",
    "SCHEMA_VERSION",
    "SEXES",
    "TABLES",
    "VERSION_1_PERSON_COLUMNS",
]

SCHEMA_VERSION = 1

GROUPS = ("HAT", "OST")
SEXES = ("F", "M")
REGIONS = ("south-east", "west", "central", "north")
MEDICATIONS = ("diacetylmorphine", "methadone", "buprenorphine", "morphine")
CAUSES = ("overdose", "other")
OFFENCES = ("property", "drug", "violence", "other")

#: tables of an extract; ``incarcerations`` is optional, the others required
REQUIRED_TABLES = ("persons", "treatment_episodes", "deaths", "charges")
OPTIONAL_TABLES = ("incarcerations",)
TABLES = REQUIRED_TABLES + OPTIONAL_TABLES

#: columns of each table, in contract order
COLUMNS: dict[str, tuple[str, ...]] = {
    "persons": (
        "person_id",
        "group",
        "index_date",
        "sex",
        "birth_year",
        "region",
        "years_opioid_use",
        "prior_ost_episodes",
        "injecting",
        "psychiatric_dx",
        "homeless",
        "prior_overdose",
        "benzodiazepine_use",
        "emigration_date",
    ),
    "treatment_episodes": ("person_id", "start_date", "end_date", "medication"),
    "deaths": ("person_id", "death_date", "cause"),
    "charges": ("person_id", "charge_date", "offence"),
    "incarcerations": ("person_id", "start_date", "end_date"),
}

#: date columns of each table
DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "persons": ("index_date", "emigration_date"),
    "treatment_episodes": ("start_date", "end_date"),
    "deaths": ("death_date",),
    "charges": ("charge_date",),
    "incarcerations": ("start_date", "end_date"),
}

#: person covariates that may be missing
BOOLEAN_COVARIATES = (
    "injecting",
    "psychiatric_dx",
    "homeless",
    "prior_overdose",
    "benzodiazepine_use",
)
NUMERIC_COVARIATES = ("years_opioid_use", "prior_ost_episodes")
OPTIONAL_PERSON_COLUMNS = NUMERIC_COVARIATES + BOOLEAN_COVARIATES + ("emigration_date",)

#: derived covariate: calendar time of ``index_date``, in years since the cohort's first index
#: date (HAT started at different dates in different cities)
CALENDAR_COVARIATE = "calendar_years"

#: outcomes named in results.json
OUTCOMES = ("mortality", "overdose_mortality", "retention", "crime")
PRIMARY_OUTCOMES = ("mortality", "retention", "crime")

DAYS_PER_YEAR = 365.25

# --------------------------------------------------------------------- contract version 2
#: contract versions an extract may declare (``contract_version`` in ``extract.yml``)
CONTRACT_VERSIONS = (1, 2)
HISTORY_VERSION = 2

#: ``diacetylmorphine`` is HAT; the other medications are OST
HAT_MEDICATION = "diacetylmorphine"
OST_MEDICATIONS = tuple(m for m in MEDICATIONS if m != HAT_MEDICATION)

#: answers of a status form (``assessments``); each may be missing
ASSESSMENT_COVARIATES = (
    "years_opioid_use",
    "injecting",
    "psychiatric_dx",
    "homeless",
    "benzodiazepine_use",
)

HISTORY_REQUIRED_TABLES = REQUIRED_TABLES
HISTORY_OPTIONAL_TABLES = ("incarcerations", "assessments", "overdoses")
HISTORY_TABLES = HISTORY_REQUIRED_TABLES + HISTORY_OPTIONAL_TABLES

#: columns of each table of a version-2 extract, in contract order
HISTORY_COLUMNS: dict[str, tuple[str, ...]] = {
    "persons": ("person_id", "sex", "birth_year", "region", "emigration_date"),
    "treatment_episodes": COLUMNS["treatment_episodes"],
    "deaths": COLUMNS["deaths"],
    "charges": COLUMNS["charges"],
    "incarcerations": COLUMNS["incarcerations"],
    "assessments": ("person_id", "assessment_date", *ASSESSMENT_COVARIATES),
    "overdoses": ("person_id", "overdose_date"),
}
HISTORY_DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "persons": ("emigration_date",),
    "treatment_episodes": DATE_COLUMNS["treatment_episodes"],
    "deaths": DATE_COLUMNS["deaths"],
    "charges": DATE_COLUMNS["charges"],
    "incarcerations": DATE_COLUMNS["incarcerations"],
    "assessments": ("assessment_date",),
    "overdoses": ("overdose_date",),
}
#: columns that may be absent from a version-2 file (then all missing)
HISTORY_OPTIONAL_COLUMNS = ("emigration_date", *ASSESSMENT_COVARIATES)

#: columns of a version-1 ``persons`` table that a version-2 ``persons`` table may not have
VERSION_1_PERSON_COLUMNS = tuple(
    c for c in COLUMNS["persons"] if c not in HISTORY_COLUMNS["persons"]
)
