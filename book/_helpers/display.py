"""Showing text, tables and figures on a page; banners and notes common to the pages."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from IPython.display import Image, Markdown, display

from evaluation.labels import OUTCOME_LABELS
from evaluation.results_document import split_method

from .formatting import (
    Notes,
    ci_label,
    estimate_note,
    finite,
    fmt_estimate,
    integer,
    interval,
    p_only,
    value,
)
from .labels import DESIGN_LABELS, MEASURE_SHORT, MODEL_LABELS, design_label, label
from .loading import (
    disclosure,
    figure_file,
    is_release,
    is_synthetic,
    manifest,
    results,
    results_dir,
    suppressed_label,
    table,
)


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

    ``outcome=True`` adds an outcome column (for a table mixing outcomes). Estimates that
    name their estimand (an emulated target trial) get an estimand column.
    """
    rows = list(rows)
    if not rows:
        missing("No estimate")
        return
    estimands = {"itt": "intention to treat", "per_protocol": "per protocol"}
    with_estimand = any(isinstance(r.get("estimand"), str) for r in rows)
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
                **(
                    {"estimand": estimands.get(r.get("estimand"), str(r.get("estimand") or "–"))}
                    if with_estimand
                    else {}
                ),
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
    n_left = (3 if outcome else 2) + with_estimand
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
