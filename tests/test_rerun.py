"""Rerun from the book: the reproducibility appendix's commands recreate the results folder.

The test reads the commands and the configuration from the built report's text (the HTML of
the reproducibility page), follows them, and compares the new results folder with the one the
report was built from (:func:`compare_results_folders`): ``results.json``, every file of
``tables/`` and ``figures/`` byte for byte, and ``manifest.json`` equal except ``created``,
``command``, ``timings_seconds`` and ``elapsed_seconds``.

The reference is made here (a small synthetic study and the appendix built from it), or, when
``HAT_RERUN_REFERENCE`` names a results folder with its report, that one. CI sets it to the
main job's results folder, made in the environment installed from PyPI, and runs this test in a
second copy of the sources installed from the wheelhouse with no network: so a results folder
made today and one made from the wheelhouse install are compared, the install line shown in
the book is the one CI ran (the README's, checked here), and the report is built from the
rerun as well.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.report import BOOK_SOURCE, build_book
from evaluation.results_folder import LOCK_FILE, lock_record

REPO = Path(__file__).resolve().parents[1]
#: manifest.json entries that differ between two runs by design
RUN_SPECIFIC = ("created", "command", "timings_seconds", "elapsed_seconds")


def compare_results_folders(a: Path, b: Path) -> list[str]:
    """What differs between two results folders (empty when they are the same).

    ``results.json`` and every file under ``tables/`` and ``figures/`` are compared byte for
    byte (the same file names in both), ``manifest.json`` as JSON without
    :data:`RUN_SPECIFIC`. The report (``book/``) is not compared: it names its folder.
    """
    diffs = []
    names = {
        str(p.relative_to(folder))
        for folder in (a, b)
        for sub in ("tables", "figures")
        for p in (folder / sub).glob("*")
    }
    for name in ["results.json", *sorted(names)]:
        fa, fb = a / name, b / name
        if not (fa.is_file() and fb.is_file()):
            diffs.append(f"{name}: only in {a if fa.is_file() else b}")
        elif fa.read_bytes() != fb.read_bytes():
            diffs.append(f"{name}: bytes differ")
    ma, mb = (json.loads((f / "manifest.json").read_text(encoding="utf-8")) for f in (a, b))
    for key in sorted((set(ma) | set(mb)) - set(RUN_SPECIFIC)):
        if ma.get(key) != mb.get(key):
            diffs.append(f"manifest.json {key}: {ma.get(key)!r} != {mb.get(key)!r}")
    return diffs


def code_blocks(page: Path) -> list[tuple[str, str]]:
    """``(language, text)`` of every code block of a built HTML page, in order."""
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(
        r'<div class="highlight-(\w+) notranslate"><div class="highlight"><pre>(.*?)</pre>',
        text,
        flags=re.S,
    )
    return [(lang, html.unescape(re.sub(r"<[^>]+>", "", body))) for lang, body in blocks]


def book_commands(html_dir: Path) -> dict[str, str]:
    """The rerun commands and the configuration as the reproducibility page shows them."""
    blocks = code_blocks(html_dir / "reproducibility.html")
    bash = [body for lang, body in blocks if lang == "bash"]
    yaml_blocks = [body for lang, body in blocks if lang == "yaml"]
    assert len(bash) == 2 and len(yaml_blocks) == 1, blocks
    lines = [ln for ln in bash[0].splitlines() if ln.strip()]
    (check,) = [ln for ln in lines if "sha256sum" in ln]
    (install,) = [ln for ln in lines if " install " in ln]
    (run,) = [ln for ln in lines if "-m evaluation.run " in ln]
    (report,) = [ln for ln in lines if "-m evaluation.report " in ln]
    return {
        "check": check,
        "install": install,
        "offline": bash[1].strip(),
        "run": run,
        "report": report.split("#")[0].strip(),
        "config": yaml_blocks[0],
    }


def follow(command: str, *, cwd: Path, results_dir: Path) -> None:
    """Run one of the book's commands here: ``.venv/bin/python`` is this interpreter (the
    environment the install line made) and ``RESULTS_DIR`` a folder of the test's."""
    assert command.startswith(".venv/bin/python -m "), command
    args = command.replace("RESULTS_DIR", str(results_dir)).split()[1:]
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # these sources, whatever cwd is
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path, bool]:
    """A results folder, its built report's HTML, and whether it was given (CI)."""
    given = os.environ.get("HAT_RERUN_REFERENCE")
    if given:
        folder = Path(given).resolve()
        return folder, folder / "book" / "_build" / "html", True
    from evaluation.run import main

    tmp = tmp_path_factory.mktemp("reference")
    config = tmp / "small.yml"
    config.write_text(
        "scenario: ci\nseed: 5\nn_hat: 30\nn_ost: 200\nimputation: {sensitivity: false}\n",
        encoding="utf-8",
    )
    folder = tmp / "results"
    assert main(["--quiet", "--no-book", "--config", str(config), "--out", str(folder)]) == 0
    # the appendix alone, built as the book builds it (the whole book is tested elsewhere)
    source = tmp / "book"
    source.mkdir()
    for name in ("_config.yml", "reproducibility.md"):
        (source / name).write_bytes((BOOK_SOURCE / name).read_bytes())
    shutil.copytree(BOOK_SOURCE / "_helpers", source / "_helpers",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (source / "_toc.yml").write_text("format: jb-book\nroot: reproducibility\n", encoding="utf-8")
    return folder, build_book(folder, source=source, output_dir=tmp / "built"), False


def test_rerun_from_the_book_gives_the_same_results_folder(reference, tmp_path):
    folder, html_dir, given = reference
    book = book_commands(html_dir)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))

    # 1. the lock file: the book's check passes on this source tree's lock file
    assert manifest["lock"]["sha256"] in book["check"]
    subprocess.run(["bash", "-c", book["check"]], cwd=LOCK_FILE.parent, check=True)
    # 2. the install lines are the README's (which CI runs: online, and offline into the
    #    environment of this test when the reference is given)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert book["install"] in readme and book["offline"] in readme
    if given:
        assert lock_record()["environment_matches"], lock_record()["differences"]
    # 3. the configuration, saved as config.yml, and the run, from another folder
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yml").write_text(book["config"], encoding="utf-8")
    assert f"--seed {manifest['seed']} " in book["run"]
    rerun = tmp_path / "rerun"
    follow(book["run"], cwd=work, results_dir=rerun)

    assert compare_results_folders(folder, rerun) == []
    if given:  # and the report of the rerun builds here too
        follow(book["report"], cwd=work, results_dir=rerun)
        assert (rerun / "book" / "_build" / "html" / "reproducibility.html").is_file()


def test_comparison_sees_a_changed_byte_and_ignores_the_timestamp(reference, tmp_path):
    """The comparison above can fail: one changed byte, one missing figure, a changed seed."""
    import shutil

    folder = reference[0]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("book"))
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["created"] = "2000-01-01T00:00:00+00:00"
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert compare_results_folders(folder, copy) == []

    data = bytearray((copy / "results.json").read_bytes())
    data[-3] ^= 1
    (copy / "results.json").write_bytes(bytes(data))
    next(iter(sorted((copy / "figures").glob("*.png")))).unlink()
    manifest["seed"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    diffs = compare_results_folders(folder, copy)
    assert diffs[0] == "results.json: bytes differ"
    assert any(d.startswith("figures/") and "only in" in d for d in diffs)
    assert any(d.startswith("manifest.json seed") for d in diffs)
