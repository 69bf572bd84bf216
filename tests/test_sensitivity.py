"""Tests of analysis.outcomes.sensitivity (E-values) against published examples and the formulas."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis.outcomes.sensitivity import EValue, e_value, incidence_at_end


def test_published_example_vanderweele_ding_2017():
    """VanderWeele & Ding (2017, Ann Intern Med 167:268), formula feeding and respiratory
    death (Victora et al. 1987): RR 3.9 (95% CI 1.8 to 8.7) -> E-value 7.26, CI 3.0."""
    ev = e_value(3.9, 1.8, 8.7, measure="RR")
    assert isinstance(ev, EValue)
    assert round(ev.point, 2) == 7.26
    assert round(ev.ci, 2) == 3.00
    assert ev.point == pytest.approx(3.9 + math.sqrt(3.9 * 2.9))


def test_protective_estimate_uses_inverse_and_upper_limit():
    """RR 0.80 (0.71 to 0.91): E = 1/0.8 + sqrt(1/0.8 (1/0.8 - 1)) = 1.81, CI limit 0.91
    -> 1.43 (the EValue package's example for a protective risk ratio)."""
    ev = e_value(0.80, 0.71, 0.91, measure="RR")
    assert round(ev.point, 2) == 1.81
    assert round(ev.ci, 2) == 1.43
    assert e_value(1 / 3.9, measure="RR").point == pytest.approx(e_value(3.9, measure="RR").point)


def test_interval_including_one_gives_one():
    assert e_value(1.4, 0.9, 2.1, measure="IRR").ci == 1.0
    assert e_value(0.7, 0.45, 1.12, measure="HR").ci == 1.0
    assert e_value(1.0, 0.8, 1.2, measure="RR").point == 1.0
    assert e_value(2.0, measure="RR").ci is None


def test_hazard_ratio_common_outcome_conversion():
    """VanderWeele (2020): RR ~ (1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1/HR)); hand-computed
    for HR 0.56 (0.46 to 0.69): RR 0.670, E-values 2.35 and 1.91."""
    ev = e_value(0.56, 0.46, 0.69, measure="HR", rare=False)
    assert ev.rr == pytest.approx((1 - 0.5 ** math.sqrt(0.56)) / (1 - 0.5 ** math.sqrt(1 / 0.56)))
    assert round(ev.rr, 3) == 0.670
    assert round(ev.point, 2) == 2.35
    assert round(ev.ci, 2) == 1.91
    rare = e_value(0.56, 0.46, 0.69, measure="HR", rare=True)
    assert rare.rr == 0.56 and rare.point > ev.point  # conversion shrinks towards 1
    odds = e_value(4.0, 2.0, 8.0, measure="OR", rare=False)
    assert odds.rr == pytest.approx(2.0)
    assert odds.rr_ci_low == pytest.approx(math.sqrt(2.0))


def test_measures_and_missing_values():
    assert e_value(1.62, 1.35, 1.95, measure="RR_12m").point == pytest.approx(
        1.62 + math.sqrt(1.62 * 0.62)
    )
    with pytest.raises(ValueError, match="RD"):
        e_value(0.1, 0.0, 0.2, measure="RD_12m")
    nan = e_value(float("nan"), float("nan"), float("nan"), measure="HR")
    assert math.isnan(nan.point)
    d = nan.to_dict()
    json.dumps(d)
    assert d["point"] is None


def test_incidence_at_end_is_kaplan_meier_one_minus_s():
    """Times 1..4 with events at 1 and 3: S = 3/4 x 1/2 = 3/8 at the end, so 5/8."""
    df = pd.DataFrame({"t": [1, 2, 3, 4], "e": [1, 0, 1, 0], "w": [1.0, 1.0, 1.0, 1.0]})
    assert incidence_at_end(df, duration="t", event="e") == pytest.approx(5 / 8)
    assert incidence_at_end(df, duration="t", event="e", weights="w") == pytest.approx(5 / 8)
    # doubling the weight of the first person: S(1) = 3/5, S(3) = 3/5 x 1/2 -> 7/10
    df2 = df.assign(w=[2.0, 1.0, 1.0, 1.0])
    assert incidence_at_end(df2, duration="t", event="e", weights="w") == pytest.approx(0.7)
    # a zero-weight row after the last time does not move the end of follow-up
    df3 = pd.concat([df, pd.DataFrame({"t": [9], "e": [0], "w": [0.0]})], ignore_index=True)
    assert incidence_at_end(df3, duration="t", event="e", weights="w") == pytest.approx(5 / 8)
    assert incidence_at_end(df.assign(e=0), duration="t", event="e") == 0.0


def test_rarity_decided_from_the_incidence():
    common = e_value(0.56, 0.46, 0.69, measure="HR", incidence=0.3)
    assert common.rare is False and common.incidence == 0.3
    assert (
        common.rare_rule
        == "cumulative incidence by the end of follow-up 0.300 > 0.15: common outcome"
    )
    assert common.rr == e_value(0.56, 0.46, 0.69, measure="HR", rare=False).rr
    rare = e_value(0.56, 0.46, 0.69, measure="HR", incidence=0.05)
    assert rare.rare is True and rare.rr == 0.56
    assert rare.rare_rule.endswith("0.050 <= 0.15: rare outcome")
    # boundary: exactly 15% is rare, above is common
    assert e_value(0.7, measure="HR", incidence=0.15).rare is True
    assert e_value(0.7, measure="HR", incidence=0.15 + 1e-9).rare is False
    assert e_value(0.7, measure="HR", incidence=0.1, threshold=0.05).rare is False
    # not estimable incidence: the conversion (smaller E-value) is used
    unknown = e_value(0.7, 0.5, 0.9, measure="HR", incidence=float("nan"))
    assert unknown.rare is False and "not estimable" in unknown.rare_rule
    assert unknown.to_dict()["incidence"] is None
    # odds ratios follow the same rule
    assert e_value(4.0, measure="OR", incidence=0.4).rr == pytest.approx(2.0)


def test_rarity_rule_is_recorded():
    rate = e_value(0.67, 0.57, 0.78, measure="IRR")
    assert rate.rare is None and rate.rare_rule == "not needed: risk or rate ratio"
    assert e_value(0.67, measure="IRR", incidence=0.9).rr == 0.67  # no conversion
    assert e_value(0.7, measure="HR", rare=False).rare_rule == "given: common outcome"
    default = e_value(0.7, measure="HR")
    assert default.rare is True and default.rare_rule == "assumed rare (no incidence given)"
    with pytest.raises(ValueError, match="not both"):
        e_value(0.7, measure="HR", rare=True, incidence=0.2)
    d = e_value(0.7, 0.5, 0.9, measure="HR", incidence=0.2).to_dict()
    json.dumps(d)
    assert {"rare", "rare_rule", "incidence", "conversion"} <= set(d)
