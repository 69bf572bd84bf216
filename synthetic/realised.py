"""Realised figures of a generated extract, to compare with ``shared/calibration.md``.

Used by the generator's self-tests and by anyone checking a scenario: shares, mean ages,
mortality in and out of treatment, retention, charge rates and their concentration,
computed from the tables alone with the contract's definitions (``synthetic.derive``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.data.contract import DAYS_PER_YEAR
from synthetic.derive import derive_frame
from synthetic.truth import RETENTION_T, km_at

__all__ = ["realised_figures"]


def _days(s: pd.Series) -> np.ndarray:
    return pd.to_datetime(s).to_numpy(dtype="datetime64[D]").astype(np.int64)


def _in_treatment(
    tables: dict[str, pd.DataFrame], extract_date, cohort: pd.DataFrame
) -> tuple[np.ndarray, pd.Index]:
    """Days in treatment during follow-up per person, and the episode intervals."""
    persons = tables["persons"]
    pos = pd.Index(persons["person_id"].astype(str))
    ep = tables["treatment_episodes"]
    p = pos.get_indexer(ep["person_id"].astype(str))
    extract = np.datetime64(pd.Timestamp(extract_date).date(), "D").astype(np.int64)
    s = _days(ep["start_date"])
    e_raw = pd.to_datetime(ep["end_date"]).to_numpy(dtype="datetime64[D]")
    e = np.where(np.isnat(e_raw), extract, e_raw.astype(np.int64)) + 1  # end date inclusive
    index = _days(persons["index_date"])
    fu_end = index + cohort["followup_days"].to_numpy()
    # clip to [index, followup end) ; the follow-up end day itself is not person-time
    overlap = np.maximum(0, np.minimum(e, fu_end[p]) - np.maximum(s, index[p]))
    return np.bincount(p, weights=overlap, minlength=len(persons)), (p, s, e)


def _in_episode(p_query, d_query, episodes) -> np.ndarray:
    p, s, e = episodes
    order = np.lexsort((s, p))
    p, s, e = p[order], s[order], e[order]
    span = int(max(d_query.max(initial=0), e.max()) - min(d_query.min(initial=0), s.min()) + 2)
    off = int(min(d_query.min(initial=0), s.min()))
    keys = p * span + (s - off)
    pos = np.searchsorted(keys, p_query * span + (d_query - off), side="right") - 1
    pc = np.maximum(pos, 0)
    return (pos >= 0) & (p[pc] == p_query) & (d_query < e[pc])


def realised_figures(tables: dict[str, pd.DataFrame], extract_date) -> dict[str, float]:
    """Realised calibration figures of an extract (see module docstring)."""
    # a flat list of figures, a few lines each, over the same arrays: longer than 80 lines
    persons = tables["persons"].reset_index(drop=True)
    cohort = derive_frame(tables, extract_date)
    hat = (persons["group"] == "HAT").to_numpy()
    out: dict[str, float] = {
        "n_hat": int(hat.sum()),
        "n_ost": int((~hat).sum()),
        "women_share_hat": float((persons["sex"][hat] == "F").mean()),
        "women_share_ost": float((persons["sex"][~hat] == "F").mean()),
    }
    index = _days(persons["index_date"])
    year = pd.to_datetime(persons["index_date"]).dt.year.to_numpy()
    age = year - persons["birth_year"].to_numpy()
    out["mean_age_hat"] = float(age[hat].mean())
    out["mean_age_ost"] = float(age[~hat].mean())
    out["hat_regions"] = sorted(persons.loc[hat, "region"].unique().tolist())
    out["ost_regions"] = sorted(persons.loc[~hat, "region"].unique().tolist())

    # mortality in and out of treatment
    in_days, episodes = _in_treatment(tables, extract_date, cohort)
    fu = cohort["followup_days"].to_numpy().astype(float)
    deaths = tables["deaths"]
    pos = pd.Index(persons["person_id"].astype(str))
    dp = pos.get_indexer(deaths["person_id"].astype(str))
    dd = _days(deaths["death_date"])
    died = cohort["died"].to_numpy()
    in_tr = np.zeros(len(persons), dtype=bool)
    in_tr[dp] = _in_episode(dp, dd, episodes)
    overdose = cohort["overdose_death"].to_numpy()
    for name, g in (("hat", hat), ("ost", ~hat)):
        py_in, py_out = in_days[g].sum() / DAYS_PER_YEAR, (fu - in_days)[g].sum() / DAYS_PER_YEAR
        out[f"deaths_{name}"] = int(died[g].sum())
        out[f"mortality_in_treatment_per_1000py_{name}"] = 1000 * (died & in_tr)[g].sum() / py_in
        out[f"mortality_out_of_treatment_per_1000py_{name}"] = (
            1000 * (died & ~in_tr)[g].sum() / py_out
        )
        out[f"share_time_in_treatment_{name}"] = float(in_days[g].sum() / fu[g].sum())
        out[f"overdose_share_in_treatment_{name}"] = float(
            (overdose & in_tr)[g].sum() / max((died & in_tr)[g].sum(), 1)
        )
        out[f"overdose_share_out_of_treatment_{name}"] = float(
            (overdose & ~in_tr)[g].sum() / max((died & ~in_tr)[g].sum(), 1)
        )
        r = cohort["in_retention"].to_numpy() & g
        out[f"retention_12m_{name}"] = km_at(
            cohort["retention_days"].to_numpy()[r],
            cohort["discontinued"].to_numpy()[r].astype(bool),
            RETENTION_T,
        )
        out[f"mortality_per_1000py_{name}"] = 1000 * died[g].sum() / (fu[g].sum() / DAYS_PER_YEAR)

    # charges: baseline rate, and follow-up in and out of treatment (prison days ignored)
    ch = tables["charges"]
    cp = pos.get_indexer(ch["person_id"].astype(str))
    cd = _days(ch["charge_date"])
    fu_end = index + fu.astype(np.int64)
    in_fu = (cd >= index[cp]) & (cd < fu_end[cp])
    ch_in = _in_episode(cp, cd, episodes)
    for name, g in (("hat", hat), ("ost", ~hat)):
        gp = g[cp]
        out[f"charges_baseline_per_py_{name}"] = float(
            cohort["baseline_charges"][g].sum() / (g.sum() * 730 / DAYS_PER_YEAR)
        )
        py_in = in_days[g].sum() / DAYS_PER_YEAR
        py_out = (fu - in_days)[g].sum() / DAYS_PER_YEAR
        out[f"charges_in_treatment_per_py_{name}"] = float((in_fu & ch_in & gp).sum() / py_in)
        out[f"charges_out_of_treatment_per_py_{name}"] = float((in_fu & ~ch_in & gp).sum() / py_out)
        out[f"charges_followup_per_py_{name}"] = float(
            cohort["followup_charges"][g].sum() / (cohort["crime_days"][g].sum() / DAYS_PER_YEAR)
        )
    # concentration over a fixed 3-year window: the 3 years before index (OST candidates)
    pre3 = (cd >= index[cp] - 1095) & (cd < index[cp])
    counts = np.bincount(cp[pre3], minlength=len(persons))[~hat]
    out["charges_3y_share_none_ost"] = float((counts == 0).mean())
    out["charges_3y_variance_to_mean_ost"] = float(counts.var() / counts.mean())
    top = np.sort(counts)[::-1][: max(1, len(counts) // 10)]
    out["charges_3y_top10_share_ost"] = float(top.sum() / counts.sum())
    # HAT persistence: first HAT episode ended within 2 years; leavers who switched to OST
    ep = tables["treatment_episodes"]
    ep_p = pos.get_indexer(ep["person_id"].astype(str))
    start = _days(ep["start_date"])
    end_raw = pd.to_datetime(ep["end_date"]).to_numpy(dtype="datetime64[D]")
    end = np.where(np.isnat(end_raw), np.iinfo(np.int64).max // 4, end_raw.astype(np.int64))
    first_hat = (ep["medication"] == "diacetylmorphine").to_numpy() & (start == index[ep_p])
    fp, fe = ep_p[first_hat], end[first_hat]
    two_years = fu[fp] >= 730
    left = (fe - index[fp] < 730) & (fe < index[fp] + fu[fp])
    out["hat_left_first_episode_2y_share"] = float(left[two_years].mean())
    # next episode of a leaver: OST medication starting within 30 days = switch
    nxt = pd.DataFrame({"p": ep_p, "s": start, "m": ep["medication"].to_numpy()})
    nxt = nxt.sort_values(["p", "s"])
    leavers = pd.DataFrame({"p": fp[left], "e": fe[left]})
    m = leavers.merge(nxt, on="p")
    m = m[m["s"] > m["e"]].groupby("p").first()
    switched = (m["s"] - m["e"] <= 30) & (m["m"] != "diacetylmorphine")
    out["hat_leavers_switch_share"] = float(switched.sum() / max(left.sum(), 1))
    out["prison_share_any_followup"] = float((cohort["prison_days"] > 0).mean())
    out["emigrated"] = int(cohort["emigrated"].sum())
    return out
