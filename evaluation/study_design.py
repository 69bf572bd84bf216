"""The study's design vocabulary, in one place.

The design layer (:mod:`analysis.design`) is a generic library: it takes the names of the
columns and every choice as arguments. This module holds the choices of this study, and
every call site of the study (pipeline, target trial, disclosure evidence, benchmarks,
tests) passes them from here:

- the baseline covariates of the propensity model and the balance tables;
- how covariates enter the design matrix: ``log(1 + x)`` of the baseline charges (counts
  of charges are very right-skewed) and a restricted cubic spline with 4 knots of the
  calendar time of the index date (Harrell 2015);
- the order of the levels of the categorical covariates (the data contract's; the first
  is the reference level of the propensity model);
- the matching defaults of the configuration (1:4, caliper 0.2 SD of the logit of the
  propensity score, exact on region; Austin 2011);
- how Table 1 shows the categorical and 0/1 covariates.

References
----------
Austin PC (2011). Optimal caliper widths for propensity-score matching when estimating
differences in means and differences in proportions in observational studies. *Pharm Stat*
10(2):150-161.

Harrell FE (2015). *Regression Modeling Strategies*, 2nd ed. Springer (section 2.4.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from analysis.data.contract import (
    BOOLEAN_COVARIATES,
    CALENDAR_COVARIATE,
    NUMERIC_COVARIATES,
    REGIONS,
    SEXES,
)

__all__ = [
    "BINARY_COVARIATES",
    "CALIPER",
    "COVARIATES",
    "EXACT",
    "K",
    "LEVELS",
    "TABLE1_LABELS",
    "TABLE1_LEVELS",
    "TRANSFORMS",
]

#: baseline covariates of the propensity model, in the order of the cohort table
COVARIATES: tuple[str, ...] = (
    "age",
    "sex",
    "region",
    *NUMERIC_COVARIATES,
    *BOOLEAN_COVARIATES,
    "baseline_charges",
)

#: how numeric covariates enter the design matrix (:func:`analysis.design.missing.design_matrix`)
TRANSFORMS: Mapping[str, str] = MappingProxyType(
    {"baseline_charges": "log1p", CALENDAR_COVARIATE: "rcs4"}
)

#: level order of the categorical covariates (the first is the reference level)
LEVELS: Mapping[str, tuple[str, ...]] = MappingProxyType({"sex": SEXES, "region": REGIONS})

#: 0/1 covariates (shown as percentages in Table 1)
BINARY_COVARIATES: tuple[str, ...] = BOOLEAN_COVARIATES

#: Table 1: the levels shown of each categorical covariate (women only; every region)
TABLE1_LEVELS: Mapping[str, tuple[str, ...]] = MappingProxyType({"sex": ("F",), "region": REGIONS})

#: Table 1: row labels
TABLE1_LABELS: Mapping[str, str] = MappingProxyType({"sex: F": "women"})

#: controls per treated person (1:k matching)
K = 4

#: caliper in standard deviations of the logit of the propensity score (Austin 2011)
CALIPER = 0.2

#: columns matched exactly
EXACT: tuple[str, ...] = ("region",)
