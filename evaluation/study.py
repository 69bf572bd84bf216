"""The study's types: its error, the state its stages pass on, and its result.

``run_study`` (:mod:`evaluation.pipeline`) passes a :class:`StudyState` through its
stages (:mod:`evaluation.stages`) and returns a :class:`Study`: the typed results
document (:class:`evaluation.results_document.ResultsDocument`), its JSON contents and
the tables behind the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from evaluation.results_document import ResultsDocument

if TYPE_CHECKING:
    from analysis.data.cohort import Cohort
    from analysis.design.propensity import PropensityScore
    from analysis.results import EffectEstimate
    from evaluation.stages.designs import Design

__all__ = ["Study", "StudyError", "StudyState"]


class StudyError(ValueError):
    """The extract is valid but the study cannot be done on it (e.g. nobody matched)."""


@dataclass(frozen=True)
class StudyState:
    """What the stages of a study have made so far (each stage returns a new state).

    Attributes
    ----------
    extract : Extract
        The validated extract.
    cohort : Cohort, optional
        The derived cohort (person table and exclusions).
    data : DataFrame, optional
        The cohort table the designs are built on (with ``ps`` and ``ps_logit``).
    propensity : PropensityScore, optional
        The propensity model's fit.
    designs : dict of str to Design
        The primary design (``matched``) and the sensitivity designs.
    balance : DataFrame, optional
        SMD and variance ratios before and after the designs.
    estimates : list of EffectEstimate
        Every estimate, primary ones marked.
    tables : dict of str to DataFrame
        The tables behind the report made so far.
    extras : dict
        The primary design's diagnostics (``diagnostics`` entries).
    document : ResultsDocument, optional
        The results document (the last stage).
    """

    extract: Any
    cohort: Cohort | None = None
    data: pd.DataFrame | None = None
    propensity: PropensityScore | None = None
    designs: dict[str, Design] = field(default_factory=dict)
    balance: pd.DataFrame | None = None
    estimates: list[EffectEstimate] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    document: ResultsDocument | None = None


@dataclass(frozen=True)
class Study:
    """Results of a study: the results document, its JSON contents and the report's tables.

    Parameters
    ----------
    results : ResultsDocument or dict
        The results document, or the contents of a ``results.json`` (validated into one).
    tables : dict of str to DataFrame
        The tables behind the report.

    Attributes
    ----------
    document : ResultsDocument
        The typed results document.
    results : dict
        The contents of ``results.json``, as the document writes them.
    """

    results: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    document: ResultsDocument = field(init=False)

    def __post_init__(self) -> None:
        document = (
            self.results
            if isinstance(self.results, ResultsDocument)
            else ResultsDocument.model_validate(self.results)
        )
        object.__setattr__(self, "document", document)
        object.__setattr__(self, "results", document.to_json_dict())

    def figures(self) -> dict[str, Any]:
        """Draw the report's figures from the tables."""
        from evaluation.figures import all_figures

        return all_figures(self.tables)
