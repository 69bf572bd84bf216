"""Readable names of outcomes and measures, shared by the reports.

The measures' labels come from the one registry of measures,
:mod:`analysis.data.measures`.
"""

from analysis.data.measures import MEASURES

__all__ = ["MEASURE_LABELS", "OUTCOME_LABELS"]

OUTCOME_LABELS = {
    "mortality": "all-cause mortality",
    "overdose_mortality": "overdose mortality",
    "retention": "retention in treatment",
    "crime": "criminal charges",
}

#: the label of each registered measure, by name
MEASURE_LABELS = {name: m.label for name, m in MEASURES.items()}
