"""Data layer: the data contract, reading and validating extracts, deriving analysis tables.

Modules
-------
contract
    Table and column names, allowed values, ``DAYS_PER_YEAR`` (versions 1 and 2).
extract
    ``read_extract`` (contract version 1 or 2), ``write_extract``, ``Extract``, ``HistoryExtract``.
reading, writing
    The files of an extract folder: ``extract.yml``, ``truth.json``, CSV/Parquet tables, the
    canonical row order (``SORT_KEYS``); writing a folder in the contract's format.
validation
    Cross-table rules (references, groups, one assessment per person and date); re-exports the
    pieces below, so ``analysis.data.validation`` names every validation function.
errors
    ``ExtractError`` (file, table, column and 1-based rows) and its messages.
parsing
    Column kinds and strict parsing of cells (dates, numbers, booleans) to normalised types.
schemas
    The pandera schemas of each table (as read, normalised) and ``validate_table``.
cohort
    ``derive_cohort``: one row per analysed person of a version-1 extract, with exclusions.
intervals
    Day numbers, merged intervals and sorted per-person day keys (shared by ``cohort`` and the
    target-trial modules).
histories
    A version-2 extract as per-person arrays and sorted day keys.
eligibility
    The target trial's protocol (``TrialProtocol``), HAT initiators, eligibility on a date.
trial_covariates, trial_outcomes, trial_columns
    Covariates on a date, outcomes from a date (intention to treat and per protocol), and the
    columns they are returned in.
risk_sets
    One row per (index date, person): ``derive_risk_sets``, ``iter_risk_sets``, ``RiskSets``;
    re-exports the target-trial building blocks above.

Import order inside the layer: ``contract`` → ``errors``, ``parsing`` → ``schemas`` →
``validation``, ``reading``, ``writing`` → ``extract`` → ``intervals`` → ``cohort``,
``histories`` → ``trial_columns`` → ``eligibility`` → ``trial_covariates``,
``trial_outcomes`` → ``risk_sets``. This layer imports only the base modules of ``analysis``
(never ``design`` or ``outcomes``).
"""

__all__: list[str] = []
