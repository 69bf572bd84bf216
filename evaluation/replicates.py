"""One replicate of the simulation study and its record on disk.

A :class:`ReplicateTask` carries everything a worker needs (picklable, no file paths);
:func:`run_replicate` generates the extract, writes and reads it back as contract files (the
road real data take) and runs the study; its record (estimates, or the error) is written
atomically by the process that started the study (:func:`write_json_atomic`), and
:func:`load_records` finds the completed replicates of an interrupted study. Used by
:mod:`evaluation.simulate`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.config import StudyConfig
from synthetic.spec import Scenario

__all__ = [
    "RECORD_VERSION",
    "ReplicateTask",
    "Setting",
    "SimulationError",
    "execute",
    "load_records",
    "replicate_path",
    "replicate_seed",
    "run_replicate",
    "study_fingerprint",
    "truth_values",
    "write_json_atomic",
    "write_text_atomic",
]

RECORD_VERSION = 1


class SimulationError(ValueError):
    """A simulation that cannot be run as asked (bad options, folder of another study)."""


# ----------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Setting:
    """One sample size of the study: ``n_hat`` HAT patients and ``n_ost`` OST candidates."""

    n_hat: int
    n_ost: int

    @property
    def name(self) -> str:
        """Folder name of the setting's replicates, ``n_hat-<N>``."""
        return f"n_hat-{self.n_hat}"

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "n_hat", "n_ost"}``."""
        return {"name": self.name, "n_hat": self.n_hat, "n_ost": self.n_ost}


@dataclass(frozen=True)
class ReplicateTask:
    """Everything a worker needs to run one replicate (picklable, no file paths).

    Attributes
    ----------
    spec : Scenario
        The scenario with the setting's ``n_hat``.
    config : StudyConfig
        The study's configuration (its seed is replaced per replicate).
    truth : dict
        Contents of ``truth.json`` for the setting, computed once by the caller.
    setting : Setting
    replicate : int
        Replicate number, from 0.
    seed : int
        The study's seed (entropy of the replicate's :class:`numpy.random.SeedSequence`).
    fingerprint : str
        Identifies the study (scenario, configuration, seed) in the record.
    """

    spec: Scenario
    config: StudyConfig
    truth: dict[str, Any]
    setting: Setting
    replicate: int
    seed: int
    fingerprint: str


def replicate_seed(seed: int, n_hat: int, replicate: int) -> np.random.SeedSequence:
    """The seed sequence of one replicate.

    ``SeedSequence(seed, spawn_key=(n_hat, replicate))``, the same sequence as
    ``SeedSequence(seed).spawn(n_hat + 1)[n_hat].spawn(replicate + 1)[replicate]``:
    independent streams for every setting and replicate, each fixed by its own
    coordinates only.

    Parameters
    ----------
    seed : int
        The study's seed.
    n_hat : int
        The setting's number of HAT patients.
    replicate : int
        Replicate number, from 0.

    Returns
    -------
    numpy.random.SeedSequence
    """
    return np.random.SeedSequence(seed, spawn_key=(n_hat, replicate))


def study_fingerprint(spec: Scenario, config: StudyConfig, seed: int) -> str:
    """SHA-256 of what a replicate's results depend on, besides its setting and number.

    The scenario's parameters (but not its own ``seed`` and ``n_hat``, replaced here),
    the study's configuration (but not ``seed``, ``scenario``, ``n_hat``, ``n_ost``) and
    the simulation's seed.
    """
    scenario = spec.to_dict()
    for key in ("seed", "n_hat"):
        scenario.pop(key)
    study = config.to_dict()
    for key in ("seed", "scenario", "n_hat", "n_ost"):
        study.pop(key)
    text = json.dumps(
        {"record_version": RECORD_VERSION, "scenario": scenario, "config": study, "seed": seed},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def truth_values(spec: Scenario) -> tuple[dict, dict, dict]:
    """The truth of a scenario, computed once (it does not depend on sizes or seed).

    Returns
    -------
    truth : dict
        Contents of ``truth.json`` for ``spec`` (its size-specific notes use ``spec.n_hat``).
    values : dict
        ``(outcome, measure) -> true value`` (natural scale).
    mcse : dict
        ``(outcome, measure) -> Monte Carlo SE of the truth`` (log scale for ratios).
    """
    from synthetic.truth import compute_truth, truth_json

    result = compute_truth(spec)
    return truth_json(spec), dict(result.values), dict(result.mc_se)


# ----------------------------------------------------------------------------- one replicate
_ESTIMATE_KEYS = (
    "outcome",
    "measure",
    "method",
    "primary",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "se",
    "truth",
    "n_treated",
    "n_control",
    "n_events",
)


def run_replicate(task: ReplicateTask) -> dict[str, Any]:
    """Generate one data set, write and read it as an extract, run the whole study.

    Errors are caught and returned in the record (``status: "failed"``), so that a
    replicate where the study cannot be done is counted, not lost. BLAS runs on one
    thread.

    Parameters
    ----------
    task : ReplicateTask

    Returns
    -------
    dict
        The replicate's record: ``record_version, study, setting, replicate, seed,
        status, error, cohort, estimates, warnings, seconds``.
    """
    from threadpoolctl import threadpool_limits

    from analysis.data.extract import read_extract
    from evaluation.pipeline import run_study
    from synthetic.generate import generate, write

    ss = replicate_seed(task.seed, task.setting.n_hat, task.replicate)
    data_ss, study_ss = ss.spawn(2)
    record: dict[str, Any] = {
        "record_version": RECORD_VERSION,
        "study": task.fingerprint,
        "setting": task.setting.to_dict(),
        "replicate": task.replicate,
        "seed": {"entropy": task.seed, "spawn_key": list(ss.spawn_key)},
        "status": "failed",
        "error": None,
        "cohort": None,
        "estimates": [],
        "warnings": [],
    }
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        with (
            threadpool_limits(limits=1),
            warnings.catch_warnings(record=True) as caught,
            tempfile.TemporaryDirectory(prefix="hat-sim-") as tmp,
        ):
            warnings.simplefilter("always")
            t = time.perf_counter()
            tables, _ = generate(task.spec, np.random.default_rng(data_ss), truth=False)
            seconds["generate"] = time.perf_counter() - t
            t = time.perf_counter()
            folder = write(
                tables, task.truth, Path(tmp) / "extract", spec=task.spec, format="parquet"
            )
            extract = read_extract(folder)
            seconds["extract"] = time.perf_counter() - t
            t = time.perf_counter()
            config = task.config.model_copy(
                update={
                    "seed": int(study_ss.generate_state(1)[0]),
                    "scenario": task.spec.name,
                    "n_hat": task.setting.n_hat,
                    "n_ost": task.setting.n_ost,
                }
            )
            study = run_study(extract, config)
            seconds["study"] = time.perf_counter() - t
            messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        cohort = study.results["cohort"]
        record.update(
            status="ok",
            cohort={k: cohort[k] for k in ("n_hat", "n_ost", "n_hat_matched", "n_ost_matched")},
            estimates=[{k: e.get(k) for k in _ESTIMATE_KEYS} for e in study.results["estimates"]],
            warnings=messages[:20],
        )
    except Exception as exc:  # a replicate's failure is a result: record it
        record["error"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(limit=-8),
        }
    seconds["total"] = time.perf_counter() - t0
    record["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
    return record


# ----------------------------------------------------------------------------- files
def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary sibling and an atomic rename."""
    from evaluation.results_folder import dumps

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def replicate_path(out: Path, setting: Setting, replicate: int) -> Path:
    """``out/replicates/n_hat-<N>/<i>.json`` (``i`` zero-padded to 4 digits)."""
    return out / "replicates" / setting.name / f"{replicate:04d}.json"


