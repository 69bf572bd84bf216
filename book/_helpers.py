"""Loading and formatting a results folder for the pages of the report.

Pages only read a results folder (``results.json``, ``manifest.json``,
``tables/*.csv``, ``figures/*.png``; see ``docs/results-folder.md``) and format
it. The folder is the environment variable ``HAT_RESULTS`` (absolute path) or
``results/`` at the repository root. Every number in the text comes from here.

Missing optional pieces (a table, a design, the truth, the manifest) give
``None`` from the loaders, and the pages print a sentence instead.
"""

from __future__ import annotations

import ast
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import Image, Markdown, display

from analysis.data.measures import MEASURES, measure_label
from analysis.data.measures import measure as measure_info
from evaluation.labels import OUTCOME_LABELS
from evaluation.results_document import Estimate, ResultsDocument, split_method

REPO = Path(__file__).resolve().parents[1]


DESIGN_LABELS = {
    "matched": "1:k matching (primary)",
    "iptw": "inverse probability of treatment weighting (ATT)",
    "matched_caliper0.1": "matching, caliper 0.1 SD",
    "matched_1to1": "1:1 matching",
    "naive": "unmatched, unadjusted (naive)",
    "matched_mi": "1:k matching, multiple imputation",
    "iptw_mi": "IPTW (ATT), multiple imputation",
}
MODEL_LABELS = {
    "cox": "Cox",
    "nb": "negative binomial",
    "rate": "ratio of rates (robust)",
    "km": "Kaplan–Meier",
    "rmst": "RMST",
    "poisson": "Poisson (before/after)",
    "aj": "Aalen–Johansen",
}
VARIABLE_LABELS = {
    "age": "age (years)",
    "sex": "sex",
    "women": "women",
    "region": "region",
    "years_opioid_use": "years of opioid use",
    "prior_ost_episodes": "previous OST episodes",
    "injecting": "injects drugs",
    "psychiatric_dx": "psychiatric diagnosis",
    "homeless": "homeless",
    "prior_overdose": "previous non-fatal overdose",
    "benzodiazepine_use": "benzodiazepine use",
    "baseline_charges": "charges before index",
    "calendar_years": "calendar time (years since the first index date)",
}
#: measure names in tables, with the unit of the value where it is not a ratio (registry)
MEASURE_SHORT = {name: m.short for name, m in MEASURES.items()}


# ----------------------------------------------------------------------------- loading
def results_dir() -> Path:
    """The results folder: ``$HAT_RESULTS`` or ``results/`` at the repository root."""
    return Path(os.environ.get("HAT_RESULTS") or REPO / "results").resolve()


def results_label() -> str:
    """Where the results folder is for the reader: ``$HAT_RESULTS_SHOWN`` (the final place
    when the book is built before the folder is moved there) or :func:`results_dir`."""
    return os.environ.get("HAT_RESULTS_SHOWN") or str(results_dir())


class Suppressed(float):
    """A value withheld by disclosure control: NaN in arithmetic, its label when shown.

    ``release/results.json`` gives a suppressed value as ``null`` and lists it under
    ``suppressed`` with the text to show (``<10``, ``withheld``); ``release/disclosure.json``
    lists the suppressed cells of the tables. The loaders put this marker in their place,
    and the formatting functions show its label.
    """

    def __new__(cls, shown: str = "suppressed") -> Suppressed:
        obj = super().__new__(cls, "nan")
        obj.shown = shown
        return obj

    def __str__(self) -> str:
        return self.shown

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return self.shown


def _mark_suppressed(node: Any) -> Any:
    """Put :class:`Suppressed` markers where ``suppressed`` lists a null value."""
    if isinstance(node, list):
        return [_mark_suppressed(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _mark_suppressed(v) for k, v in node.items()}
    listed = node.get("suppressed")
    if isinstance(listed, Mapping):
        for key, info in listed.items():
            if out.get(key) is None:
                shown = info.get("shown") if isinstance(info, Mapping) else None
                out[key] = Suppressed(str(shown or "suppressed"))
    return out


@cache
def _raw_results() -> dict[str, Any]:
    """Contents of ``results.json`` as written (suppressed values ``null``)."""
    path = results_dir() / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no results.json in {path.parent}: set HAT_RESULTS to a results folder "
            "written by `python -m evaluation.run`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def results() -> dict[str, Any]:
    """Contents of ``results.json`` (required); suppressed values as :class:`Suppressed`."""
    return _mark_suppressed(_raw_results())


@cache
def document() -> ResultsDocument:
    """``results.json`` through its typed model (a suppressed value is ``None`` there)."""
    return ResultsDocument.model_validate(_raw_results())


def _typed_estimates() -> list[tuple[Estimate, dict[str, Any]]]:
    """Each estimate typed, beside its entry of :func:`results` (what the pages format)."""
    return list(zip(document().estimates, results().get("estimates", []), strict=True))


@cache
def disclosure() -> dict[str, Any]:
    """``disclosure.json`` of a release folder; empty for a full results folder."""
    path = results_dir() / "disclosure.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")) or {}


