"""Disclosure control: nothing disclosive leaves in ``release/``.

An independent checker (written here from the rules, not from ``evaluation.release``)
scans every released file: no count of persons or events between 1 and the threshold
minus one (nor zero, with zeros disclosive), no per-person row or identifier, no
individual date, no curve time off the grid; and the numbers in a report built from
``release/``. Tiny and skewed extracts must still give a release that passes, with the
suppressions recorded.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.data.extract import read_extract
from evaluation.config import ConfigError, DisclosureConfig, load_config
from evaluation.output_path import foreign_files
from evaluation.pipeline import StudyError, run_study
from evaluation.release import RECORD, RELEASE, make_release, write_release
from evaluation.results_folder import write_results_folder
from synthetic import generate_extract

REPO = Path(__file__).resolve().parents[1]
T = 10  # ACRO's default threshold
COUNT_COLUMN = re.compile(r"^(n|n_.*|events|competing_events|censored)$")
#: columns named like counts that are categories (comparator_use: the number of risk sets)
CATEGORY_COLUMNS = {"n_risk_sets"}
PERSON_COLUMNS = {"person_id", "index_date", "followup_end", "birth_date", "death_date"}
DATE = re.compile(r"\b(?:19|20)\d\d-\d\d-\d\d\b")


# ----------------------------------------------------------------------------- the checker
def _bad_count(x: float, t: int = T, zeros: bool = True) -> bool:
    return (0 < x < t) or (zeros and x == 0)


def check_release(folder: Path, *, t: int = T, grid: int = 30) -> list[str]:
    """Every problem found in a release folder (empty list: it passes)."""
    problems = []
    for path in sorted(folder.rglob("*.csv")):
        df = pd.read_csv(path)
        rel = path.relative_to(folder).as_posix()
        if PERSON_COLUMNS & set(df.columns):
            problems.append(f"{rel}: person-level column {PERSON_COLUMNS & set(df.columns)}")
        for col in df.columns:
            if COUNT_COLUMN.match(str(col)) and col not in CATEGORY_COLUMNS:
                vals = pd.to_numeric(df[col], errors="coerce").dropna()
                bad = vals[[_bad_count(v, t) for v in vals]]
                if len(bad):
                    problems.append(f"{rel}: {col} has counts {sorted(set(bad))[:5]}")
            # the protocol table's dates are the configuration's (e.g. the naive comparison's
            # fixed date), not a person's
            if (
                "protocol" not in rel
                and df[col].dtype == object
                and df[col].astype(str).str.contains(DATE).any()
            ):
                problems.append(f"{rel}: {col} holds dates")
        if "time" in df.columns and ("survival" in df or "cumulative_incidence" in df):
            off = df["time"].dropna() % grid
            if (off != 0).any():
                problems.append(f"{rel}: times off the {grid}-day grid")
        if "time" in df.columns and "n_at_risk" in df:
            off = df["time"].dropna() % grid
            if (off != 0).any():
                problems.append(f"{rel}: times off the {grid}-day grid")
    results = json.loads((folder / "results.json").read_text())

    def walk(node: object, where: str, counts: bool = False) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("truth", "suppressed"):
                    continue
                is_count = counts or bool(re.match(r"^(n|n_.*|events(_.*)?)$", str(k)))
                if is_count and isinstance(v, (int, float)) and not isinstance(v, bool):
                    if _bad_count(v, t):
                        problems.append(f"results.json {where}.{k} = {v}")
                else:
                    walk(v, f"{where}.{k}", k in ("events_by_group", "unmatched_treated_by_reason"))
                if k in ("max_followup",):
                    problems.append(f"results.json {where}.{k}: an individual's value")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(results, "")
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("warnings", "extract_notes", "counts"):
        if key in manifest:
            problems.append(f"manifest.json: {key} released")
    record = json.loads((folder / RECORD).read_text())
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    if files - {RECORD} != set(record["files"]):
        problems.append("disclosure.json does not list every file")
    if any(p.name.startswith("disclosure_") for p in folder.rglob("*.csv")):
        problems.append("evidence tables released")
    acro = json.loads((folder / "acro" / "results.json").read_text())
    if not acro["results"] or acro["version"] != "1.0.2":
        problems.append("no ACRO record")
    return problems


_COUNT_PHRASE = re.compile(
    r"(?<![\d.,<])(\d[\d,]*)\s+(?:persons|patients|HAT patients|deaths|overdose deaths|"
    r"comparators|candidates|OST comparators|OST candidates|OST patients|events|"
    r"matched sets)\b"
)


def check_html(html_dir: Path, *, t: int = T) -> list[str]:
    """Counts below the threshold in the text and count columns of a built report."""
    problems = []
    for page in sorted(html_dir.glob("*.html")):
        raw = page.read_text(encoding="utf-8")
        raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
        for table in re.findall(r"<table\b.*?</table>", raw, flags=re.S):
            heads = [
                html.unescape(re.sub(r"<[^>]+>", "", h)).strip()
                for h in re.findall(r"<th\b.*?</th>", table, flags=re.S)
            ]
            count_cols = [
                i
                for i, h in enumerate(heads)
                if re.match(
                    r"^(HAT|OST|total|deaths|charges|n HAT / OST|day \d+|persons|initiators|"
                    r"person-dates \(rows\)|n HAT / comparators)$",
                    h,
                )
            ]
            for row in re.findall(r"<tr\b.*?</tr>", table, flags=re.S):
                cells = [
                    html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                    for c in re.findall(r"<td\b.*?</td>", row, flags=re.S)
                ]
                for i in count_cols:
                    if i < len(cells):
                        for num in re.findall(r"(?<![\d.<])\d[\d,]*(?![\d.])", cells[i]):
                            if _bad_count(float(num.replace(",", "")), t):
                                problems.append(f"{page.name}: table cell {cells[i]!r}")
        text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
        for m in _COUNT_PHRASE.finditer(text):
            if re.search(r"up to\s*$", text[max(0, m.start() - 12) : m.start()]):
                continue  # a design parameter (1:k matching), not a count
            if _bad_count(float(m.group(1).replace(",", "")), t):
                problems.append(f"{page.name}: {m.group(0)!r}")
    return problems


# ----------------------------------------------------------------------------- helpers
def _results_folder(tmp: Path, data: Path, **config) -> Path:
    """Run the study on ``data`` and write a results folder with its release."""
    cfg = load_config(**{"imputation": {"sensitivity": False}, **config})
    study = run_study(read_extract(data), cfg)
    out = tmp / "results"
    manifest = {"created": "2026-01-01T00:00:00+00:00", "config": cfg.to_dict(),
                "source": {"kind": "extract"}}  # fmt: skip
    write_results_folder(out, results=study.results, manifest=manifest, tables=study.tables)
    write_release(out)
    return out


@pytest.fixture(scope="module")
def ci_results(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("release-ci")
    data = generate_extract("ci", out=tmp / "extract", seed=7)
    return _results_folder(tmp, data, seed=7)


# ----------------------------------------------------------------------------- tests
def test_checker_finds_leaks(ci_results, tmp_path):
    """The checker is not vacuous: the full results folder, as it is, fails it."""
    full = ci_results
    fake = tmp_path / "fake"
    (fake / "tables").mkdir(parents=True)
    for name in ("km_retention", "cif_overdose", "ps_overlap", "flow"):
        (fake / "tables" / f"{name}.csv").write_bytes(
            (full / "tables" / f"{name}.csv").read_bytes()
        )
    for name in ("results.json", "manifest.json"):
        (fake / name).write_bytes((full / name).read_bytes())
    (fake / RECORD).write_text(json.dumps({"files": []}))
    (fake / "acro").mkdir()
    (fake / "acro" / "results.json").write_text(json.dumps({"version": "x", "results": {}}))
    problems = check_release(fake)
    text = "\n".join(problems)
    assert "km_retention.csv: events" in text and "off the 30-day grid" in text
    assert "ps_overlap.csv: n" in text and "no ACRO record" in text


def test_release_of_a_study_passes_and_records(ci_results):
    release = ci_results / RELEASE
    assert check_release(release) == []
    record = json.loads((release / RECORD).read_text())
    names = {o["name"] for o in record["outputs"]}
    for t in ("flow", "exclusions", "table1", "balance", "ps_overlap", "km_retention",
              "km_retention_at_risk", "cif_overdose", "mortality_rates", "crime_rates",
              "estimates"):  # fmt: skip
        assert f"tables/{t}.csv" in names
    assert "results.json" in names and any(n.startswith("figures/") for n in names)
    assert record["config"]["safe_threshold"] == 10 and record["rules"]
    # ACRO's record lists every output, with the reason for each review
    acro = json.loads((release / "acro" / "results.json").read_text())
    assert len(acro["results"]) == len(record["outputs"])
    for out in acro["results"].values():
        assert out["status"] in ("pass", "review")
        assert out["status"] == "pass" or out["exception"]
    # the released results.json keeps the schema; suppressed values are null with a reason
    released = json.loads((release / "results.json").read_text())
    full = json.loads((ci_results / "results.json").read_text())
    assert set(released) == set(full)
    assert [(e["outcome"], e["measure"], e["method"]) for e in released["estimates"]] == [
        (e["outcome"], e["measure"], e["method"]) for e in full["estimates"]
    ]
    for e in released["estimates"]:
        if e["estimate"] is None and full_estimate(full, e)["estimate"] is not None:
            assert "estimate" in e["suppressed"] and "disclosure" in e["details"]["note"]
    # curves: released times are on the grid and every step has >= 10 events
    km = pd.read_csv(release / "tables" / "km_retention.csv")
    assert (km["time"] % 30 == 0).all() and (km["events"].dropna() >= 10).all()


def full_estimate(full: dict, e: dict) -> dict:
    return next(
        f
        for f in full["estimates"]
        if (f["outcome"], f["measure"], f["method"]) == (e["outcome"], e["measure"], e["method"])
    )


def test_release_is_reproducible_and_refuses_foreign_files(ci_results, tmp_path):
    release = ci_results / RELEASE
    before = {p: p.read_bytes() for p in release.rglob("*") if p.is_file()}
    write_release(ci_results)
    after = {p: p.read_bytes() for p in release.rglob("*") if p.is_file()}
    assert before == after
    assert foreign_files(ci_results) == []
    stray = release / "tables" / "mine.csv"
    stray.write_text("x\n1\n")
    assert foreign_files(ci_results) == ["release/tables/mine.csv"]
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation.release", str(ci_results)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "did not write" in proc.stderr
    assert stray.read_text() == "x\n1\n"
    stray.unlink()
    not_results = tmp_path / "other"
    not_results.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation.release", str(not_results)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and list(not_results.iterdir()) == []


def test_thresholds_from_config(ci_results):
    strict = DisclosureConfig(safe_threshold=50, survival_safe_threshold=50)
    rel = make_release(ci_results, config=strict)
    km = rel.tables["km_retention"]
    assert (km["events"].dropna() >= 50).all()
    assert any(o.suppressed for o in rel.outputs if o.name == "tables/table1.csv")
    with pytest.raises(ConfigError, match="disclosure.safe_treshold"):
        load_config(disclosure={"safe_treshold": 5})
    with pytest.raises(ConfigError, match="safe_threshold"):
        load_config(disclosure={"safe_threshold": 0})
    assert load_config().to_dict()["disclosure"]["safe_threshold"] == 10


def _tiny_extract(tmp: Path, n_hat: int, n_ost: int, seed: int) -> Path:
    return generate_extract("ci", out=tmp / f"tiny-{n_hat}-{n_ost}-{seed}", seed=seed,
                            n_hat=n_hat, n_ost=n_ost)  # fmt: skip


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_hat=st.integers(2, 10),
    n_ost=st.integers(3, 20),
    seed=st.integers(0, 10_000),
)
def test_tiny_extracts_give_a_release_that_passes(tmp_path_factory, n_hat, n_ost, seed):
    tmp = tmp_path_factory.mktemp("tiny")
    data = _tiny_extract(tmp, n_hat, n_ost, seed)
    try:
        out = _results_folder(tmp, data, seed=seed)
    except StudyError:
        return  # the study itself cannot be done: nothing is written, nothing released
    release = out / RELEASE
    assert check_release(release) == []
    record = json.loads((release / RECORD).read_text())
    flow = next(o for o in record["outputs"] if o["name"] == "tables/flow.csv")
    # fewer than 10 HAT persons: every HAT count is suppressed and recorded
    assert {s["column"] for s in flow["suppressed"]} >= {"n_hat"}
    est = next(o for o in record["outputs"] if o["name"] == "results.json")
    assert est["suppressed"], "estimates from fewer than 10 persons must be withheld"
    released = json.loads((release / "results.json").read_text())
    assert all(e["estimate"] is None for e in released["estimates"])


def test_skewed_charges_are_suppressed_by_dominance(tmp_path):
    data = generate_extract("ci", out=tmp_path / "extract", seed=11)
    persons = pd.read_csv(data / "persons.csv")
    charges = pd.read_csv(data / "charges.csv")
    # one HAT person gets nearly all charges after index: many on the day of the first one
    hat = persons["person_id"].iloc[0]
    own = charges[charges["person_id"] == hat]
    template = own.iloc[0] if len(own) else charges.iloc[0].copy()
    template["person_id"] = hat
    extra = pd.DataFrame([template] * (20 * len(charges)))
    pd.concat([charges, extra], ignore_index=True).to_csv(data / "charges.csv", index=False)
    out = _results_folder(tmp_path, data, seed=11)
    release = out / RELEASE
    assert check_release(release) == []
    record = json.loads((release / RECORD).read_text())
    reasons = json.dumps(record["outputs"])
    assert "dominance" in reasons


def test_report_from_release_shows_no_small_count(ci_results, tmp_path):
    """One report built from release/: every page builds, no count below the threshold."""
    from evaluation.report import build_book

    html_dir = build_book(ci_results, output_dir=tmp_path / "book", read="release")
    assert check_html(html_dir) == []
    summary = (html_dir / "summary.html").read_text(encoding="utf-8")
    assert "passed disclosure control" in summary
    methods = (html_dir / "methods.html").read_text(encoding="utf-8")
    assert "ACRO" in methods and "&lt;10" in (html_dir / "cohort.html").read_text() + methods
    # the checker sees small counts in a report of the full folder's numbers
    assert check_html_text("3 HAT patients were matched") != []


def check_html_text(text: str) -> list[str]:
    return [m.group(0) for m in _COUNT_PHRASE.finditer(text) if _bad_count(float(m.group(1)))]


def test_rounding_never_goes_below_threshold():
    from evaluation.release import Rules

    rules = Rules(DisclosureConfig(safe_threshold=12, safe_round_base=5))
    assert rules.rounded(12) == 15 and rules.rounded(13) == 15 and rules.rounded(17) == 15
    assert rules.is_small(0) and rules.is_small(11) and not rules.is_small(12)
    assert np.isnan(rules.rounded(float("nan")))
    assert rules.redact_text("3 persons died; matched 1:4; 0 or 1") == (
        "<12 persons died; matched 1:4; 0 or 1"
    )


def test_release_of_a_target_trial_passes(trial_results, tmp_path):
    """A version-2 run writes release/: every table of the trial through its rule, no leak,
    and the trial's chapter built from it shows no count below the threshold."""
    from evaluation.report import BOOK_SOURCE, build_book

    folder = trial_results
    release = folder / RELEASE
    assert check_release(release) == []
    record = json.loads((release / RECORD).read_text())
    names = {o["name"] for o in record["outputs"]}
    for t in ("flow", "exclusions", "balance", "comparator_use", "protocol", "ipcw_weights",
              "km_retention", "cif_overdose", "mortality_rates", "crime_rates", "estimates"):  # fmt: skip
        assert f"tables/{t}.csv" in names, t
    weights = pd.read_csv(release / "tables" / "ipcw_weights.csv")
    assert not weights["quantile"].isin([0.0, 1.0]).any()  # individual values
    released = json.loads((release / "results.json").read_text())
    assert "min" not in released["design"]["designs"]["per_protocol"]["weights"]
    assert "max_risk_sets_per_comparator" not in released["design"]["designs"]["matched"]
    # estimates of designs without evidence (naive, prevalent) are judged by their own counts
    for e in released["estimates"]:
        if e["method"] in ("rate_naive", "rate_prevalent"):
            assert e["estimate"] is None and "dominance" in e["details"]["note"]
    full = json.loads((folder / "results.json").read_text())
    for e in released["estimates"]:
        if e["estimate"] is None and full_estimate(full, e)["estimate"] is not None:
            assert "estimate" in e["suppressed"] and "disclosure" in e["details"]["note"]
    # the trial's summary and chapter from release/ (the other pages are tested elsewhere)
    source = tmp_path / "source"
    source.mkdir()
    for name in ("_config.yml", "summary_trial.md", "target_trial.md"):
        (source / name).write_bytes((BOOK_SOURCE / name).read_bytes())
    import shutil

    shutil.copytree(BOOK_SOURCE / "_helpers", source / "_helpers",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for stub in ("sensitivity", "reproducibility"):  # targets of the pages' links
        (source / f"{stub}.md").write_text(f"# {stub.capitalize()}\n")
    (source / "_toc_trial.yml").write_text(
        "format: jb-book\nroot: summary_trial\nchapters:\n  - file: target_trial\n"
        "  - file: sensitivity\n  - file: reproducibility\n"
    )
    html_dir = build_book(folder, source=source, output_dir=tmp_path / "book", read="release")
    assert check_html(html_dir) == []
    chapter = (html_dir / "target_trial.html").read_text(encoding="utf-8")
    assert "&lt;10" in chapter and "ACRO" in chapter
