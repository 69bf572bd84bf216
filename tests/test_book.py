"""The report: a Jupyter Book built from a results folder.

The book is built from small results folders written by ``tests/book_fixture.py``
(full: synthetic data with truth; minimal: only the contract's minimum, to check
that every page tolerates missing optional pieces). Each build takes about
30-60 s (the pages are executed), so there are two of them.
"""

from __future__ import annotations

import html
import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from evaluation.report import BOOK_SOURCE, TOC, TRIAL_TOC, BookBuildError, build_book, toc_for
from tests.book_fixture import write_results_fixture

REPO = Path(__file__).resolve().parents[1]
PAGES = (
    "summary",
    "methods",
    "cohort",
    "balance",
    "retention",
    "mortality",
    "crime",
    "sensitivity",
    "missing",
    "reproducibility",
)
PRIMARY = ("mortality", "retention", "crime")
#: the report of an emulated target trial (version-2 extract): _toc_trial.yml
TRIAL_PAGES = (
    "summary_trial",
    "target_trial",
    "retention",
    "mortality",
    "crime",
    "sensitivity",
    "missing",
    "reproducibility",
)


def load_helpers(results_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The book's ``_helpers`` package pointed at ``results_dir`` (fresh modules, empty caches)."""
    monkeypatch.setenv("HAT_RESULTS", str(results_dir))
    for name in [m for m in sys.modules if m == "_helpers" or m.startswith("_helpers.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(BOOK_SOURCE))
    importlib.invalidate_caches()
    return importlib.import_module("_helpers")


def page_text(html_dir: Path, page: str) -> str:
    """A page's HTML with entities decoded (``&lt;`` to ``<``, ``&nbsp;`` to U+00A0)."""
    return html.unescape((html_dir / f"{page}.html").read_text(encoding="utf-8"))


def main_text(html_dir: Path, page: str) -> str:
    """The article part of a page (not the navigation, which names every chapter)."""
    text = page_text(html_dir, page)
    match = re.search(r'<article class="bd-article">(.*)</article>', text, flags=re.S)
    assert match, f"no article in {page}.html"
    return match.group(1)


# ----------------------------------------------------------------------------- fixture = doc
def _documented_tables() -> dict[str, list[str]]:
    """``tables/`` files and columns listed in docs/results-folder.md."""
    doc = (REPO / "docs" / "results-folder.md").read_text(encoding="utf-8")
    out = {}
    for name, cols in re.findall(r"^\| `(\w+)\.csv` \| (.+?) \|$", doc, flags=re.M):
        spans = re.findall(r"`([^`]+)`", cols)
        names = [c.split("(")[0].strip() for span in spans for c in span.split(",")]
        out[name] = [c for c in names if c and c != "..."]
    return out


def test_fixture_follows_the_results_folder_doc(tmp_path):
    folder = write_results_fixture(tmp_path / "results")
    documented = _documented_tables()
    assert len(documented) >= 10
    doc = (REPO / "docs" / "results-folder.md").read_text(encoding="utf-8")
    # tables written only with multiple imputation (tests/test_imputation.py checks them)
    optional = set(re.findall(r"^\| `(\w+)\.csv` \|.*only with multiple imputation", doc, re.M))
    assert optional == {"missing", "balance_mi", "imputation_trace"}
    for name, cols in documented.items():
        if name in optional:
            continue
        df = pd.read_csv(folder / "tables" / f"{name}.csv")
        missing = [c for c in cols if c not in df.columns]
        assert not missing, f"{name}.csv lacks documented columns {missing}"
    import json

    results = json.loads((folder / "results.json").read_text())
    assert {"schema_version", "cohort", "estimates", "design", "diagnostics", "truth"} <= set(
        results
    )
    for outcome in PRIMARY:
        assert sum(e["primary"] and e["outcome"] == outcome for e in results["estimates"]) == 1
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("created", "command", "seed", "config", "config_sha256", "source", "input",
                "extract_date", "extract_notes", "counts", "versions", "timings_seconds",
                "elapsed_seconds"):  # fmt: skip
        assert key in manifest


def _keys(node, prefix: str = "") -> set[str]:
    """Dotted key paths of a JSON document (lists of objects as ``[]``)."""
    opaque = {"truth", "config", "versions", "files", "timings_seconds", "details", "counts"}
    out: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            out.add(prefix + k)
            if k not in opaque:
                out |= _keys(v, f"{prefix}{k}.")
    elif isinstance(node, list):
        for item in node:
            out |= _keys(item, f"{prefix}[].")
    return out


def test_fixture_matches_the_pipeline(tmp_path):
    """Everything the fixture has, a real (CI-scenario) results folder has too.

    So the book, developed and tested against the fixture, reads nothing that the
    pipeline does not write.
    """
    import json

    from evaluation.config import load_config
    from evaluation.run import run

    real = tmp_path / "real"
    # without the multiple-imputation sensitivity analysis, which the fixture does not have
    config = load_config(REPO / "configs" / "ci.yml", imputation={"sensitivity": False})
    run(data=None, out=real, config=config, book=False, quiet=True)
    fixture = write_results_fixture(tmp_path / "fixture")
    real_tables = {p.stem for p in (real / "tables").glob("*.csv")}
    for path in sorted((fixture / "tables").glob("*.csv")):
        assert path.stem in real_tables, f"the pipeline writes no tables/{path.name}"
        extra = set(pd.read_csv(path).columns) - set(
            pd.read_csv(real / "tables" / path.name).columns
        )
        assert not extra, f"tables/{path.name}: columns {extra} are not written by the pipeline"
    for name in ("results.json", "manifest.json"):
        extra = _keys(json.loads((fixture / name).read_text())) - _keys(
            json.loads((real / name).read_text())
        )
        assert not extra, f"{name}: {sorted(extra)} are not written by the pipeline"


# ----------------------------------------------------------------------------- formatting
def test_formatting(tmp_path, monkeypatch):
    h = load_helpers(write_results_fixture(tmp_path / "results"), monkeypatch)
    e = {"measure": "HR", "estimate": 0.734, "ci_low": 0.452, "ci_high": 1.191, "p_value": 0.2113}
    assert h.fmt_estimate(e) == "0.73 (95% CI 0.45 to 1.19; p\u00a0=\u00a00.21)"
    assert h.pval(0.00004) == "p\u00a0<\u00a00.001"
    assert h.pval(0.0042) == "p\u00a0=\u00a00.004"
    assert h.pval(None) == "p not available"
    rd = {"measure": "RD_12m", "estimate": 0.179, "ci_low": 0.081, "ci_high": 0.277, "p_value": 0.5}
    assert (
        h.fmt_estimate(rd)
        == "+17.9\u00a0percentage points (95% CI 8.1 to 27.7; p\u00a0=\u00a00.50)"
    )
    rd24 = {**rd, "measure": "RD_24m", "estimate": -0.021, "ci_low": -0.046, "ci_high": 0.004}
    assert h.fmt_estimate(rd24).startswith("-2.1\u00a0percentage points (95% CI -4.6 to 0.4;")
    assert h.value(-0.021, "RD_24m", short=True) == "-2.1"
    assert h.fmt_estimate(None) == "not available"
    assert h.variable_label("calendar_years_rcs2") == (
        "calendar time (years since the first index date), spline term 2"
    )


def test_notes_are_shown_with_their_estimates(tmp_path, monkeypatch):
    """Not estimable always gives the reason; a finite estimate's note is never dropped."""
    h = load_helpers(write_results_fixture(tmp_path / "results"), monkeypatch)
    bare = {"measure": "HR", "estimate": None}
    assert h.fmt_estimate(bare) == "not estimable (no reason recorded in the results)"
    why = {"measure": "HR", "estimate": None,
           "details": {"note": "not estimable: tau = 730 is beyond the longest follow-up"}}  # fmt: skip
    assert h.fmt_estimate(why) == "not estimable (tau = 730 is beyond the longest follow-up)"
    few = {"measure": "HR", "estimate": 0.734, "ci_low": 0.452, "ci_high": 1.191,
           "p_value": 0.2113, "details": {"note": "only 20 clusters"}}  # fmt: skip
    assert h.fmt_estimate(few) == (
        "0.73 (95% CI 0.45 to 1.19; p\u00a0=\u00a00.21; note: only 20 clusters)"
    )
    notes = h.Notes()
    assert h.fmt_estimate(few, notes).endswith(")" + "{sup}`1`")
    assert h.fmt_estimate(why, notes) == "not estimable{sup}`2`"
    assert notes.mark("only 20 clusters") == "{sup}`1`"  # same note, same number
    assert notes.markdown() == (
        "Notes: {sup}`1` Only 20 clusters. {sup}`2` Not estimable: tau = 730 is beyond the "
        "longest follow-up."
    )
    # a CSV row keeps its details as text
    row = {"measure": "HR", "estimate": float("nan"), "details": '{"note": "no events"}'}
    assert h.fmt_estimate(row) == "not estimable (no events)"
    assert h.change(0.71) == "29% lower" and h.change(1.2) == "20% higher"
    assert h.change(0.998) == "0.2% lower" and h.change(1.0) == "the same"
    assert h.pval(0.0491) == "p\u00a0=\u00a00.049"
    assert h.num(-0.001) == "0.00"
    assert h.variable_label("years_opioid_use (missing)") == "years of opioid use (missing)"
    assert h.variable_label("region: west") == "region: west"
    assert h.variable_label("sex_F") == "sex: F"
    assert h.variable_label("injecting_missing") == "injects drugs (missing)"
    assert h.variable_label("baseline_charges_log1p") == "charges before index (log 1 + x)"
    assert h.variable_order("persons") < h.variable_order("age") < h.variable_order("homeless")
    assert h.table("no_such_table") is None
    assert h.design("no_such_design") is None
    assert h.primary_estimate("crime")["measure"] == "IRR"
    assert h.is_synthetic()


def test_missing_results_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        build_book(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation.report", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "not a results folder" in proc.stderr


def test_report_never_replaces_a_build_folder_it_did_not_make(tmp_path, previous_results):
    """``--out DIR`` whose ``_build`` was not made by the report (no build.log) is refused."""
    out = tmp_path / "mine"
    (out / "_build").mkdir(parents=True)
    (out / "_build" / "thesis.docx").write_bytes(b"mine")
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation.report", str(previous_results), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "left alone" in proc.stderr
    assert (out / "_build" / "thesis.docx").read_bytes() == b"mine"


def test_failing_page_fails_the_build(tmp_path):
    """A page that raises stops the build with BookBuildError naming the error."""
    src = tmp_path / "book"
    src.mkdir()
    (src / "_config.yml").write_text((BOOK_SOURCE / "_config.yml").read_text())
    (src / "_toc.yml").write_text("format: jb-book\nroot: broken\n")
    (src / "broken.md").write_text(
        "---\nfile_format: mystnb\nkernelspec:\n  name: python3\n  display_name: Python 3\n---\n"
        "# Broken\n\n```{code-cell} ipython3\nraise KeyError('no_such_key_in_results')\n```\n"
    )
    results = write_results_fixture(tmp_path / "results", minimal=True)
    with pytest.raises(BookBuildError, match="no_such_key_in_results"):
        build_book(results, source=src)


# ----------------------------------------------------------------------------- whole book
def test_full_book(tmp_path, monkeypatch):
    """Every chapter is built; the summary shows every primary estimate and its truth."""
    results = write_results_fixture(tmp_path / "results")
    out = build_book(results)
    assert out == results / "book" / "_build" / "html"
    assert (out / "index.html").is_file()
    for page in PAGES:
        assert (out / f"{page}.html").is_file(), page
        text = main_text(out, page)
        assert "Traceback" not in text and "Error" not in text, page
        # the emulated target trial's sections belong to a history extract's report only
        for heading in ("Identifying assumptions", "Limitations of the emulation"):
            assert heading not in text, (page, heading)
    assert not (out / "target_trial.html").exists()
    h = load_helpers(results, monkeypatch)
    summary = main_text(out, "summary")
    for outcome in PRIMARY:
        est = h.primary_estimate(outcome)
        assert h.fmt_estimate(est) in summary, outcome
        assert f"True value (synthetic data): {h.fmt_truth(est)}." in summary, outcome
    assert "Synthetic data" in summary
    # figures are embedded as images in the figure pages
    for page, n_images in (("cohort", 1), ("balance", 2), ("retention", 1), ("mortality", 2),
                           ("crime", 1), ("sensitivity", 1)):  # fmt: skip
        assert main_text(out, page).count("<img") >= n_images, page
    # numbers in the text come from the results folder
    retention = main_text(out, "retention")
    assert h.fmt_estimate(h.estimate("retention", "RMST_diff")) in retention
    assert h.fmt_estimate(h.estimate("retention", "RR_12m")) in retention
    assert h.fmt_estimate(h.estimate("crime", "ratio_of_rate_ratios")) in main_text(out, "crime")
    # absolute measures beside the hazard ratios: outcome pages and the summary
    pages = {"mortality": main_text(out, "mortality"), "retention": retention}
    for outcome, page in (("mortality", "mortality"), ("overdose_mortality", "mortality"),
                          ("retention", "retention")):  # fmt: skip
        ests = h.absolute_estimates(outcome)
        assert {"HR", "RD_12m", "RD_24m"} <= set(ests), outcome
        for measure, e in ests.items():
            shown = h.value(e["estimate"], measure, short=True)
            truth = h.value(e["truth"], measure, short=True)
            assert shown in pages[page] and truth in pages[page], (outcome, measure)
            if measure != "HR":
                assert f"{shown} (" in summary, (outcome, measure)
    assert "weights that depend on who is still at risk" in summary
    assert h.manifest()["config_sha256"] in main_text(out, "reproducibility")
    score = h.section("diagnostics", "score_test_retention")
    assert f"χ² = {h.num(score['statistic'])}" in retention and "Log-rank" not in retention
    # notes of estimates: a marker where the estimate is, the note under the table
    sensitivity = main_text(out, "sensitivity").replace("\u2019", "'")  # smart quotes
    for e in h.results()["estimates"]:
        note = h.estimate_note(e)
        if note:
            assert h.not_estimable_reason(e)[1:] in sensitivity, note
    assert sensitivity.count("<sup>") >= 4  # two markers and two notes
    assert "not estimable<sup>" in sensitivity
    # proportional hazards: the test that is done, read as evidence, not proof
    for page in ("summary", "methods", "sensitivity"):
        assert "scaled Schoenfeld" not in main_text(out, page), page
    assert (
        "cox.zph" in sensitivity and "not evidence that the hazards are proportional" in sensitivity
    )
    ph = {t["outcome"]: t for t in h.primary_ph_tests()}
    assert ph["retention"]["p_value"] < 0.05 <= ph["mortality"]["p_value"]  # the fixture's
    assert "retention in treatment the test of proportional hazards rejects them" in summary
    assert f"all-cause mortality ({h.pval(ph['mortality']['p_value'])})" in summary
    assert "averages over follow-up" in summary and "do not assume proportional hazards" in summary
    # E-values: the rule and the incidence
    for x in h.section("diagnostics", "e_values"):
        assert x["rare_rule"] in sensitivity
        if x["incidence"] is not None:
            assert h.pct(x["incidence"]) in sensitivity
    assert "spline term 1" in main_text(out, "balance")


def test_minimal_book(tmp_path, monkeypatch):
    """Only the contract's minimum (no tables, no design, truth null): pages say so, no crash."""
    results = write_results_fixture(tmp_path / "results", minimal=True)
    out = build_book(results, output_dir=tmp_path / "built")
    assert out == tmp_path / "built" / "_build" / "html"
    for page in PAGES:
        assert (out / f"{page}.html").is_file(), page
    h = load_helpers(results, monkeypatch)
    summary = main_text(out, "summary")
    for outcome in PRIMARY:
        assert h.fmt_estimate(h.primary_estimate(outcome)) in summary, outcome
    assert "Synthetic data" not in summary and "True value" not in summary
    # a note and a reason, in the table (as footnotes) and in the text
    assert "not estimable (the cluster-robust variance needs at least 2 clusters" in summary
    assert "note: only 12 clusters" in summary and "Only 12 clusters" in summary
    assert not re.search(r"\bnan\b", summary, flags=re.I)
    assert "not available in this results folder" in main_text(out, "balance")
    assert "not available in this results folder" in main_text(out, "retention")
    assert "no manifest.json" in main_text(out, "reproducibility")


# ----------------------------------------------------------------------------- target trial
@pytest.fixture(scope="module")
def trial_book(trial_results, tmp_path_factory) -> tuple[Path, Path]:
    """A version-2 results folder written by ``evaluation.run`` and its report (HTML).

    The folder is the session's (``conftest.trial_results``: the ``ci`` history scenario with a
    short per-protocol bootstrap); the report is built once for the module, beside it.
    """
    out = tmp_path_factory.mktemp("trial-book")
    # an extract: "auto" would read release/
    return trial_results, build_book(trial_results, output_dir=out, read="full")


def test_toc_follows_the_extract_version(tmp_path):
    v1 = write_results_fixture(tmp_path / "v1", minimal=True)
    assert toc_for(v1) == TOC
    import json

    doc = json.loads((v1 / "results.json").read_text())
    doc["cohort"]["extract_version"] = 2
    (v1 / "results.json").write_text(json.dumps(doc))
    assert toc_for(v1) == TRIAL_TOC
    import yaml

    toc = yaml.safe_load((BOOK_SOURCE / TRIAL_TOC).read_text())
    assert [toc["root"], *(c["file"] for c in toc["chapters"])] == list(TRIAL_PAGES)


def test_run_writes_release_and_the_trial_book(trial_book, monkeypatch):
    """No page of version 1 only; the chapter: protocol, flow, risk sets, balance, estimands."""
    import json

    folder, out = trial_book
    manifest = json.loads((folder / "manifest.json").read_text())
    assert not any("not available for the target-trial" in w for w in manifest["warnings"])
    assert (folder / "release" / "results.json").is_file()
    assert {p.stem for p in out.glob("*.html")} >= set(TRIAL_PAGES)
    for page in ("summary", "methods", "cohort", "balance"):  # version 1's design only
        assert not (out / f"{page}.html").exists(), page
    for page in TRIAL_PAGES:
        text = main_text(out, page)
        assert "Traceback" not in text and "Error" not in text, page
        assert not re.search(r"\bnan\b", re.sub(r"<[^>]+>", " ", text), flags=re.I), page
    h = load_helpers(folder, monkeypatch)
    assert h.is_trial()
    chapter = main_text(out, "target_trial")
    # the protocol table: every component, the target trial's specification, the emulation
    protocol = pd.read_csv(folder / "tables" / "protocol.csv")
    flat = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", chapter)).split())
    for row in protocol.itertuples():
        for cell in (row.component, row.target_trial, row.emulation):
            assert " ".join(str(cell).replace("'", "\u2019").split()) in flat, cell
    for phrase in ("Eligibility and the risk sets", "The comparators", "Balance on the day",
                   "Per-protocol weights", "Sensitivity comparisons", "TARGET"):  # fmt: skip
        assert phrase in chapter, phrase
    cohort = h.section("cohort")
    assert f"{h.integer(cohort['n_risk_sets'])} risk sets" in flat
    assert "intention to treat (95% CI)" in flat and "per protocol (95% CI)" in flat
    # ITT beside per protocol, with the truth: every primary estimate and its counterpart
    summary = main_text(out, "summary_trial")
    summary_flat = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", summary)).split())
    pairs = h.primary_pairs()
    assert {e["outcome"] for e, _ in pairs} == set(PRIMARY)
    for e, pp in pairs:
        assert pp is not None and pp["estimand"] == "per_protocol"
        assert e["estimand"] == "itt"
        for est in (e, pp):
            shown = h.value(est["estimate"], est["measure"], short=True)
            assert f"{shown} (" in flat, (est["outcome"], est["estimand"])
            assert h.value(est["truth"], est["measure"], short=True) in flat
            # the summary names the estimand of every number
            assert " ".join(h.fmt_estimate(est).split()) in summary_flat
    assert summary_flat.count("intention to treat") >= 3
    assert summary_flat.count("per protocol") >= 3
    assert "Intention to treat : the hazard of death" in summary_flat
    # sensitivity comparisons listed from the results document, whatever their method label
    sens = h.sensitivity_estimates()
    assert {e["design"] for e in sens} >= {"naive", "prevalent"}
    for d in {e["design"] for e in sens}:
        assert h.design_label(d, short=True) in flat, d
    # outcome pages say which estimand their curves and rates are
    for page in ("retention", "mortality", "crime"):
        assert "Estimand: intention to treat" in main_text(out, page), page
    assert "clustered on persons" in main_text(out, "retention")
    assert main_text(out, "target_trial").count("<img") >= 1  # balance on the day


def _flat(html_text: str) -> str:
    """Words of a page: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_text)).split())


def _as_shown(text: str) -> str:
    """A helper's Markdown as the page shows it: no emphasis marks, typographic apostrophes."""
    return " ".join(text.replace("*", "").replace("'", "\u2019").split())


def test_trial_chapter_follows_target(trial_book, monkeypatch):
    """TARGET items: data source, estimands, identifying assumptions, follow-up, limitations."""
    folder, out = trial_book
    h = load_helpers(folder, monkeypatch)
    chapter = main_text(out, "target_trial")
    flat = _flat(chapter)
    for heading in ("Estimands", "Identifying assumptions", "Follow-up",
                    "Limitations of the emulation"):  # fmt: skip
        assert f">{heading}<" in chapter.replace("\n", ""), heading
    assert h.has_per_protocol() and h.contrasts() == ["itt", "per_protocol"]
    # every assumption, with the covariates of the propensity model as run
    rows = h.identifying_assumptions()
    assert [r["contrast"] for r in rows].count("per protocol") == 2
    for row in rows:
        for cell in row.values():
            assert _as_shown(cell).lower() in flat.lower(), cell
    for cov in h.protocol()["analysis"]["covariates"]:
        assert h.variable_label(cov) in rows[0]["what it requires here"], cov
    for cov in h.protocol()["per_protocol"]["covariates"]:
        assert h.variable_label(cov) in rows[-2]["what it requires here"], cov
    # one estimand per contrast, each naming its measures
    estimands = h.estimand_rows()
    assert [r["estimand"] for r in estimands] == ["intention to treat (primary)", "per protocol"]
    for row in estimands:
        for cell in row.values():
            assert _as_shown(cell).lower() in flat.lower(), cell
    matched = h.design("matched")
    assert f"{h.integer(matched['n_treated_matched'])} of {h.integer(matched['n_treated'])}" in flat
    # follow-up: start, end, the time at risk of each arm from the mortality table
    rates = pd.read_csv(folder / "tables" / "mortality_rates.csv")
    rates = rates[rates["outcome"] == "all-cause mortality"].set_index("group")["person_years"]
    assert f"{h.num(rates['HAT'], 1)} person-years in the matched initiators" in flat
    assert f"{h.num(rates['OST'], 1)} weighted person-years" in flat
    assert _as_shown(h.follow_up_text()) in flat
    # the data source and the limitations, each one
    assert _as_shown(h.data_source_sentence()) in flat
    assert "extract date (" + h.manifest()["extract_date"] + ")" in flat
    limits = h.limitations()
    assert any("waiting list" in x for x in limits) and any("status forms" in x for x in limits)
    for item in limits:
        assert _as_shown(item) in flat, item
    # the summary identifies the study as an emulated target trial and points to the assumptions
    summary = _flat(main_text(out, "summary_trial"))
    assert "Summary of the emulated target trial" in page_text(out, "summary_trial")
    assert "identifying assumptions" in summary and "Identifying assumptions" in summary


@pytest.fixture(scope="module")
def trial_itt_only(trial_results, tmp_path_factory) -> tuple[Path, Path]:
    """The same extract with intention to treat only and no sensitivity analysis, and its report."""
    from evaluation.config import load_config
    from evaluation.run import run

    extract = trial_results.parent / f"{trial_results.name}-extract"
    folder = tmp_path_factory.mktemp("trial-itt-only") / "results"
    config = load_config(
        target_trial={
            "contrasts": ["itt"],
            "sensitivity": {
                "naive": False,
                "prevalent": False,
                "grace_period_days": None,
                "matching": [],
            },  # fmt: skip
        },
        imputation={"sensitivity": False},
    )
    run(data=extract, out=folder, config=config, book=False, quiet=True)
    return folder, build_book(folder, output_dir=folder.parent / "book", read="full")


def test_trial_chapter_without_per_protocol_or_sensitivity(trial_itt_only, monkeypatch):
    """Per protocol switched off, no sensitivity analysis: nothing claims either was done."""
    folder, out = trial_itt_only
    h = load_helpers(folder, monkeypatch)
    assert not h.has_per_protocol() and h.contrasts() == ["itt"]
    assert [r["estimand"] for r in h.estimand_rows()] == ["intention to treat (primary)"]
    assert all(r["contrast"] == "both" for r in h.identifying_assumptions())
    assert not any("Per protocol" in x or "grace-period" in x for x in h.limitations())
    protocol = pd.read_csv(folder / "tables" / "protocol.csv").set_index("component")
    for component in ("Follow-up", "Causal contrasts", "Statistical analysis"):
        assert "per protocol" not in " ".join(protocol.loc[component]), component
    chapter = _flat(main_text(out, "target_trial"))
    assert (
        "per protocol (95% CI)" not in chapter and "censored, on the day it starts" not in chapter
    )
    assert "The per-protocol contrast was not run" in chapter
    assert "No sensitivity comparison is in this results folder" in chapter
    assert "naive comparison" not in chapter and "prevalent-user comparison" not in chapter
    sensitivity = _flat(main_text(out, "sensitivity"))
    assert (
        "per-protocol analysis" not in sensitivity and "per-protocol estimates" not in sensitivity
    )
    summary = _flat(main_text(out, "summary_trial"))
    assert "The per-protocol contrast was not run" in summary
    assert "Per protocol :" not in summary and "per-protocol row" not in summary
    for page in TRIAL_PAGES:
        text = main_text(out, page)
        assert "Traceback" not in text and "Error" not in text, page
        assert not re.search(r"\bnan\b", re.sub(r"<[^>]+>", " ", text), flags=re.I), page


def test_trial_text_tolerates_a_minimal_results_folder(tmp_path, monkeypatch):
    """No protocol, designs, tables or manifest: the words still come, without a number."""
    import json

    folder = write_results_fixture(tmp_path / "results", minimal=True)
    doc = json.loads((folder / "results.json").read_text())
    doc["cohort"]["extract_version"] = 2
    (folder / "results.json").write_text(json.dumps(doc))
    h = load_helpers(folder, monkeypatch)
    texts = [h.data_source_sentence(), h.follow_up_text(), *h.limitations()]
    texts += [v for r in h.identifying_assumptions() + h.estimand_rows() for v in r.values()]
    for text in texts:
        assert not re.search(r"\b(nan|None)\b", text), text
    assert h.follow_up_sentence() is None and h.extract_tables() is None