def load_records(
    out: Path, settings: Sequence[Setting], replicates: int, fingerprint: str
) -> dict[tuple[str, int], dict[str, Any]]:
    """Completed replicates already in ``out`` for these settings (``i < replicates``).

    Left-over temporary files of an interrupted run are removed; unreadable records are
    ignored (they will be run again).

    Raises
    ------
    SimulationError
        A record belongs to another study (different scenario, configuration or seed).
    """
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for setting in settings:
        folder = out / "replicates" / setting.name
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for i in range(replicates):
            path = replicate_path(out, setting, i)
            if not path.is_file():
                continue
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if rec.get("study") != fingerprint:
                raise SimulationError(
                    f"{path} belongs to another simulation study (different scenario, "
                    "configuration or seed); use another --out folder"
                )
            done[(setting.name, i)] = rec
    return done


# ----------------------------------------------------------------------------- execution
def execute(
    tasks: Sequence[ReplicateTask], *, jobs: int, scheduler: str | None
) -> Iterator[dict[str, Any]]:
    """Run tasks, yielding records as they complete (in any order)."""
    if not tasks:
        return
    if scheduler is not None:
        from distributed import Client, as_completed

        with Client(scheduler) as client:
            futures = client.map(run_replicate, list(tasks), pure=False)
            for future in as_completed(futures):
                yield future.result()
                future.release()
        return
    if jobs == 1:
        for task in tasks:
            yield run_replicate(task)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered", batch_size=1)
    yield from parallel(delayed(run_replicate)(task) for task in tasks)
