"""The locked environment: the lock file, the README's commands and CI agree.

``requirements.lock`` pins every requirement of ``pyproject.toml`` (dependencies, the ``test``
extra, the ``build`` group); the README documents the command that writes it (the same as in
its header), the commands that install from it (online and from a wheelhouse) and the one that
builds the wheelhouse, and ``.ci/run`` runs exactly those. ``manifest.json`` records the lock
file's hash and whether the running environment is the locked one (:func:`lock_record`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from evaluation.results_folder import LOCK_FILE, lock_record, locked_versions

REPO = Path(__file__).resolve().parents[1]


def readme_blocks() -> list[str]:
    """The README's bash code blocks, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_lock_pins_every_requirement_of_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    pins = locked_versions(LOCK_FILE.read_text(encoding="utf-8"))
    wanted = [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["test"],
        *project["dependency-groups"]["build"],
        *project["build-system"]["requires"],
    ]
    for line in wanted:
        req = Requirement(line)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not in requirements.lock: update the lock"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])
    # every pin carries the hashes pip checks
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK_FILE.read_text(encoding="utf-8"))
    pinned = [b for b in blocks if "==" in b.split("\n")[0]]
    assert len(pinned) == len(pins) > 100
    assert all("--hash=sha256:" in b for b in pinned)


def test_lock_header_is_the_documented_update_command():
    header = LOCK_FILE.read_text(encoding="utf-8").splitlines()[1]
    command = header.removeprefix("#").strip()
    assert command.startswith("uv pip compile pyproject.toml ")
    assert any(block.endswith("&& " + command) for block in readme_blocks()), command


def test_ci_runs_the_readme_commands_verbatim():
    """The test command, the wheelhouse build and the offline install, as documented."""
    blocks = readme_blocks()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    main_job, tests = blocks[0], blocks[1]
    install = ".venv/bin/pip install -q -r requirements.lock && "
    assert install in main_job and main_job.endswith("-m evaluation.run")
    assert install in tests and tests.endswith("-m pytest -q -n 2")
    assert tests in ci.splitlines()
    (wheelhouse,) = [b for b in blocks if b.startswith("pip download ")]
    (offline,) = [b for b in blocks if "--no-index --find-links wheelhouse" in b]
    assert wheelhouse in ci.splitlines()
    assert f"bash -c '{offline}'" in ci


def test_lock_record_says_whether_the_environment_is_the_locked_one(tmp_path):
    from importlib import metadata

    lock = tmp_path / "requirements.lock"
    numpy, pandas = metadata.version("numpy"), metadata.version("pandas")
    lock.write_text(
        f"# a lock\nnumpy=={numpy} \\\n    --hash=sha256:00\n    # via x\nPandas=={pandas}\n"
    )
    record = lock_record(lock)
    assert record["environment_matches"] is True and record["differences"] == {}
    assert record["packages"] == 2 and len(record["sha256"]) == 64

    lock.write_text(f"numpy==0.0.1\npandas=={pandas}\nno-such-package==1.0\n")
    record = lock_record(lock)
    assert record["environment_matches"] is False
    assert record["differences"] == {
        "numpy": {"locked": "0.0.1", "installed": numpy},
        "no-such-package": {"locked": "1.0", "installed": "not installed"},
    }
    missing = lock_record(tmp_path / "nothing.lock")
    assert missing["sha256"] is None and missing["environment_matches"] is None
