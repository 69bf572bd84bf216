"""Realised figures of a history extract, to compare with ``shared/calibration.md``.

Computed from the version-2 tables alone (plain pandas and numpy): numbers in treatment,
intakes and exits (spells by the 30-day gap rule), mortality in and out of treatment,
retention of new spells, charge rates and their concentration, HAT starts and persistence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.data.contract import DAYS_PER_YEAR
from synthetic.derive import spells as derived_spells
from synthetic.truth import km_at

__all__ = ["history_figures", "spells"]

HAT = "diacetylmorphine"
GAP = 30


def _days(s: pd.Series) -> np.ndarray:
    d = pd.to_datetime(s).to_numpy(dtype="datetime64[D]")
    return np.where(np.isnat(d), np.iinfo(np.int64).max // 4, d.astype(np.int64))


def _day(date: str) -> int:
    return int(np.datetime64(date, "D").astype(np.int64))


def spells(episodes: pd.DataFrame, extract: int, medications=None) -> pd.DataFrame:
    """Spells (episodes joined by gaps of at most 30 days) of the given medications.

    Columns ``person_id, start, end`` (day numbers), sorted by person and start.
    """
    ep = episodes if medications is None else episodes[episodes["medication"].isin(medications)]
    codes, ids = pd.factorize(ep["person_id"].to_numpy(), sort=True)
    s, e = _days(ep["start_date"]), np.minimum(_days(ep["end_date"]), extract)
    person, start, end = derived_spells(codes.astype(np.int64), s, e, GAP)
    return pd.DataFrame(
        {"person_id": np.asarray(ids, dtype=object)[person], "start": start, "end": end}
    )


def history_figures(
    tables: dict[str, pd.DataFrame], history_start, extract_date
) -> dict[str, float]:
    """Realised calibration figures of a history extract (see module docstring)."""
    # a flat list of figures, a few lines each, over the same arrays: longer than 80 lines
    h0 = _day(str(pd.Timestamp(history_start).date()))
    x = _day(str(pd.Timestamp(extract_date).date()))
    persons = tables["persons"]
    ep = tables["treatment_episodes"]
    deaths = tables["deaths"]
    stop = pd.Series(x, index=persons["person_id"].to_numpy(), dtype=np.int64)
    em = persons.dropna(subset=["emigration_date"])
    stop.loc[em["person_id"].to_numpy()] = _days(em["emigration_date"])
    stop.loc[deaths["person_id"].to_numpy()] = _days(deaths["death_date"])
    out: dict[str, float] = {"n_persons": len(persons)}

    s_ep, e_ep = _days(ep["start_date"]), np.minimum(_days(ep["end_date"]), x)
    med = ep["medication"].to_numpy()
    pid = ep["person_id"].to_numpy()
    sex = persons.set_index("person_id")["sex"]
    birth = persons.set_index("person_id")["birth_year"]
    for year in range(pd.Timestamp(history_start).year, pd.Timestamp(extract_date).year + 1):
        d = _day(f"{year}-01-01")
        on = (s_ep <= d) & (e_ep >= d)
        ost = np.unique(pid[on & (med != HAT)])
        out[f"in_ost_{year}"] = int(ost.size)
        out[f"in_hat_{year}"] = int(np.unique(pid[on & (med == HAT)]).size)
        if year in (2017, 2021):
            out[f"mean_age_ost_{year}"] = float((year - birth.loc[ost]).mean())
            out[f"women_share_ost_{year}"] = float((sex.loc[ost] == "F").mean())
        if year == 2020:
            meds = pd.Series(med[on & (med != HAT)]).value_counts(normalize=True)
            for name, share in meds.items():
                out[f"share_{name}_2020"] = float(share)

    # intakes and exits per year: spells over all agonist treatment
    sp = spells(ep, x)
    sp["stop"] = stop.loc[sp["person_id"]].to_numpy()
    years = range(pd.Timestamp(history_start).year + 1, pd.Timestamp(extract_date).year)
    sy = pd.to_datetime(sp["start"], unit="D").dt.year
    ended = (sp["end"] < sp["stop"]) & (sp["end"] < x - GAP)
    ey = pd.to_datetime(sp["end"], unit="D").dt.year
    out["intakes_per_year"] = float(np.mean([(sy == y).sum() for y in years]))
    out["exits_per_year"] = float(np.mean([((ey == y) & ended).sum() for y in years]))
    # 12-month retention of spells starting 2016-2025 (censored at death, emigration, end)
    new = (sp["start"] >= h0 + 365) & (sp["start"] <= x - 365)
    t = (np.minimum(sp["end"], sp["stop"]) - sp["start"])[new].to_numpy()
    ev = ended[new].to_numpy()
    out["retention_12m_new_spells"] = km_at(t.astype(float), ev, 365.25)

    # mortality in and out of treatment, person-time from history_start (or first entry)
    first = pd.Series(s_ep).groupby(pid).min()
    begin = np.maximum(first.reindex(persons["person_id"]).to_numpy(), h0)
    end = stop.loc[persons["person_id"]].to_numpy()
    total = np.maximum(end - begin, 0).sum()
    cover = np.maximum(0, np.minimum(e_ep + 1, stop.loc[pid].to_numpy()) - np.maximum(s_ep, h0))
    in_days = cover.sum()
    dd = _days(deaths["death_date"])
    dp = deaths["person_id"].to_numpy()
    # a death is in treatment when an episode covers the day of death
    ep_df = pd.DataFrame({"p": pid, "s": s_ep, "e": e_ep})
    m = ep_df.merge(pd.DataFrame({"p": dp, "d": dd}), on="p")
    in_tx_death = m[(m["s"] <= m["d"]) & (m["d"] <= m["e"])]["p"].unique()
    is_in = np.isin(dp, in_tx_death)
    od = (deaths["cause"] == "overdose").to_numpy()
    out["mortality_in_treatment_per_1000py"] = 1000 * is_in.sum() / (in_days / DAYS_PER_YEAR)
    out["mortality_out_of_treatment_per_1000py"] = (
        1000 * (~is_in).sum() / ((total - in_days) / DAYS_PER_YEAR)
    )
    out["overdose_share_in_treatment"] = float(od[is_in].mean())
    out["overdose_share_out_of_treatment"] = float(od[~is_in].mean())

    # charges in and out of treatment (after the first recorded entry)
    ch = tables["charges"]
    cd, cp = _days(ch["charge_date"]), ch["person_id"].to_numpy()
    after = cd >= first.reindex(cp).to_numpy()
    mc = ep_df.merge(pd.DataFrame({"p": cp[after], "d": cd[after]}).reset_index(), on="p")
    ch_in = mc[(mc["s"] <= mc["d"]) & (mc["d"] <= mc["e"])]["index"].nunique()
    out["charges_in_treatment_per_py"] = ch_in / (in_days / DAYS_PER_YEAR)
    out["charges_out_of_treatment_per_py"] = (after.sum() - ch_in) / (
        (total - in_days) / DAYS_PER_YEAR
    )
    # concentration: persons in OST on 2020-01-01 alive to 2022-12-31, charges 2020-2022
    d0, d1 = _day("2020-01-01"), _day("2023-01-01")
    on = (s_ep <= d0) & (e_ep >= d0)
    cohort = np.unique(pid[on])
    cohort = cohort[stop.loc[cohort].to_numpy() >= d1]
    win = (cd >= d0) & (cd < d1)
    counts = pd.Series(cp[win]).value_counts().reindex(cohort, fill_value=0).to_numpy()
    out["charges_3y_share_none"] = float((counts == 0).mean())
    top = np.sort(counts)[::-1][: max(1, counts.size // 10)]
    out["charges_3y_top10_share"] = float(top.sum() / max(counts.sum(), 1))
    # overdose in the two years before 2020-01-01 among those in OST that day
    ov = tables["overdoses"]
    vd = _days(ov["overdose_date"])
    had = np.unique(ov["person_id"].to_numpy()[(vd >= d0 - 730) & (vd < d0)])
    out["prior_overdose_share_ost_2020"] = float(np.isin(np.unique(pid[on]), had).mean())
    # status forms: answers among filled forms
    fm = tables["assessments"]
    for col in ("injecting", "homeless", "benzodiazepine_use", "psychiatric_dx"):
        out[f"forms_{col}_share"] = float(fm[col].mean())
    out["forms_per_person_year_in_treatment"] = len(fm) / (in_days / DAYS_PER_YEAR)

    # HAT: starts per year, from OST, persistence
    hat = ep[med == HAT]
    firsts = hat.groupby("person_id")["start_date"].min()
    fd = _days(firsts)
    for year in range(2022, pd.Timestamp(extract_date).year + 1):
        out[f"hat_starts_{year}"] = int((pd.to_datetime(firsts).dt.year == year).sum())
    out["hat_starts_first_2_years"] = int((fd < _day("2024-01-01")).sum())
    out["hat_starts_total"] = int(fd.size)
    reg = persons.set_index("person_id")["region"].loc[firsts.index]
    for region in ("south-east", "west"):
        out[f"hat_starts_{region}"] = int((reg == region).sum())
    # in OST in the 7 days before the first HAT start
    ost = ep_df[med != HAT].merge(pd.DataFrame({"p": firsts.index, "d": fd}), on="p")
    near = ost[(ost["s"] <= ost["d"] - 1) & (ost["e"] >= ost["d"] - 7)]["p"].unique()
    out["hat_starts_from_ost_share"] = float(np.isin(firsts.index, near).mean())
    # left HAT within 2 years (HAT spell ended, not by death or emigration), and of
    # those, the share starting OST within 30 days
    hs = spells(ep, x, medications=[HAT])
    hs = hs[hs.groupby("person_id").cumcount() == 0]
    hs["stop"] = stop.loc[hs["person_id"]].to_numpy()
    two = hs["start"] <= x - 730
    left = two & (hs["end"] < hs["start"] + 730) & (hs["end"] < hs["stop"])
    out["hat_followed_2y"] = int(two.sum())
    out["hat_left_2y_share"] = float(left.sum() / max(two.sum(), 1))
    nxt = ost.merge(hs.loc[left, ["person_id", "end"]], left_on="p", right_on="person_id")
    to_ost = nxt[(nxt["s"] > nxt["end"]) & (nxt["s"] - nxt["end"] <= GAP)]["p"].nunique()
    out["hat_leavers_to_ost_share"] = float(to_ost / max(left.sum(), 1))
    return out
