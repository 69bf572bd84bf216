"""Build the report (a Jupyter Book) from a results folder.

``python -m evaluation.report RESULTS_DIR [--pdf] [--out DIR]`` builds the book
in ``book/`` of the repository from an existing results folder. The pages read
the folder named by the environment variable ``HAT_RESULTS`` (set here to the
absolute path) and fit no models. The HTML is written to
``<RESULTS_DIR>/book/_build/html/`` (open ``index.html``); with ``--pdf`` the PDF
is ``<RESULTS_DIR>/book/_build/latex/hat-evaluation.pdf`` (needs LaTeX, see
``shared/toolchain.md``). The build log is ``<RESULTS_DIR>/book/build.log``.

A failing cell, a Sphinx warning or a broken reference fails the build
(``-W -n --keep-going``; ``raise_on_error`` in ``book/_config.yml``), and
:func:`build_book` raises :class:`BookBuildError` with the end of the log.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: the book's sources (pages, _config.yml, _toc.yml)
BOOK_SOURCE = Path(__file__).resolve().parents[1] / "book"
PDF_NAME = "hat-evaluation.pdf"
#: the PDF's root page, empty: Sphinx's LaTeX drops the root page's title (the book's title
#: stands in its place) and makes its sections chapters, so the PDF gets this page as its root
#: and the book's root page (the summary) as its first chapter, with its title
PDF_COVER = "cover"
#: the tables of contents: version 1's report, and the emulated target trial's (version 2)
TOC = "_toc.yml"
TRIAL_TOC = "_toc_trial.yml"
_JB = "from jupyter_book.cli.main import main; main()"


class BookBuildError(RuntimeError):
    """The report could not be built (missing results, failing page, Sphinx warning)."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _diagnose(output: str, n_tail: int = 30) -> str:
    """The useful part of a failed build's output: the failing cell and the warnings."""
    text = _ANSI.sub("", output)
    parts = []
    page = re.search(r"ExecutionError: (\S+)", text)
    cell = re.search(
        r"CellExecutionError: (.*?)(?:\n\s*\nThe above exception|\Z)", text, flags=re.S
    )
    if cell:
        where = f" in {page.group(1)}" if page else ""
        parts.append(f"a page raised an error{where}:\n{cell.group(1).strip()}")
    warnings = [ln for ln in text.splitlines() if re.search(r"(WARNING|ERROR|CRITICAL):", ln)]
    warnings = [ln for ln in warnings if "[IPKernelApp]" not in ln]
    if warnings:
        parts.append("warnings (-W makes them errors):\n" + "\n".join(warnings[:20]))
    if not parts:
        parts.append("end of the log:\n" + "\n".join(text.strip().splitlines()[-n_tail:]))
    return "\n".join(parts)


def _run(cmd: list[str], env: dict[str, str], log: Path, what: str) -> None:
    proc = subprocess.run(
        cmd, env=env, cwd=BOOK_SOURCE.parent, capture_output=True, text=True, check=False
    )
    output = proc.stdout + ("\n" + proc.stderr if proc.stderr else "")
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n{output}\n[exit status {proc.returncode}]\n")
    if proc.returncode != 0:
        raise BookBuildError(
            f"the {what} build of the report failed (exit status {proc.returncode}); "
            f"full log: {log}\n{_diagnose(output)}"
        )


