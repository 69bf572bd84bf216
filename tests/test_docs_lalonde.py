"""``docs/lalonde.md`` runs as written, prints what the page shows, and its table is true."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("causaldata")

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "lalonde.md"
R = json.loads((ROOT / "tests" / "reference" / "r_values_lalonde.json").read_text())["full"]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.M | re.S)


@pytest.fixture(scope="module")
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def run(page) -> tuple[dict, str]:
    """The page's code executed in one namespace, and what it printed."""
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in _blocks(page, "python"):
            exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102
    return namespace, out.getvalue()


def test_code_is_short(page):
    (code,) = _blocks(page, "python")
    assert len([line for line in code.splitlines() if line.strip()]) < 20


def test_output_is_the_pages(page, run):
    (shown,) = _blocks(page, "text")
    assert run[1] == shown


def test_table_matches_the_library_and_r(page, run):
    ns = run[0]
    att, iptw = ns["att"], ns["iptw"]
    rows = [
        ("1:1 matching: ATT", att.estimate, R["matched"]["estimate"]),
        ("1:1 matching: SE", att.se, R["matched"]["se_vcovCL_HC0_cadjust"]),
        ("IPTW (ATT): ATT", iptw.estimate, R["iptw"]["estimate"]),
        ("IPTW (ATT): SE", iptw.se, R["iptw"]["se_vcovCL_HC0_cadjust"]),
    ]
    for label, ours, theirs in rows:
        assert f"| {label} | {ours:,.2f} | {theirs:,.2f} |" in page
    assert f"| 1:1 matching: SE, R's default | | {R['matched']['se_vcovCL']:,.2f} |" in page
    assert f"| IPTW (ATT): SE, HC1 | | {R['iptw']['se_HC1']:,.2f} |" in page
    n = ns["m"].n_treated_matched
    assert f"| matched pairs | {n}, the same pairs | {R['matching']['n_treated_matched']} |" in page
