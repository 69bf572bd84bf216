"""Missing covariate values of the persons table: the mechanism and its application.

:class:`Missing` (one covariate's share and mechanism, a field of
:class:`synthetic.spec.Population`) and :func:`apply_missing`, which blanks values in the
generator (:func:`synthetic.generate.generate`). ``MCAR`` blanks at random; ``MAR`` with
log-odds that change with age; ``MAR_outcomes`` also with the group and the outcomes, which
the extract shows (as when a covariate comes from a status report filled in during
follow-up, less often for those who died or were often charged). ``MAR_outcomes`` depends on
no unobserved value, so multiple imputation with the group and the outcomes in the
imputation model recovers the effects, whereas the missing-indicator method balances a
function of the outcomes and is biased (scenario ``informative_missing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import Field

from synthetic.spec_base import Frozen

__all__ = ["Missing", "apply_missing"]


class Missing(Frozen):
    """Missing values of one covariate in the persons table."""

    share: float = Field(ge=0, lt=1, description="average share missing")
    mechanism: Literal["MCAR", "MAR", "MAR_outcomes"] = Field(
        "MCAR",
        description="MAR: log-odds of missing shift by `age_slope` per 10 years of age; "
        "MAR_outcomes: also by `hat_shift` (HAT), `death_shift` (died in follow-up) and "
        "`charges_slope` per log(1 + follow-up charges)",
    )
    age_slope: float = Field(
        -0.4, description="MAR only: younger persons' records are less complete"
    )
    hat_shift: float = Field(0.0, description="MAR_outcomes: log-odds shift for HAT patients")
    death_shift: float = Field(
        0.0, description="MAR_outcomes: log-odds shift for persons who died during follow-up"
    )
    charges_slope: float = Field(
        0.0, description="MAR_outcomes: log-odds change per log(1 + follow-up charges)"
    )


def apply_missing(
    values: np.ndarray,
    miss: Missing | None,
    age: np.ndarray,
    *,
    age_mean: float,
    rng: np.random.Generator,
    observed: Mapping[str, np.ndarray],
) -> np.ndarray:
    """Blank values of one covariate as its mechanism says (returns float with NaN).

    Parameters
    ----------
    values : ndarray
        The complete values, one per person.
    miss : Missing or None
        The covariate's missingness (``None`` or share 0: nothing is blanked and no
        random number drawn).
    age : ndarray
        Age at index per person; ``age_mean`` centres it.
    rng : numpy.random.Generator
        One uniform number is drawn per person.
    observed : mapping
        ``hat``, ``died`` and ``log1p_charges`` (follow-up) per person, for
        ``MAR_outcomes``.
    """
    out = values.astype(float)
    if miss is None or miss.share == 0:
        return out
    logit = np.log(miss.share / (1 - miss.share))
    if miss.mechanism in ("MAR", "MAR_outcomes"):
        # MAR on age (always observed) and, for MAR_outcomes, on the group and the
        # outcomes: shift, then re-centre on the average share
        lp = miss.age_slope * (age - age_mean) / 10
        if miss.mechanism == "MAR_outcomes":
            lp = lp + (
                miss.hat_shift * observed["hat"]
                + miss.death_shift * observed["died"]
                + miss.charges_slope * observed["log1p_charges"]
            )
        p = 1 / (1 + np.exp(-(logit + lp - np.log(np.mean(np.exp(lp))))))
    else:
        p = np.full(len(out), miss.share)
    out[rng.random(len(out)) < p] = np.nan
    return out