def toc_for(results_dir: str | Path) -> str:
    """The table of contents for a results folder: :data:`TRIAL_TOC` for a version-2 extract.

    A version-2 (history) extract is analysed as an emulated target trial
    (``cohort.extract_version`` 2 in ``results.json``); its report leaves out the pages
    that hold only for version 1's design and has the chapter on the emulated trial.
    """
    import json

    try:
        results = json.loads((Path(results_dir) / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return TOC
    version = (results.get("cohort") or {}).get("extract_version")
    return TRIAL_TOC if version == 2 else TOC


def pdf_toc(book: Path, out: Path, toc_name: str = TOC) -> Path | None:
    """Write the PDF's table of contents: the book's, with :data:`PDF_COVER` as its root.

    Returns the file written (``_toc_pdf.yml`` in the build folder ``out``), or ``None`` when
    the book has no cover page (its root page then loses its title in the PDF).
    """
    if not (book / f"{PDF_COVER}.md").is_file():
        return None
    import yaml

    toc = yaml.safe_load((book / toc_name).read_text(encoding="utf-8"))
    toc["chapters"] = [{"file": toc["root"]}, *toc.get("chapters", [])]
    toc["root"] = PDF_COVER
    path = out / "_toc_pdf.yml"
    path.write_text(yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")
    return path


def build_jupyter_book(
    book: Path, out: Path, *, env: dict[str, str], pdf: bool = False, toc: str = TOC
) -> Path:
    """Build a Jupyter Book's HTML (and optionally PDF) offline, strictly.

    Parameters
    ----------
    book : pathlib.Path
        The book's sources (with ``_config.yml``).
    out : pathlib.Path
        Build folder; a previous ``_build`` there is replaced; the log is ``build.log``.
    env : dict
        Extra environment variables for the pages (e.g. the folder they read).
    pdf : bool
        Also build a PDF with ``pdflatex`` (needs latexmk and TeX Live).
    toc : str
        The table of contents, a file of ``book`` (default ``_toc.yml``).

    Returns
    -------
    pathlib.Path
        The HTML folder.

    Raises
    ------
    FileNotFoundError
        No ``_config.yml`` in ``book``.
    FileExistsError
        ``out/_build`` exists but was not made here (no ``build.log`` beside it).
    BookBuildError
        A page raised, a Sphinx warning, or a missing tool for the PDF.
    """
    if not (book / "_config.yml").is_file():
        raise FileNotFoundError(f"no book sources (_config.yml) in {book}")
    build = out / "_build"
    if build.exists() or build.is_symlink():
        # only a build this function made is replaced (it leaves build.log beside it)
        if build.is_symlink() or not build.is_dir() or not (out / "build.log").is_file():
            raise FileExistsError(
                f"{build} exists but is not a report build made here (no build.log beside "
                "it); it is left alone: choose another output folder"
            )
        shutil.rmtree(build)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "build.log"
    log.write_text("", encoding="utf-8")

    env = {**os.environ, **env, "PYTHONDONTWRITEBYTECODE": "1"}  # nothing written into sources
    # a non-interactive backend exported around the build makes figures vanish from pages
    env.pop("MPLBACKEND", None)
    if not (book / toc).is_file():
        raise FileNotFoundError(f"no table of contents {toc} in {book}")
    common = [str(book), "--path-output", str(out), "-W", "-n", "--keep-going"]
    html_toc = ["--toc", str(book / toc)] if toc != TOC else []
    t0 = time.perf_counter()
    _run(
        [sys.executable, "-c", _JB, "build", *common, *html_toc, "--builder", "html"],
        env,
        log,
        "HTML",
    )
    html = build / "html"
    if not (html / "index.html").is_file():
        raise BookBuildError(f"the HTML build finished but {html / 'index.html'} is missing")
    if pdf:
        if shutil.which("latexmk") is None or shutil.which("pdflatex") is None:
            raise BookBuildError(
                "the PDF needs latexmk and pdflatex: apt-get install --no-install-recommends "
                "latexmk texlive-latex-recommended texlive-latex-extra "
                "texlive-fonts-recommended texlive-xetex tex-gyre fonts-freefont-otf"
            )
        pdf_toc_file = pdf_toc(book, build, toc)
        toc_option = ["--toc", str(pdf_toc_file)] if pdf_toc_file else html_toc
        _run(
            [sys.executable, "-c", _JB, "build", *common, *toc_option, "--builder", "pdflatex"],
            env,
            log,
            "PDF",
        )
        if not (build / "latex" / PDF_NAME).is_file():
            raise BookBuildError(
                f"the PDF build finished but {build / 'latex' / PDF_NAME} is missing"
            )
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"built in {time.perf_counter() - t0:.1f} s\n")
    return html


def book_reads_release(results_dir: str | Path, read: str = "auto") -> bool:
    """Whether the report is built from ``release/`` (the disclosure-controlled outputs).

    ``read`` is ``release``, ``full`` or ``auto``: real data read ``release/`` (the full
    folder if it has none), synthetic data the full results folder.
    """
    import json

    folder = Path(results_dir)
    if read not in ("auto", "release", "full"):
        raise ValueError(f"read must be auto, release or full, not {read!r}")
    if read == "full":
        return False
    has_release = (folder / "release" / "results.json").is_file()
    if read == "release":
        if not has_release:
            raise FileNotFoundError(
                f"{folder} has no release/ to build the report from; make it with "
                f"`python -m evaluation.release {folder}`"
            )
        return True
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    synthetic = (manifest.get("source") or {}).get("kind") == "synthetic"
    # a folder without release/ (written before disclosure control) is reported in full,
    # and its first page says that it was not checked
    return has_release and not synthetic


def build_book(
    results_dir: str | Path,
    *,
    output_dir: str | Path | None = None,
    pdf: bool = False,
    source: str | Path | None = None,
    shown_as: str | Path | None = None,
    read: str = "auto",
) -> Path:
    """Build the report's HTML (and optionally PDF) from a results folder.

    Parameters
    ----------
    results_dir : path-like
        A results folder written by ``python -m evaluation.run`` (must hold
        ``results.json``).
    output_dir : path-like, optional
        Where the build goes; default ``<results_dir>/book``. The HTML is in
        ``<output_dir>/_build/html``; a previous build there is replaced.
    pdf : bool
        Also build a PDF (``<output_dir>/_build/latex/hat-evaluation.pdf``) with
        ``pdflatex``; needs ``latexmk`` and TeX Live.
    source : path-like, optional
        The book's sources; default ``book/`` of this repository.
    shown_as : path-like, optional
        The results folder's path as the report names it, when the book is built
        in a staging folder before it is moved into place; default ``results_dir``.
    read : {"auto", "release", "full"}
        What the pages read: ``release/`` (the outputs that passed disclosure control,
        default for real data) or the full results folder (default for synthetic
        data); the title page says which.

    Notes
    -----
    The table of contents follows the extract's version (:func:`toc_for`): a version-2
    (history) extract gets the report of the emulated target trial (``_toc_trial.yml``),
    a version-1 extract the report of ``_toc.yml``.

    Returns
    -------
    pathlib.Path
        The HTML folder (open its ``index.html``).

    Raises
    ------
    FileNotFoundError
        No ``results.json`` in ``results_dir``, or no book sources.
    BookBuildError
        The build failed (a page raised, a warning, a missing tool for the PDF).
    """
    results_dir = Path(results_dir).resolve()
    if not (results_dir / "results.json").is_file():
        raise FileNotFoundError(
            f"{results_dir} is not a results folder (no results.json); "
            "write one with `python -m evaluation.run --out DIR`"
        )
    book = Path(source).resolve() if source is not None else BOOK_SOURCE
    out = Path(output_dir).resolve() if output_dir is not None else results_dir / "book"
    shown = Path(shown_as or results_dir)
    if book_reads_release(results_dir, read):
        results_dir, shown = results_dir / "release", shown / "release"
    # the pages import this repository's package, whatever is installed
    path = os.pathsep.join(p for p in (str(BOOK_SOURCE.parent), os.environ.get("PYTHONPATH")) if p)
    env = {"HAT_RESULTS": str(results_dir), "HAT_RESULTS_SHOWN": str(shown), "PYTHONPATH": path}
    return build_jupyter_book(book, out, env=env, pdf=pdf, toc=toc_for(results_dir))


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.report RESULTS_DIR [--pdf] [--out DIR]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.report",
        description="Build the report (Jupyter Book) from an existing results folder. "
        "HTML goes to RESULTS_DIR/book/_build/html/index.html.",
    )
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="results folder")
    parser.add_argument("--pdf", action="store_true", help="also build a PDF (needs LaTeX)")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="build folder (default RESULTS_DIR/book)"
    )
    parser.add_argument(
        "--read",
        choices=("auto", "release", "full"),
        default="auto",
        help="build from RESULTS_DIR/release (the disclosure-controlled outputs) or the full "
        "folder; auto: release for real data, full for synthetic data",
    )
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        html = build_book(args.results_dir, output_dir=args.out, pdf=args.pdf, read=args.read)
    except (FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BookBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"report built in {time.perf_counter() - t0:.0f} s: {html / 'index.html'}")
    if args.pdf:
        print(f"PDF: {html.parent / 'latex' / PDF_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
