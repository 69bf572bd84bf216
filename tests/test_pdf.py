"""The report as a PDF: the same book, with its title, every chapter and every figure.

The PDF is built (XeLaTeX, offline) from a small study's results folder and read back with
poppler-utils (``pdfinfo``, ``pdftotext``, ``pdfimages``). It needs TeX from Debian (README,
*The report as a PDF*): without it the test is skipped, unless ``HAT_REQUIRE_PDF=1`` (CI),
which makes a missing tool a failure. The HTML and the PDF build take about a minute together.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from evaluation.report import BOOK_SOURCE, PDF_NAME, build_book

TOOLS = ("latexmk", "xelatex", "pdfinfo", "pdftotext", "pdfimages")
PRIMARY = ("mortality", "retention", "crime")


def _require_tools() -> None:
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        reason = f"the PDF needs {', '.join(absent)} (README: The report as a PDF)"
        if os.environ.get("HAT_REQUIRE_PDF") == "1":
            pytest.fail(reason + "; HAT_REQUIRE_PDF=1")
        pytest.skip(reason)


def _poppler(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A small study's results folder, its report's HTML folder and its PDF."""
    _require_tools()
    from evaluation.run import main

    tmp = tmp_path_factory.mktemp("pdf")
    config = tmp / "small.yml"
    config.write_text(
        "scenario: ci\nseed: 5\nn_hat: 30\nn_ost: 200\nimputation: {sensitivity: false}\n",
        encoding="utf-8",
    )
    results = tmp / "results"
    assert main(["--quiet", "--no-book", "--config", str(config), "--out", str(results)]) == 0
    html = build_book(results, pdf=True)
    return results, html, html.parent / "latex" / PDF_NAME


def _page_titles() -> list[str]:
    """The title (first heading) of every page of the book, in the order of its contents."""
    toc = yaml.safe_load((BOOK_SOURCE / "_toc.yml").read_text(encoding="utf-8"))
    pages = [toc["root"], *(c["file"] for c in toc["chapters"])]
    titles = []
    for page in pages:
        text = (BOOK_SOURCE / f"{page}.md").read_text(encoding="utf-8")
        titles.append(re.search(r"^# (.+)$", text, flags=re.M).group(1).strip())
    return titles


def test_pdf_has_the_title_every_chapter_figure_and_primary_estimate(built, monkeypatch):
    results, html, pdf = built
    pages = int(re.search(r"^Pages:\s+(\d+)", _poppler("pdfinfo", str(pdf)), flags=re.M)[1])
    # title page and contents, nine chapters each opening on a right-hand page: 33 pages for
    # the CI study; far more would mean a table or figure out of control
    assert 20 <= pages <= 60, pages
    text = _poppler("pdftotext", str(pdf), "-")
    flat = " ".join(text.split())

    book_title = yaml.safe_load((BOOK_SOURCE / "_config.yml").read_text())["title"]
    assert book_title in " ".join(_poppler("pdftotext", "-l", "1", str(pdf), "-").split())
    # every page of the book is a numbered chapter with its own title, in order; the first is
    # the summary (its title used to be lost: LaTeX drops the root page's title)
    titles = _page_titles()
    assert titles[0] == "Summary"
    contents = [(int(m[1]), m[2].strip()) for m in re.finditer(r"^(\d+) (\S.*)$", text, re.M)]
    for number, title in enumerate(titles, start=1):
        assert (number, title) in contents, (number, title)
    # every figure of the HTML pages is in the PDF
    n_html = sum(p.read_text(encoding="utf-8").count("<img") for p in html.glob("*.html"))
    images = [ln for ln in _poppler("pdfimages", "-list", str(pdf)).splitlines()[2:]]
    n_pdf = sum(1 for ln in images if ln.split()[2] == "image")
    assert n_pdf == n_html >= 7, (n_pdf, n_html)

    # the primary estimates, formatted as the book formats them
    monkeypatch.setenv("HAT_RESULTS", str(results))
    from tests.test_book import load_helpers

    helpers = load_helpers(results, monkeypatch)
    for outcome in PRIMARY:
        shown = helpers.fmt_estimate(helpers.primary_estimate(outcome))
        assert re.search(r"\d\.\d\d \(", shown), shown
        assert " ".join(shown.split()) in flat, (outcome, shown)  # U+00A0 as a space
