"""Risk-set matching of HAT initiators to comparators of their own risk sets.

The target trial compares "initiate HAT now" with "do not initiate HAT now" among persons
eligible for both on the day (:mod:`analysis.data.risk_sets`). Risk-set matching (Li, Propert &
Rosenbaum 2001; Lu 2005) matches each initiator, at its index date, to persons of that
date's risk set: eligible on the date and not starting HAT on it. Such a person may start
HAT later (and be an initiator of a later date), and may compare in the risk sets of
several initiators; the comparison is on the covariates *on the date*, so later
information plays no part in who is compared with whom.

Here:

- a propensity model (logistic regression) is fitted to the stacked (initiator,
  candidate) rows of every analysed risk set, on the covariates on the date and the
  calendar time of the date (:func:`stack_risk_sets`). With one initiator among thousands
  of candidates per date, the logistic model on the stacked rows approximates the
  discrete-time hazard of starting HAT given the covariates, the risk-set score of Li et
  al. (2001), who use the Cox hazard;
- each initiator is matched to ``k`` candidates of its own risk set by
  :func:`analysis.design.matching.match` with the risk set (index date) as an exact stratum
  besides the caller's (a region, say): nearest on the logit of the score, within the
  caliper (in SD of the stacked logits), greedily, without replacement *within* a risk
  set (two initiators of the same date never share a comparator; a person's rows of
  different dates are different candidates);
- a comparator row weighs ``1 / m`` for the ``m`` comparators of its set, so each set
  carries one initiator's weight in each arm (the effect in the treated).

References
----------
Li YP, Propert KJ, Rosenbaum PR (2001). Balanced risk set matching. *J Am Stat Assoc*
96(455):870-882.

Lu B (2005). Propensity score matching with time-dependent covariates. *Biometrics*
61(3):721-728.

Hernán MA, Robins JM (2016). Using big data to emulate a target trial when a randomized
trial is not available. *Am J Epidemiol* 183(8):758-764.

Austin PC (2011). Optimal caliper widths for propensity-score matching when estimating
differences in means and differences in proportions in observational studies. *Pharm
Stat* 10(2):150-161.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.data.cohort import calendar_years
from analysis.data.contract import CALENDAR_COVARIATE
from analysis.data.risk_sets import ROLE_CANDIDATE, ROLE_INITIATOR
from analysis.design.balance import balance_table
from analysis.design.matching import MatchedSample, match
from analysis.design.propensity import PropensityScore, fit_propensity

__all__ = ["RiskSetMatch", "risk_set_match", "stack_risk_sets"]

#: separator of the row id ``<index date>|<person_id>`` (a person is one row per risk set)
_SEP = "|"


def stack_risk_sets(table: pd.DataFrame) -> pd.DataFrame:
    """The analysed rows of the risk sets: initiators and their candidates, stacked.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`analysis.data.risk_sets.RiskSets.table` (not-eligible rows may be present;
        they are left out, as are excluded initiators).

    Returns
    -------
    pandas.DataFrame
        The initiator and candidate rows, in the table's order, with ``treatment``
        (1 initiator, 0 candidate), ``group`` (``HAT``/``OST``), ``row_id``
        (``<index date>|<person_id>``, unique) and ``calendar_years`` (years from the
        first analysed index date to the row's date).
    """
    rows = table[table["role"].isin([ROLE_INITIATOR, ROLE_CANDIDATE])].reset_index(drop=True)
    treatment = (rows["role"] == ROLE_INITIATOR).to_numpy(np.int64)
    date = pd.to_datetime(rows["index_date"])
    first = date[treatment == 1].min() if treatment.any() else date.min()
    return rows.assign(
        treatment=treatment,
        group=np.where(treatment == 1, "HAT", "OST"),
        row_id=date.dt.strftime("%Y-%m-%d") + _SEP + rows["person_id"].astype(str),
        **{CALENDAR_COVARIATE: calendar_years(date, first=first)},
    )


@dataclass(frozen=True, kw_only=True)
class RiskSetMatch:
    """Initiators matched to comparators of their risk sets.

    Attributes
    ----------
    data : pandas.DataFrame
        One row per matched initiator and per comparator row (a person comparing in
        several risk sets has several rows): the risk-set table's columns, ``treatment``,
        ``group``, ``row_id``, ``calendar_years``, ``ps``, ``ps_logit``, ``match_set``
        (the initiator's set, numbered by ``row_id`` of the initiators), ``weight``
        (initiators 1; comparators ``1 / m`` for the ``m`` comparators of their set)
        and ``n_in_set`` (comparators of the row's set). Sorted by ``match_set``,
        initiator first, then ``person_id``.
    stacked : pandas.DataFrame
        Every analysed row (:func:`stack_risk_sets`) with ``ps`` and ``ps_logit``.
    matched : MatchedSample
        The matching on the stacked rows (its id column is ``row_id``).
    propensity : PropensityScore
        The propensity model on the stacked rows.
    covariates : tuple of str
        The propensity model's covariates (``calendar_years`` included when used).
    """

    data: pd.DataFrame
    stacked: pd.DataFrame
    matched: MatchedSample
    propensity: PropensityScore
    covariates: tuple[str, ...]

    def flow(self) -> pd.DataFrame:
        """From eligible candidates to matched comparators, and initiators to matched ones.

        Returns
        -------
        pandas.DataFrame
            ``step, n_rows, n_persons`` (rows: person-dates).
        """
        s, d = self.stacked, self.data
        init, cand = s[s["treatment"] == 1], s[s["treatment"] == 0]
        mi, mc = d[d["treatment"] == 1], d[d["treatment"] == 0]
        later = mc["pp_censor_date"].notna()
        steps = [
            ("analysed initiators (risk sets)", init),
            ("eligible candidates in their risk sets", cand),
            ("initiators matched to at least one comparator", mi),
            ("matched comparators", mc),
            ("matched comparators who later started HAT", mc[later]),
        ]
        return pd.DataFrame(
            {
                "step": [name for name, _ in steps],
                "n_rows": [len(rows) for _, rows in steps],
                "n_persons": [rows["person_id"].nunique() for _, rows in steps],
            }
        )

    def comparator_use(self) -> pd.DataFrame:
        """How often a person was used as a comparator.

        Returns
        -------
        pandas.DataFrame
            ``n_risk_sets`` (risk sets a person compared in) and ``n_persons``.
        """
        mc = self.data[self.data["treatment"] == 0]
        counts = mc.groupby("person_id").size().value_counts().sort_index()
        return pd.DataFrame({"n_risk_sets": counts.index.astype(int), "n_persons": counts.values})

    def balance(self) -> pd.DataFrame:
        """Balance on the covariates on the date: before (all candidates) and after matching.

        Returns
        -------
        pandas.DataFrame
            ``variable, smd_before, variance_ratio_before, smd_matched,
            variance_ratio_matched``; SMDs on the yardstick of the stacked rows
            (:func:`analysis.design.balance.balance_table`).
        """
        ps = self.propensity
        spec = {"treatment": "treatment", "covariates": list(self.covariates),
                "transforms": ps.transforms, "levels": ps.levels}  # fmt: skip
        before = balance_table(self.stacked, **spec)
        after = balance_table(self.data, **spec, weights="weight", reference=self.stacked)
        out = before[["variable", "smd", "variance_ratio"]].rename(
            columns={"smd": "smd_before", "variance_ratio": "variance_ratio_before"}
        )
        return out.merge(
            after[["variable", "smd", "variance_ratio"]].rename(
                columns={"smd": "smd_matched", "variance_ratio": "variance_ratio_matched"}
            ),
            on="variable",
            how="left",
        )

    def rematch(self, *, k: int, caliper: float | None) -> RiskSetMatch:
        """The same risk sets and propensity scores matched with another ``k`` or caliper.

        For sensitivity analyses of the matching plan: the stacked rows, their scores and
        the exact strata are kept; only the nearest-neighbour matching is done again.

        Parameters
        ----------
        k : int
            Comparators per initiator.
        caliper : float or None
            In pooled SDs of the logit of the score; ``None``: no caliper.

        Returns
        -------
        RiskSetMatch
        """
        exact = tuple(c for c in self.matched.exact if c != "index_date")
        return _match_sets(
            self.stacked, self.propensity, self.covariates, k=k, caliper=caliper, exact=exact
        )

    def info(self) -> dict[str, Any]:
        """Numbers describing the design (for ``results.json``)."""
        d, s = self.data, self.stacked
        mc = d[d["treatment"] == 0]
        m = self.matched
        return {
            "k": m.k,
            "caliper_sd": m.caliper,
            "caliper_width": m.caliper_width,
            "replace": False,
            "exact": [c for c in m.exact if c != "index_date"],
            "n_risk_sets": int(s.loc[s["treatment"] == 1, "index_date"].nunique()),
            "n_treated": int(m.n_treated),
            "n_treated_matched": int(m.n_treated_matched),
            "n_control_matched": int(mc["person_id"].nunique()),
            "n_control_rows_matched": int(len(mc)),
            "n_candidate_rows": int((s["treatment"] == 0).sum()),
            "n_candidate_persons": int(s.loc[s["treatment"] == 0, "person_id"].nunique()),
            "share_treated_matched": m.share_treated_matched,
            "n_sets_complete": int((d.loc[d["treatment"] == 1, "n_in_set"] == m.k).sum()),
            "comparators_later_hat_rows": int(mc["pp_censor_date"].notna().sum()),
            "comparators_later_initiators": int(
                mc["person_id"].isin(d.loc[d["treatment"] == 1, "person_id"]).sum()
            ),
            "max_risk_sets_per_comparator": int(mc.groupby("person_id").size().max())
            if len(mc)
            else 0,
            "unmatched_treated_by_reason": {
                str(r): int(v) for r, v in m.unmatched["reason"].value_counts().sort_index().items()
            },
            "propensity_rows": int(self.propensity.n),
            "propensity_method": self.propensity.method,
        }


# over 80 lines only by its numpydoc docstring (the code is under 60)
def risk_set_match(
    table: pd.DataFrame,
    *,
    covariates: Sequence[str],
    k: int = 1,
    caliper: float | None = None,
    exact: Sequence[str] = (),
    calendar_time: bool = True,
    transforms: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
) -> RiskSetMatch:
    """Match every analysed initiator to ``k`` comparators of its own risk set.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`analysis.data.risk_sets.RiskSets.table`.
    covariates : sequence of str
        Covariates on the date for the propensity model (expanded by
        :func:`analysis.design.missing.design_matrix`: dummies, missing indicators,
        the ``transforms`` asked for).
    k : int, default 1
        Comparators per initiator.
    caliper : float or None, default None
        In pooled SDs of the logit of the score over the stacked rows (Austin 2011
        recommends 0.2). ``None``: no caliper.
    exact : sequence of str, default ()
        Columns matched exactly besides the risk set (the index date).
    calendar_time : bool, default True
        Add the calendar time of the date (column ``calendar_years``) to the model,
        transformed as ``transforms`` says (e.g. ``{"calendar_years": "rcs4"}``, a
        restricted cubic spline).
    transforms, levels : mapping, optional
        Transformations and level orders of the covariates, as in
        :func:`analysis.design.missing.design_matrix`.

    Returns
    -------
    RiskSetMatch

    Raises
    ------
    ValueError
        No initiator or no candidate, or the propensity model cannot be fitted.

    Notes
    -----
    Greedy matching (:func:`analysis.design.matching.match`): initiators in descending order
    of the score, each round giving every initiator one more comparator; the strata are
    (index date, ``exact``), so a candidate row can serve one initiator only, and
    initiators of different dates never compete. Deterministic (ties by row id).

    References
    ----------
    Li YP, Propert KJ, Rosenbaum PR (2001). Balanced risk set matching. *J Am Stat
    Assoc* 96:870-882.

    Lu B (2005). Propensity score matching with time-dependent covariates.
    *Biometrics* 61:721-728.
    """
    stacked = stack_risk_sets(table)
    n_t = int(stacked["treatment"].sum())
    if n_t == 0 or n_t == len(stacked):
        raise ValueError(
            f"{n_t} initiators and {len(stacked) - n_t} candidate rows: both are needed"
        )
    covs = tuple(covariates) + ((CALENDAR_COVARIATE,) if calendar_time else ())
    ps = fit_propensity(
        stacked, treatment="treatment", covariates=covs, transforms=transforms, levels=levels
    )
    stacked = stacked.assign(ps=ps.score, ps_logit=ps.logit)
    return _match_sets(stacked, ps, covs, k=k, caliper=caliper, exact=exact)


def _match_sets(
    stacked: pd.DataFrame,
    ps: PropensityScore,
    covs: tuple[str, ...],
    *,
    k: int,
    caliper: float | None,
    exact: Sequence[str],
) -> RiskSetMatch:
    """Greedy matching of the scored stacked rows within (index date, ``exact``)."""
    matched = match(
        stacked,
        treatment="treatment",
        score="ps_logit",
        id="row_id",
        k=k,
        caliper=caliper,
        exact=("index_date", *exact),
        replace=False,
    )
    pairs = matched.pairs
    n_in_set = pairs.groupby("match_set").size()
    first = pairs.drop_duplicates("match_set").set_index("match_set")["treated_id"]
    treated = pd.DataFrame(
        {"row_id": first.reindex(n_in_set.index).to_numpy(),
         "match_set": n_in_set.index.to_numpy(), "n_in_set": n_in_set.to_numpy(),
         "weight": 1.0, "_key": 0}
    )  # fmt: skip
    controls = pd.DataFrame(
        {"row_id": pairs["control_id"].to_numpy(), "match_set": pairs["match_set"].to_numpy(),
         "n_in_set": pairs["match_set"].map(n_in_set).to_numpy(),
         "_key": 1}
    )  # fmt: skip
    controls["weight"] = 1.0 / controls["n_in_set"]
    sets = pd.concat([treated, controls], ignore_index=True)
    data = stacked.merge(sets, on="row_id", how="inner", validate="one_to_one")
    data = data.sort_values(["match_set", "_key", "person_id"], kind="stable", ignore_index=True)
    return RiskSetMatch(
        data=data.drop(columns="_key"),
        stacked=stacked,
        matched=matched,
        propensity=ps,
        covariates=covs,
    )
