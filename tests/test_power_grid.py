"""Power grid of the simulation study: ``--effects`` parsing, truth per setting, a tiny grid.

The tiny grid is the ``ci`` scenario with 60 HAT patients, 2 effect values × 2 replicates
(a few seconds); it is shared by the module.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation import simulate as sim
from evaluation.config import StudyConfig
from evaluation.power_grid import (
    effect_levels,
    is_null,
    parse_effects,
    power_curve_figure,
    truth_varies,
    type_one_error,
)
from evaluation.replicates import Setting, SimulationError, study_fingerprint, truth_values
from synthetic.spec import ScenarioError, load_scenario
from synthetic.spec_effects import effect_name, with_effects

EFFECTS = {"mortality_hr": [0.5, 1.0]}
SUMMARY_FILES = ("summary.csv", "summary.json")


def run_grid(out: Path, effects=EFFECTS, **kwargs) -> sim.Simulation:
    """The ``ci`` scenario, 60 HAT patients × the effects, 2 replicates, seed 11."""
    return sim.simulate(
        "ci",
        replicates=2,
        n_hat=[60],
        effects=effects,
        seed=11,
        out=out,
        jobs=1,
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grid") / "grid"
    run_grid(out)
    return out


# ----------------------------------------------------------------------------- parsing
def test_effects_words_are_parsed_with_the_scenarios_names_too():
    assert parse_effects("mortality_hr=0.5,0.6, 0.7") == ("mortality_hr", (0.5, 0.6, 0.7))
    assert parse_effects("hr_mortality=1")[0] == "mortality_hr"
    assert parse_effects("effects.irr_crime=0.4")[0] == "crime_irr"
    assert effect_name("hr_discontinuation") == "retention_hr"


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("mortality_hr", "NAME=V,V"),
        ("=0.5", "NAME=V,V"),
        ("mortality=0.5", "unknown true effect"),
        ("mortality_hr=", "no values"),
        ("mortality_hr=0.5,abc", "'abc' is not a number"),
        ("mortality_hr=0", "positive"),
        ("crime_irr=-0.5", "positive"),
        ("mortality_hr=nan", "positive"),
        ("mortality_hr=inf", "positive"),
    ],
)
def test_bad_effects_words_are_refused(word: str, message: str):
    with pytest.raises(SimulationError, match=message):
        parse_effects(word)


def test_effect_levels_pair_several_effects_and_sort():
    assert effect_levels(None) == [()]
    assert effect_levels({"mortality_hr": [1.0, 0.5, 1.0]}) == [
        (("mortality_hr", 0.5),),
        (("mortality_hr", 1.0),),
    ]
    levels = effect_levels({"crime_irr": [0.6, 0.4], "mortality_hr": [0.7, 0.5]})
    assert levels == [
        (("mortality_hr", 0.5), ("crime_irr", 0.4)),
        (("mortality_hr", 0.7), ("crime_irr", 0.6)),
    ]
    with pytest.raises(SimulationError, match="same number of values"):
        effect_levels({"mortality_hr": [0.5, 0.7], "crime_irr": [0.4]})
    with pytest.raises(SimulationError, match="given twice"):
        effect_levels({"mortality_hr": [0.5], "hr_mortality": [0.6]})


def test_command_line_refuses_bad_effects(tmp_path: Path, capsys: pytest.CaptureFixture):
    base = ["--replicates", "1", "--out", str(tmp_path / "x"), "--quiet", "--effects"]
    for words, message in (
        (["nope=0.5"], "unknown true effect"),
        (["mortality_hr=0.5,x"], "not a number"),
        (["mortality_hr=-1"], "positive"),
        (["mortality_hr=0.5", "hr_mortality=0.6"], "given twice"),
        (["mortality_hr=0.5,0.7", "crime_irr=0.4"], "same number of values"),
    ):
        with pytest.raises(SystemExit) as exc:  # argparse's word errors
            code = sim.main([*base, *words])
            raise SystemExit(code)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    code = sim.main(["--contract", "2", *base, "mortality_hr=0.5"])
    assert code == 2 and "contract 1" in capsys.readouterr().err
    assert not (tmp_path / "x" / "replicates").exists() or not any(
        (tmp_path / "x" / "replicates").iterdir()
    )


# ----------------------------------------------------------------------------- settings
def test_settings_without_effects_keep_their_names_and_fingerprint():
    plain = Setting(n_hat=100, n_ost=1500)
    assert plain.name == "n_hat-100" and plain.to_dict() == {
        "name": "n_hat-100",
        "n_hat": 100,
        "n_ost": 1500,
    }
    grid = Setting(n_hat=100, n_ost=1500, effects=(("mortality_hr", 0.5), ("crime_irr", 1.0)))
    assert grid.name == "n_hat-100_mortality_hr-0.5_crime_irr-1.0"
    assert Setting.from_dict(grid.to_dict()) == grid
    spec, config = load_scenario("ci"), StudyConfig()
    assert study_fingerprint(spec, config, 11) == study_fingerprint(spec, config, 11, effects=())
    # a grid's fingerprint ignores the scenario's value of the effects it varies
    other = with_effects(spec, {"mortality_hr": 0.3})
    a = study_fingerprint(spec, config, 11, effects=["mortality_hr"])
    assert a == study_fingerprint(other, config, 11, effects=["mortality_hr"])
    assert a != study_fingerprint(spec, config, 11)


def test_with_effects_validates():
    spec = load_scenario("ci")
    assert with_effects(spec, {}) is spec
    assert with_effects(spec, {"retention_hr": 0.5}).effects.hr_discontinuation == 0.5
    with pytest.raises(ScenarioError, match="hr_mortality"):
        with_effects(spec, {"mortality_hr": 0.0})


def test_truth_per_setting_changes_with_the_effect():
    spec = load_scenario("ci")
    low = truth_values(with_effects(spec, {"mortality_hr": 0.5}))[1]
    high = truth_values(with_effects(spec, {"mortality_hr": 1.0}))[1]
    assert low[("mortality", "HR")] < 0.65 < high[("mortality", "HR")] < 1.0
    # the retention estimand does not depend on mortality's effect (up to Monte Carlo error)
    assert math.isclose(low[("retention", "HR")], high[("retention", "HR")], rel_tol=0.05)


# ----------------------------------------------------------------------------- a tiny grid
def test_tiny_grid_has_a_row_per_setting(grid: Path):
    summary = pd.read_csv(grid / "summary.csv")
    names = ["n_hat-60_mortality_hr-0.5", "n_hat-60_mortality_hr-1.0"]
    assert sorted(p.name for p in (grid / "replicates").iterdir()) == names
    primary = summary[summary["primary"]]
    per = primary.groupby(["outcome", "measure"])["setting"].apply(list)
    assert all(sorted(v) == names for v in per)
    assert list(summary.columns[:4]) == ["setting", "n_hat", "n_ost", "effect_mortality_hr"]
    hr = primary[primary["outcome"] == "mortality"].set_index("effect_mortality_hr")["truth"]
    assert np.exp(hr[0.5]) < 0.65 < np.exp(hr[1.0])
    document = json.loads((grid / "summary.json").read_text())
    assert document["effects"] == EFFECTS
    assert [s["effects"] for s in document["settings"]] == [{"mortality_hr": v} for v in (0.5, 1.0)]
    truth = {
        t["effects"]["mortality_hr"]: t["value"]
        for t in document["truth"]
        if (t["outcome"], t["measure"]) == ("mortality", "HR")
    }
    assert math.isclose(truth[0.5], math.exp(hr[0.5])) and truth[0.5] < truth[1.0]
    # each record carries its setting's truth; common random numbers across the effects
    recs = [json.loads((grid / "replicates" / n / "0001.json").read_text()) for n in names]
    assert recs[0]["seed"] == recs[1]["seed"] == {"entropy": 11, "spawn_key": [60, 1]}
    assert recs[0]["cohort"] == recs[1]["cohort"]
    mort = [
        next(e["truth"] for e in r["estimates"] if e["method"] == "cox_matched" and e["primary"])
        for r in recs
    ]
    assert math.isclose(mort[0], truth[0.5], abs_tol=1e-6) and mort[0] < mort[1]
    manifest = json.loads((grid / "manifest.json").read_text())
    assert "common random numbers" in manifest["seeding"]


def test_tiny_grid_resumes_and_extends(grid: Path, tmp_path: Path):
    out = tmp_path / "resumed"
    shutil.copytree(grid, out)
    (out / "replicates" / "n_hat-60_mortality_hr-1.0" / "0000.json").unlink()
    result = run_grid(out)
    assert (result.manifest["replicates_run"], result.manifest["replicates_reused"]) == (1, 3)
    for name in SUMMARY_FILES:
        assert (out / name).read_bytes() == (grid / name).read_bytes(), name
    # another effect value joins the same study: only its replicates run
    result = run_grid(out, effects={"mortality_hr": [0.5, 0.75, 1.0]})
    assert (result.manifest["replicates_run"], result.manifest["replicates_reused"]) == (2, 4)
    assert result.summary["setting"].nunique() == 3


# ----------------------------------------------------------------------------- figure
def _curve_summary() -> pd.DataFrame:
    rows = []
    for n in (100, 400):
        for hr, power in ((0.5, 0.6), (0.8, 0.2), (1.0, 0.05)):
            rows.append(
                {
                    "setting": f"n_hat-{n}_mortality_hr-{hr}",
                    "n_hat": n,
                    "effect_mortality_hr": hr,
                    "outcome": "mortality",
                    "measure": "HR",
                    "method": "cox_matched",
                    "primary": True,
                    "scale": "log",
                    "truth": math.log(hr),
                    "truth_mcse": 0.0 if hr == 1.0 else 0.01,
                    "power": min(1.0, power * n / 100),
                    "power_mcse": 0.02,
                }
            )
    return pd.DataFrame(rows)


def test_power_curve_figure_and_type_one_error():
    import matplotlib.pyplot as plt

    s = _curve_summary()
    fig = power_curve_figure(s, "mortality", "HR", alpha=0.05)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["n_hat = 100", "n_hat = 400"]
    assert ax.get_xscale() == "log"
    plt.close(fig)
    assert truth_varies(s[s["n_hat"] == 100])
    assert not truth_varies(s.assign(truth=0.3)[s["n_hat"] == 100])
    null = type_one_error(s)
    assert list(null["effect_mortality_hr"]) == [1.0, 1.0]
    assert list(is_null([0.0, 0.015, 0.03], [0.0, 0.01, 0.01])) == [True, True, False]


def test_report_has_the_power_curves(grid: Path, tmp_path: Path):
    html = sim.build_report(grid, output_dir=tmp_path / "book")
    text = (html / "power_curves.html").read_text(encoding="utf-8")
    assert text.count("<img") == 1  # the mortality HR's curve; the grid did not move the others
    assert "No setting has a null true value" in text  # a conditional HR of 1 is not null
    assert "Estimands the grid did not move" in text
    summary = (html / "summary.html").read_text(encoding="utf-8")
    assert "mortality_hr = 0.5" in summary and "mortality_hr = 1" in summary


def test_null_scenario_gives_a_null_truth_at_one():
    """``--scenario null --effects mortality_hr=...,1.0``: the point at 1 is a type I error."""
    spec = load_scenario("null")
    null = truth_values(with_effects(spec, {"mortality_hr": 1.0}))
    effect = truth_values(with_effects(spec, {"mortality_hr": 0.6}))
    key = ("mortality", "HR")
    assert is_null([math.log(null[1][key])], [null[2][key]])[0]
    assert not is_null([math.log(effect[1][key])], [effect[2][key]])[0]
