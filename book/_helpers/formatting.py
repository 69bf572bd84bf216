"""Formatting numbers, estimates, intervals, p-values and notes as the report writes them."""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from analysis.data.measures import measure as measure_info

from .loading import Suppressed, config


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
            from .display import md  # display builds on this module

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
