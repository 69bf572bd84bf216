"""Comparisons that show what the target-trial emulation changes (``primary: false``)."""

from __future__ import annotations

from typing import Any

from analysis.extract import HistoryExtract
from analysis.results import EffectEstimate
from analysis.risk_set_matching import RiskSetMatch
from analysis.risk_sets import RiskSets
from evaluation.config import StudyConfig


def sensitivity_estimates(
    history: HistoryExtract, rs: RiskSets, matched: RiskSetMatch, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, Any]]:
    return [], {}