def is_release() -> bool:
    """Whether the pages read ``release/`` (outputs that passed disclosure control)."""
    return bool(disclosure())


def suppressed_label() -> str:
    """How a suppressed count is shown: ``<10`` (the configured threshold)."""
    t = (disclosure().get("config") or {}).get("safe_threshold")
    return f"<{t}" if t else "suppressed"


@cache
def manifest() -> dict[str, Any]:
    """Contents of ``manifest.json``; empty when absent."""
    path = results_dir() / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")) or {}


def section(*keys: str, default: Any = None) -> Any:
    """``results()[k1][k2]...``, or ``default`` if any level is missing or null."""
    node: Any = results()
    for key in keys:
        if not isinstance(node, Mapping) or node.get(key) is None:
            return default
        node = node[key]
    return node


def table(name: str) -> pd.DataFrame | None:
    """``tables/<name>.csv`` as a DataFrame, or ``None`` if absent or empty."""
    path = results_dir() / "tables" / f"{name}.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    for out in disclosure().get("outputs", []):
        if out.get("name") != f"tables/{name}.csv":
            continue
        for cell in out.get("suppressed", []):
            row, col = cell.get("row"), cell.get("column")
            if isinstance(row, int) and col in df and 0 <= row < len(df):
                if df[col].dtype != object:
                    df[col] = df[col].astype(object)
                df.at[row, col] = Suppressed(str(cell.get("shown") or "suppressed"))
    return df if len(df) else None


def figure_file(name: str) -> Path | None:
    """``figures/<name>.png`` if present."""
    path = results_dir() / "figures" / f"{name}.png"
    return path if path.is_file() else None


def estimates() -> pd.DataFrame:
    """Every estimate of ``results.json``, one row each (``details`` kept as dicts)."""
    est = pd.DataFrame(results().get("estimates", []))
    for col in ("outcome", "measure", "method", "estimate", "ci_low", "ci_high", "p_value",
                "truth", "primary", "n_events", "n_treated", "n_control"):  # fmt: skip
        if col not in est:
            est[col] = None
    est["primary"] = est["primary"].fillna(False).astype(bool)
    typed = document().estimates
    est["design"] = [e.design for e in typed] if typed else None
    est["model"] = [e.model for e in typed] if typed else None
    return est


def estimate(
    outcome: str, measure: str, method: str | None = None, *, primary: bool | None = None
) -> dict[str, Any] | None:
    """One estimate as a dict; by default the primary one, else the matched one."""
    cands = [
        (t, e)
        for t, e in _typed_estimates()
        if t.outcome == outcome
        and t.measure == measure
        and (method is None or t.method == method)
        and (primary is None or t.primary == primary)
    ]
    if not cands:
        return None
    for t, e in cands:
        if t.primary:
            return e
    for t, e in cands:
        if t.design == "matched":
            return e
    return cands[0][1]


def primary_estimate(outcome: str) -> dict[str, Any] | None:
    """The estimate with ``primary: true`` for an outcome."""
    for t, e in _typed_estimates():
        if t.outcome == outcome and t.primary:
            return e
    return None


def design(name: str = "matched") -> dict[str, Any] | None:
    """``design.designs[name]`` or ``None``."""
    return section("design", "designs", name)


def config() -> dict[str, Any]:
    """The resolved study configuration from the manifest (empty if unknown)."""
    return manifest().get("config") or {}


def is_synthetic() -> bool:
    """Whether the results come from synthetic data (truth known or synthetic source)."""
    source = manifest().get("source") or {}
    return results().get("truth") is not None or source.get("kind") == "synthetic"


