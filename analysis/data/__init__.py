"""Data layer: the data contract, reading and validating extracts, deriving analysis tables.

Modules
-------
contract
    Table and column names, allowed values, ``DAYS_PER_YEAR``.
extract
    ``read_extract`` (contract version 1 or 2), ``write_extract``, ``Extract``, ``HistoryExtract``.
validation
    Schemas and cross-table rules; ``ExtractError`` names file, table, column and rows.
cohort
    ``derive_cohort``: one row per analysed person of a version-1 extract, with exclusions.
risk_sets
    Target-trial building blocks of a version-2 extract: initiators, eligibility, covariates and
    outcomes on a date, stacked risk sets.

This layer imports only the base modules of ``analysis`` (never ``design`` or ``outcomes``).
"""
