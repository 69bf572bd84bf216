"""Constants of the data contract (``shared/data-contract.md``, schema version 1).

One place for table names, column names and allowed values, shared by the
extract reader, the synthetic generator's writer and the cohort derivation.
"""

from __future__ import annotations

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