# ----------------------------------------------------------------------------- formatting
def finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def num(x: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals, or an en dash when missing."""
    if isinstance(x, Suppressed):
        return x.shown
    if not finite(x):
        return "–"
    x = float(x)
    if round(x, digits) == 0:
        x = 0.0  # no "-0.00"
    return f"{x:,.{digits}f}"


def integer(x: Any) -> str:
    """An integer with thousands separators, or an en dash."""
    if isinstance(x, Suppressed):
        return x.shown
    if not finite(x):
        return "–"
    return f"{round(float(x)):,}"


def pct(x: Any, digits: int = 1) -> str:
    """A proportion (0–1) as a percentage."""
    if isinstance(x, Suppressed):
        return x.shown
    if not finite(x):
        return "–"
    return f"{100 * float(x):.{digits}f}%"


def pval(p: Any) -> str:
    """``p = 0.14``, ``p = 0.049``, ``p = 0.004`` or ``p < 0.001``."""
    if not finite(p):
        return "p not available"
    p = float(p)
    # non-breaking spaces keep "p = 0.14" on one line
    if p < 0.001:
        return "p\u00a0<\u00a00.001"
    if p < 0.1:  # three decimals near the usual thresholds (0.049, not 0.05)
        return f"p\u00a0=\u00a0{p:.3f}"
    return f"p\u00a0=\u00a0{p:.2f}"


def p_only(p: Any) -> str:
    """A p-value for a table column headed "p": ``0.14``, ``< 0.001``."""
    return pval(p).removeprefix("p\u00a0=\u00a0").removeprefix("p\u00a0")


def confidence_level() -> int:
    """Confidence level in percent, from the configuration's ``alpha`` (default 95)."""
    alpha = config().get("alpha", 0.05)
    return round(100 * (1 - float(alpha)))


def ci_label() -> str:
    """``95% CI`` (or the configured level)."""
    return f"{confidence_level()}% CI"


def _info(measure: str) -> Any:
    """The registered :class:`~analysis.data.measures.Measure`, or ``None`` for another name."""
    try:
        return measure_info(measure)
    except KeyError:
        return None


def _digits(measure: str) -> int:
    """Decimals of a measure (the registry's; 2 for an unknown name)."""
    info = _info(measure)
    return 2 if info is None else info.digits


def value(x: Any, measure: str, *, short: bool = False) -> str:
    """A value on the natural scale of its measure (RD in percentage points, RMST in days).

    ``short=True`` (tables) leaves the unit out; the measure's label carries it.
    """
    info = _info(measure)
    if info is not None and not info.is_ratio:  # a difference: signed, in its unit
        unit = "" if short else f"\u00a0{info.unit}"
        return "–" if not finite(x) else f"{info.factor * float(x):+.{info.digits}f}{unit}"
    return num(x, _digits(measure))


def interval(e: Mapping[str, Any]) -> str:
    """``95% CI 0.45 to 1.12`` for an estimate."""
    measure = e.get("measure", "")
    lo, hi = e.get("ci_low"), e.get("ci_high")
    if not (finite(lo) and finite(hi)):
        return f"{ci_label()} not available"
    info = _info(measure)
    if info is not None and info.factor != 1:  # shown in other units (percentage points)
        lo, hi = info.factor * float(lo), info.factor * float(hi)
        return f"{ci_label()} {lo:.{info.digits}f} to {hi:.{info.digits}f}"
    return f"{ci_label()} {num(lo, _digits(measure))} to {num(hi, _digits(measure))}"


def estimate_note(e: Mapping[str, Any] | None) -> str | None:
    """The note an estimate carries (``details.note``): why it is not estimable, or a
    caveat on a finite estimate (e.g. few clusters); ``None`` when there is none."""
    if e is None:
        return None
    details = e.get("details")
    note = per_group_details(details).get("note") if details is not None else None
    if note is None and isinstance(e.get("note"), str):  # a table with a note column
        note = e["note"]
    return (str(note).strip() or None) if note else None


def count_or_sum(x: Any) -> str:
    """A count (``12``) or a weighted sum (``10.8``); a suppressed one as its label."""
    if finite(x) and float(x) == round(float(x)):
        return integer(x)
    return num(x, 1)


def withheld(e: Mapping[str, Any] | None) -> bool:
    """Whether an estimate was withheld by disclosure control (few persons or events)."""
    listed = (e or {}).get("suppressed")
    return isinstance(listed, Mapping) and "estimate" in listed


def unavailable(e: Mapping[str, Any] | None) -> str:
    """``withheld`` (disclosure control) or ``not estimable`` for an estimate without value."""
    return "withheld" if withheld(e) else "not estimable"


def not_estimable_reason(e: Mapping[str, Any]) -> str:
    """Why an estimate is not estimable, for the reader (never empty)."""
    # "not estimable: ...", "HR not estimable: ..." -> the reason alone
    reason = re.sub(r"^(?:\w+ )?not estimable\s*:?\s*", "", estimate_note(e) or "")
    return reason or "no reason recorded in the results"


class Notes:
    """Footnotes for the estimates of one table or list.

    ``mark(text)`` gives a superscript number for a note (the same number for the same
    text); ``show()`` writes the notes under the table. A note is never dropped: a finite
    estimate that carries one (e.g. "only 20 clusters ...") is marked where it is shown.
    """

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str | None) -> str:
        """A superscript marker for ``text`` (empty for no text)."""
        if not text:
            return ""
        if text not in self.texts:
            self.texts.append(text)
        return f"{{sup}}`{self.texts.index(text) + 1}`"

    def markdown(self) -> str:
        """The notes as Markdown, one paragraph; empty when there are none."""
        if not self.texts:
            return ""
        return "Notes: " + " ".join(
            f"{{sup}}`{i}` {t[0].upper() + t[1:]}{'' if t.endswith('.') else '.'}"
            for i, t in enumerate(self.texts, start=1)
        )

    def show(self) -> None:
        """Show the notes (nothing when there are none)."""
        if self.texts:
            md(self.markdown())


