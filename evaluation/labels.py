"""Readable names of outcomes and measures, shared by the reports."""

OUTCOME_LABELS = {
    "mortality": "all-cause mortality",
    "overdose_mortality": "overdose mortality",
    "retention": "retention in treatment",
    "crime": "criminal charges",
}

MEASURE_LABELS = {
    "HR": "hazard ratio",
    "IRR": "incidence rate ratio",
    "RR_12m": "ratio of 12-month retention",
    "RD_12m": "difference at 12 months (risk, cumulative incidence or retention)",
    "RD_24m": "difference at 24 months (risk, cumulative incidence or retention)",
    "RMST_diff": "difference in restricted mean time (days alive or in treatment)",
    "ratio_of_rate_ratios": "ratio of after/before rate ratios (difference-in-differences)",
    "rate_ratio_after_vs_before": "rate ratio, after vs before index",
}
