"""Property: whatever is wrong with the extract or wherever ``--out`` points, a run either
writes a complete results folder (exit 0) or says what is wrong in one line (exit 2), shows
no traceback and changes no file outside ``--out``.

Random mutations of a small valid extract (dropped, duplicated or renamed columns, random
cell values, truncated files, empty tables, missing files) are combined with random
placements of ``--out`` relative to ``--data``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

from evaluation.output_path import is_results_folder
from evaluation.run import main
from tests.test_misuse import tree_hash

TABLES = ("persons", "treatment_episodes", "deaths", "charges", "incarcerations")

CELLS = st.one_of(
    st.sampled_from(
        [
            "",
            "NA",
            "0",
            "-1",
            "1e308",
            "nan",
            "true",
            "HAT",
            "OST",
            "north",
            "2023-02-29",
            "2024-02-29",
            "9999-12-31",
            "0001-01-01",
            "1600-01-01",
            "2023-01-05 13:45",
            "P1",
            '"',
            ",",
        ]
    ),
    st.text(max_size=12),
)

MUTATION = st.one_of(
    st.tuples(
        st.just("cell"), st.sampled_from(TABLES), st.integers(0, 40), st.integers(0, 13), CELLS
    ),
    st.tuples(st.just("drop_column"), st.sampled_from(TABLES), st.integers(0, 13)),
    st.tuples(st.just("duplicate_column"), st.sampled_from(TABLES), st.integers(0, 13)),
    st.tuples(st.just("rename_column"), st.sampled_from(TABLES), st.integers(0, 13), CELLS),
    st.tuples(st.just("truncate"), st.sampled_from(TABLES), st.floats(0, 1)),
    st.tuples(st.just("empty_table"), st.sampled_from(TABLES)),
    st.tuples(st.just("delete"), st.sampled_from([*TABLES, "extract.yml", "truth.json"])),
    st.tuples(st.just("extract_yml"), CELLS),
    st.tuples(st.just("keep_rows"), st.sampled_from(TABLES), st.integers(0, 5)),
)

#: where --out points, relative to a sandbox holding project/extract and project/notes.txt
PLACEMENTS = [
    "new",  # sandbox/results
    "nested-new",  # sandbox/a/b/results
    "previous",  # a results folder written earlier
    "empty",  # an empty folder
    "extract",  # the extract itself
    "inside-extract",
    "project",  # the parent of the extract
    "file",  # project/notes.txt
    "below-file",
    "foreign-folder",  # a folder with a user's file
]


def _mutate(folder: Path, mutation: tuple) -> None:
    kind, *args = mutation
    if kind == "delete":
        (folder / (args[0] if "." in args[0] else f"{args[0]}.csv")).unlink(missing_ok=True)
        return
    if kind == "extract_yml":
        (folder / "extract.yml").write_text(f"extract_date: {args[0]}\n", encoding="utf-8")
        return
    path = folder / f"{args[0]}.csv"
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").split("\n")
    header = lines[0].split(",")
    body = [line for line in lines[1:] if line]
    if kind == "cell" and body:
        row = args[1] % len(body)
        cells = body[row].split(",")
        cells[args[2] % len(cells)] = args[3].replace("\n", " ")
        body[row] = ",".join(cells)
    elif kind in ("drop_column", "duplicate_column", "rename_column"):
        j = args[1] % len(header)
        rows = [header] + [line.split(",") for line in body]
        for cells in rows:
            if j >= len(cells):
                continue
            if kind == "drop_column":
                del cells[j]
            elif kind == "duplicate_column":
                cells.append(cells[j])
        if kind == "rename_column":
            rows[0][j] = args[2].replace("\n", " ")
        header, body = rows[0], [",".join(cells) for cells in rows[1:]]
    elif kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * args[1])])
        return
    elif kind == "empty_table":
        body = []
    elif kind == "keep_rows":
        body = body[: args[1]]
    path.write_text("\n".join([",".join(header), *body]) + "\n", encoding="utf-8")


def _out_path(sandbox: Path, placement: str, previous: Path) -> Path:
    project = sandbox / "project"
    if placement == "new":
        return sandbox / "results"
    if placement == "nested-new":
        return sandbox / "a" / "b" / "results"
    if placement == "previous":
        shutil.copytree(previous, sandbox / "results")
        return sandbox / "results"
    if placement == "empty":
        (sandbox / "results").mkdir()
        return sandbox / "results"
    if placement == "extract":
        return project / "extract"
    if placement == "inside-extract":
        return project / "extract" / "results"
    if placement == "project":
        return project
    if placement == "file":
        return project / "notes.txt"
    if placement == "below-file":
        return project / "notes.txt" / "results"
    folder = sandbox / "documents"
    folder.mkdir()
    (folder / "thesis.docx").write_bytes(b"mine")
    return folder


@seed(20221101)
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mutations=st.one_of(st.just([]), st.lists(MUTATION, min_size=1, max_size=3)),
    # the places a run may write are drawn as often as all others together
    placement=st.one_of(st.sampled_from(PLACEMENTS[:4]), st.sampled_from(PLACEMENTS[4:])),
)
def test_any_input_gives_results_or_one_line_and_touches_nothing_else(
    capsys, small_extract, previous_results, no_mi_config, mutations, placement
):
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp)
        project = sandbox / "project"
        shutil.copytree(small_extract, project / "extract")
        (project / "notes.txt").write_text("the user's own file\n")
        for mutation in mutations:
            _mutate(project / "extract", mutation)
        out = _out_path(sandbox, placement, previous_results)
        out_before = tree_hash(out) if out.is_dir() else None
        skip = None if out.is_file() else out  # a file named by --out must survive
        before = tree_hash(sandbox, skip=skip)
        capsys.readouterr()

        # without the multiple-imputation sensitivity analysis (m = 20 imputations a run)
        args = ["--no-book", "--quiet", "--config", str(no_mi_config)]
        status = main([*args, "--data", str(project / "extract"), "--out", str(out)])

        err = capsys.readouterr().err
        event(f"exit {status}")
        assert "Traceback" not in err
        lines = err.splitlines()
        assert status in (0, 2), err
        if status == 2:
            assert len(lines) == 1 and lines[0].startswith("error: "), err
            # the previous state of --out is kept: absent, or exactly as it was
            assert (tree_hash(out) if out.is_dir() else None) == out_before or out.is_file()
        else:
            assert all(line.startswith(("warning: ", "not estimable: ")) for line in lines), err
            assert is_results_folder(out)
            results = json.loads((out / "results.json").read_text())
            assert {e["outcome"] for e in results["estimates"] if e["primary"]}
        # nothing outside --out was created, changed or deleted (no hidden siblings either),
        # except the folders leading to a new --out when the run succeeded
        after = tree_hash(sandbox, skip=skip)
        if status == 0:
            parents = {
                p.relative_to(sandbox).as_posix() for p in out.parents if sandbox in p.parents
            }
            after = {k: v for k, v in after.items() if k not in parents or k in before}
        assert after == before