def fmt_estimate(e: Mapping[str, Any] | None, notes: Notes | None = None) -> str:
    """An estimate as the report writes it: ``0.73 (95% CI 0.45 to 1.19; p = 0.21)``.

    A not-estimable estimate gives ``not estimable (reason)``; a finite one with a note
    gives the note inside the brackets (``...; p = 0.21; note: only 20 clusters ...)``).
    With ``notes`` (a table), the note becomes a footnote marker instead.
    """
    if e is None:
        return "not available"
    if not finite(e.get("estimate")):
        word = unavailable(e)
        if notes is not None:
            reason = not_estimable_reason(e)
            return word + notes.mark(reason if withheld(e) else "not estimable: " + reason)
        return f"{word} ({not_estimable_reason(e).removeprefix('withheld for ')})"
    note = estimate_note(e)
    text = f"{value(e['estimate'], e.get('measure', ''))} ({interval(e)}; {pval(e.get('p_value'))}"
    if note and notes is not None:
        return text + ")" + notes.mark(note)
    return text + (f"; note: {note})" if note else ")")


def fmt_truth(e: Mapping[str, Any] | None) -> str | None:
    """The true value of an estimate's estimand, or ``None`` when not known."""
    if e is None or not finite(e.get("truth")):
        return None
    return value(e["truth"], e.get("measure", ""))


def change(ratio: Any) -> str:
    """``29% lower`` / ``12% higher`` / ``0.2% lower`` for a ratio."""
    if not finite(ratio):
        return "not estimable"
    r = float(ratio)
    d = abs(1 - r) * 100
    if round(d, 1) == 0:
        return "the same"
    text = f"{d:.0f}%" if d >= 1 else f"{d:.1f}%"
    return f"{text} {'lower' if r < 1 else 'higher'}"


def interval_phrase(e: Mapping[str, Any], what: str) -> str:
    """Plain-language reading of a ratio's confidence interval."""
    lo, hi = e.get("ci_low"), e.get("ci_high")
    if not (finite(lo) and finite(hi)):
        return "No confidence interval is available."
    lo, hi = float(lo), float(hi)
    level = confidence_level()
    span = f"from {change(lo)} to {change(hi)}"
    if lo <= 1 <= hi:
        return (
            f"The {level}% confidence interval runs {span} {what} and includes no difference, "
            "so these data cannot tell a benefit from no effect or a harm."
        )
    return f"The {level}% confidence interval runs {span} {what} and excludes no difference."


