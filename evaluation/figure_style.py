"""Colours and names shared by every figure of the study (one colour per group everywhere).

A module of its own so that :mod:`evaluation.figures` (outcome figures, and
``all_figures``) and :mod:`evaluation.figures_design` (balance and overlap) both read
it without importing each other.
"""

from __future__ import annotations

__all__ = ["GROUP_COLOURS", "GROUP_LABELS"]

#: colour of each group, used by every figure (Okabe–Ito, colour-blind safe)
GROUP_COLOURS = {"HAT": "#D55E00", "OST": "#0072B2"}
#: legend label of each group
GROUP_LABELS = {"HAT": "HAT (heroin-assisted)", "OST": "OST (matched)"}