def variable_label(name: Any) -> str:
    """Readable name of a covariate or a design-matrix column.

    ``years_opioid_use_missing`` -> ``years of opioid use (missing)``, ``sex_F`` ->
    ``sex: F``, ``baseline_charges_log1p`` -> ``charges before index (log 1 + x)``;
    ``region: west`` and unknown names are kept.
    """
    text = str(name)
    for key in sorted(VARIABLE_LABELS, key=len, reverse=True):
        if text == key:
            return VARIABLE_LABELS[key]
        if text.startswith(key) and text[len(key)] in " :_":
            rest = text[len(key) :]
            if rest.startswith("_"):
                rest = rest[1:]
                if rest.startswith("rcs") and rest[3:].isdigit():  # restricted cubic spline
                    rest = f", spline term {rest[3:]}"
                else:
                    rest = {"missing": " (missing)", "log1p": " (log 1 + x)"}.get(rest, f": {rest}")
            return VARIABLE_LABELS[key] + rest
    return text


def variable_order(name: Any) -> int:
    """Position of a Table 1 / balance row: persons first, then covariates as configured."""
    text = str(name)
    covs = ["persons", *(section("design", "covariates", default=None) or VARIABLE_LABELS)]
    covs = [("women" if c == "sex" else c) for c in covs] + ["sex"]
    for i, key in enumerate(covs):
        if text == key or text.startswith((key + " ", key + ":", key + "_")):
            return i
    return len(covs)


def design_label(name: Any, *, short: bool = False, primary: Any = None) -> str:
    """Readable name of a design (``matched``, ``iptw``, ``matched_caliper0.1``...).

    The short name of the primary design says "(primary)" unless ``primary`` is False: a
    secondary estimate on that design (a risk difference, the negative binomial beside
    crime's rate ratio) is then not mistaken for the primary estimate.
    """
    name = str(name)
    if not short:
        if name in DESIGN_LABELS:
            return DESIGN_LABELS[name]
        if name.startswith("matched_caliper"):
            return f"matching, caliper {name.removeprefix('matched_caliper')} SD"
        return name.replace("_", " ")
    short_names = {"matched": "matched 1:k (primary)", "iptw": "IPTW", "matched_1to1": "matched 1:1",
                   "naive": "naive (unadjusted)"}  # fmt: skip
    if name in short_names:
        k = (design("matched") or {}).get("k") if name == "matched" else None
        if name == "matched" and primary is not None and not bool(primary):
            return f"matched 1:{k}" if k else "matched 1:k"
        return f"matched 1:{k} (primary)" if k else short_names[name]
    if name.startswith("matched_caliper"):
        return f"caliper {name.removeprefix('matched_caliper')} SD"
    return name.replace("_", " ")


def label(outcome: str | None = None, measure: str | None = None, method: str | None = None) -> str:
    """Readable label of an outcome, a measure or a method."""
    if outcome is not None:
        return OUTCOME_LABELS.get(outcome, str(outcome).replace("_", " "))
    if measure is not None:
        return measure_label(measure)
    if method is not None:
        model, design_name = split_method(method)
        return f"{MODEL_LABELS.get(model, model)}, {design_label(design_name)}"
    return ""


#: the time transform g(t) of a proportional-hazards test (``ph_test.transform``)
PH_TRANSFORMS = {
    "km": "1 − Kaplan–Meier",
    "rank": "the rank of the event time",
    "identity": "time",
    "log": "log time",
}
#: the page that shows an outcome's estimates
OUTCOME_PAGES = {
    "mortality": "mortality.md",
    "overdose_mortality": "mortality.md",
    "retention": "retention.md",
    "crime": "crime.md",
}


def alpha_level() -> float:
    """The configured ``alpha`` (default 0.05): the level of the tests the text reads."""
    a = config().get("alpha", 0.05)
    return float(a) if finite(a) else 0.05


def ph_variance_label(test: Mapping[str, Any]) -> str:
    """``robust`` or ``model-based``: the variance of a proportional-hazards test."""
    return {"robust": "robust", "model": "model-based"}.get(
        str(test.get("variance")), str(test.get("variance") or "–")
    )


def primary_ph_tests() -> list[dict[str, Any]]:
    """The proportional-hazards tests of the primary Cox models (``diagnostics.ph_tests``)."""
    primary = {(e.get("outcome"), e.get("method")) for e in results().get("estimates", [])
               if e.get("primary")}  # fmt: skip
    return [
        t
        for t in section("diagnostics", "ph_tests", default=[])
        if (t.get("outcome"), t.get("method")) in primary
    ]


def other_measures(outcome: str, method_suffix: str = "_matched") -> list[str]:
    """Labels of the measures beside the HR for an outcome (absolute measures and others)."""
    seen = []
    design_name = method_suffix.removeprefix("_")
    for e in document().estimates:
        m = e.measure
        if e.outcome == outcome and m not in ("HR", "IRR") and e.design == design_name:
            if m not in seen:
                seen.append(m)
    return [label(measure=m).removesuffix(" (days)") for m in seen]


# ----------------------------------------------------------------------------- display
def md(text: str) -> None:
    """Show Markdown (MyST) text."""
    display(Markdown(text))


def missing(what: str) -> None:
    """Say that an optional piece is not in this results folder."""
    md(f"*{what} is not available in this results folder ({results_dir().name}).*")


def md_table(df: pd.DataFrame, **kwargs: Any) -> None:
    """Show a DataFrame as a Markdown table (rendered as a real table)."""
    kwargs.setdefault("disable_numparse", True)  # keep the formatting given (no "-0", "1")
    display(Markdown(df.to_markdown(index=False, **kwargs)))


def show(fig: Any, *, width: int | None = None) -> None:
    """Show a matplotlib figure as a PNG (independent of the backend) and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buf.getvalue(), width=width))


def show_png(name: str) -> bool:
    """Show ``figures/<name>.png`` if present; return whether it was."""
    path = figure_file(name)
    if path is None:
        return False
    display(Image(filename=str(path)))
    return True


def figure(name: str, draw, *tables_needed: str, what: str) -> None:
    """Draw a figure from its tables with :mod:`evaluation.figures`.

    Falls back on ``figures/<name>.png`` when a table is absent, and on a
    sentence when neither is there.
    """
    tabs = [table(t) for t in tables_needed]
    if all(t is not None for t in tabs):
        show(draw(*tabs))
    elif not show_png(name):
        missing(what)


def forest_input(est: pd.DataFrame) -> pd.DataFrame:
    """Estimates with readable outcome and design names for ``figures.forest_plot``.

    The plot labels rows ``<outcome> <measure> · <method>``; here the outcome and the
    method are replaced by their labels, and rows are ordered by outcome, measure and
    design (primary first), so each outcome's estimates sit together.
    """
    order = {o: i for i, o in enumerate(OUTCOME_LABELS)}
    design_order = {d: i for i, d in enumerate(DESIGN_LABELS)}

    def d_key(d: Any) -> float:
        return design_order.get(d, 2.5 if str(d).startswith("matched_caliper") else 99)

    est = est.assign(_o=est["outcome"].map(order).fillna(99), _d=est["design"].map(d_key))
    est = est.sort_values(["_o", "measure", "_d"], kind="stable")
    return est.assign(
        outcome=est["outcome"].map(lambda o: label(outcome=o)),
        method=[
            design_label(d, short=True, primary=p)
            for d, p in zip(est["design"], est["primary"], strict=True)
        ],
    ).drop(columns=["_o", "_d"])


def source_note() -> None:
    """Say which outputs the pages read: ``release/`` (disclosure-controlled) or the full folder."""
    if is_release():
        md(
            ":::{admonition} Outputs that passed disclosure control\n:class: note\n"
            "These pages are built from `release/`, the outputs that may leave the secure "
            "research environment: counts below the threshold are shown as "
            f"{suppressed_label()}, curves are on a coarse time grid, and estimates from too "
            "few persons or events are withheld. The rules are listed in the methods.\n:::"
        )
    else:
        md(
            ":::{admonition} Full results (not checked for disclosure)\n:class: note\n"
            "These pages are built from the full results folder, for the analyst inside the "
            "secure research environment; they are not checked for disclosure. The outputs "
            "that may leave it, and a report built from them, are in `release/`.\n:::"
        )


def disclosure_rules() -> None:
    """The disclosure-control rules applied to ``release/``, from its record."""
    record = disclosure()
    if not record:
        release = results_dir() / "release" / "disclosure.json"
        if release.is_file():
            record = json.loads(release.read_text(encoding="utf-8"))
    if not record:
        md("*No disclosure record is available for these results.*")
        return
    where = "These pages show" if is_release() else "The released outputs (`release/`) show"
    tool = record.get("tool") or {}
    md(
        f"{where} only what passed statistical disclosure control with the rules of ACRO "
        f"{tool.get('version', '')} (SACRO project), thresholds from the "
        f"{record.get('config_source', 'configuration')}:\n\n"
        + "\n".join(f"- {rule}" for rule in record.get("rules", []))
        + "\n\nEvery output, the rule applied and each suppressed cell with its reason are "
        "listed in `release/disclosure.json`, and in ACRO's format in `release/acro/` for "
        "review in SACRO-Viewer."
    )


def synthetic_banner() -> None:
    """A warning banner when the results come from synthetic data."""
    if not is_synthetic():
        return
    truth = results().get("truth") or {}
    scenario = truth.get("scenario") or (manifest().get("source") or {}).get("scenario")
    extra = f" (scenario `{scenario}`)" if scenario else ""
    md(
        ":::{admonition} Synthetic data\n:class: warning\n"
        f"These results come from a simulated registry extract{extra}, "
        "not from real patients. They show what the analysis does and how close it gets to "
        "the known true effects; they say nothing about heroin-assisted treatment in Norway.\n"
        ":::"
    )


def estimates_table(
    rows: Iterable[Mapping[str, Any]], *, with_truth: bool | None = None, outcome: bool = False
) -> None:
    """A table of estimates: measure, design, estimate (CI), p, n, truth; models below.

    ``outcome=True`` adds an outcome column (for a table mixing outcomes).
    """
    rows = list(rows)
    if not rows:
        missing("No estimate")
        return
    if with_truth is None:
        with_truth = any(finite(r.get("truth")) for r in rows)
    notes = Notes()
    out = []
    for r in rows:
        measure = r.get("measure", "")
        design_name = r.get("design") or split_method(r.get("method", ""))[1]
        ci = interval(r).removeprefix(ci_label() + " ")
        estimable = finite(r.get("estimate"))
        if estimable:
            shown = value(r.get("estimate"), measure, short=True) + notes.mark(estimate_note(r))
        else:
            shown = fmt_estimate(r, notes)
        row = {"outcome": label(outcome=r.get("outcome"))} if outcome else {}
        row.update(
            {
                "measure": MEASURE_SHORT.get(measure, measure),
                "design": design_label(design_name, short=True, primary=r.get("primary")),
                "estimate": shown,
                ci_label(): ci.replace(" to ", "\u00a0to\u00a0") if "available" not in ci else "–",
                "p": p_only(r.get("p_value")) if estimable else "–",
                "n HAT / OST": f"{integer(r.get('n_treated'))} / {integer(r.get('n_control'))}",
            }
        )
        if with_truth:
            row["truth"] = (
                value(r.get("truth"), measure, short=True) if finite(r.get("truth")) else "–"
            )
        out.append(row)
    df = pd.DataFrame(out)
    n_left = 3 if outcome else 2
    md_table(df, colalign=["left"] * n_left + ["right"] * (df.shape[1] - n_left))
    models = {}
    for r in rows:
        model = r.get("model") or split_method(r.get("method", ""))[0]
        measure = r.get("measure", "")
        models.setdefault(MODEL_LABELS.get(model, model), []).append(
            MEASURE_SHORT.get(measure, measure)
        )
    md(
        "Models: "
        + "; ".join(f"{m} ({', '.join(dict.fromkeys(ms))})" for m, ms in models.items())
        + "."
        + ("\n\n" + notes.markdown() if notes.texts else "")
    )


def per_group_details(details: Any) -> dict[str, Any]:
    """``details`` of an estimate, whether a dict or its text in a CSV cell."""
    if isinstance(details, Mapping):
        return dict(details)
    if isinstance(details, str) and details.strip().startswith("{"):
        try:
            return json.loads(details)
        except json.JSONDecodeError:
            try:
                parsed = ast.literal_eval(details)
            except (ValueError, SyntaxError):
                return {}
            return parsed if isinstance(parsed, dict) else {}
    return {}


# ----------------------------------------------------------------------------- absolute measures
#: the hazard ratio and the absolute measures of a time-to-event outcome, in table order
ABSOLUTE_MEASURES = ("HR", "RD_12m", "RD_24m", "RMST_diff")
#: what each absolute measure is a difference of, per outcome (HAT − OST)
ABSOLUTE_LABELS = {
    "mortality": {
        "RD_12m": "risk of death by 12 months, difference (pp)",
        "RD_24m": "risk of death by 24 months, difference (pp)",
        "RMST_diff": "days alive in the first {tau} days, difference",
    },
    "overdose_mortality": {
        "RD_12m": "cumulative incidence of overdose death by 12 months, difference (pp)",
        "RD_24m": "cumulative incidence of overdose death by 24 months, difference (pp)",
        "RMST_diff": "days alive in the first {tau} days, difference",
    },
    "retention": {
        "RD_12m": "share still in treatment at 12 months, difference (pp)",
        "RD_24m": "share still in treatment at 24 months, difference (pp)",
        "RMST_diff": "days in treatment in the first {tau} days, difference",
    },
}


def absolute_estimates(outcome: str) -> dict[str, dict[str, Any]]:
    """The matched-design HR and absolute measures of an outcome, by measure (present only)."""
    out = {}
    for measure in ABSOLUTE_MEASURES:
        e = estimate(outcome, measure)
        if e is not None and split_method(e.get("method", ""))[1] == "matched":
            out[measure] = e
    return out


def _tau_text(e: Mapping[str, Any]) -> str:
    tau = (e.get("details") or {}).get("tau") or config().get("rmst_tau_days")
    return f"{float(tau):g}" if finite(tau) else "τ"


def absolute_table(outcome: str) -> None:
    """A table of the hazard ratio beside the risk differences and the RMST difference.

    Rows: the HR, the differences at 12 and 24 months and the RMST difference of
    ``outcome`` on the primary (matched) design, each with its interval, p-value and,
    for synthetic data, the true value; the notes of not-estimable rows below.
    """
    rows_in = absolute_estimates(outcome)
    if not rows_in:
        missing(f"The hazard ratio and absolute measures of {label(outcome=outcome)}")
        return
    with_truth = any(finite(e.get("truth")) for e in rows_in.values())
    rows, notes = [], []
    for measure, e in rows_in.items():
        name = (
            "hazard ratio"
            if measure == "HR"
            else ABSOLUTE_LABELS.get(outcome, {}).get(measure, measure).format(tau=_tau_text(e))
        )
        ci = interval(e).removeprefix(ci_label() + " ")
        estimable = finite(e.get("estimate"))
        row = {
            "measure (HAT vs OST)": name,
            "estimate": value(e.get("estimate"), measure, short=True)
            if estimable
            else unavailable(e),
            ci_label(): ci.replace(" to ", "\u00a0to\u00a0") if "available" not in ci else "–",
            "p": p_only(e.get("p_value")),
        }
        if with_truth:
            row["true value"] = (
                value(e.get("truth"), measure, short=True) if finite(e.get("truth")) else "–"
            )
        rows.append(row)
        note = (e.get("details") or {}).get("note")
        if not estimable and note:
            notes.append(f"{name}: {note}")
    df = pd.DataFrame(rows)
    md_table(df, colalign=["left"] + ["right"] * (df.shape[1] - 1))
    if notes:
        md("Not estimable or withheld: " + "; ".join(notes) + ".")


def absolute_summary_table(outcomes: Iterable[str]) -> bool:
    """One row per outcome (and one for its true values): HR, RD 12 m, RD 24 m, RMST diff.

    Returns whether any estimate was shown.
    """
    cols = {"HR": "HR", "RD_12m": "RD 12 m (pp)", "RD_24m": "RD 24 m (pp)",
            "RMST_diff": "RMST diff. (days)"}  # fmt: skip
    rows, any_truth = [], False
    found = {o: absolute_estimates(o) for o in outcomes}
    for outcome, ests in found.items():
        if not ests:
            continue
        row, truth = {"outcome": label(outcome=outcome)}, {"outcome": "\u2003true value"}
        for measure, head in cols.items():
            e = ests.get(measure)
            if e is None or not finite(e.get("estimate")):
                row[head] = "–" if e is None else unavailable(e)
            else:
                ci = interval(e).removeprefix(ci_label() + " ")
                ci = ci.replace(" to ", "\u00a0to\u00a0") if "available" not in ci else "–"
                row[head] = f"{value(e['estimate'], measure, short=True)} ({ci})"
            t = (e or {}).get("truth")
            truth[head] = value(t, measure, short=True) if finite(t) else "–"
            any_truth |= finite(t)
        rows.append(row)
        rows.append(truth)
    if not rows:
        return False
    if not any_truth:
        rows = [r for r in rows if r["outcome"] != "\u2003true value"]
    df = pd.DataFrame(rows)
    md_table(df, colalign=["left"] + ["right"] * (df.shape[1] - 1))
    return True
