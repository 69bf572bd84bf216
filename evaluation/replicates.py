"""One replicate of the simulation study.

A :class:`ReplicateTask` carries everything a worker needs (picklable, no file paths);
:func:`run_replicate` generates the extract, hands its tables to the validation that reading
an extract applies (in memory, or through Parquet files: the road real data take) and runs
the study's estimates; its record (estimates, or the error) is written
atomically by the process that started the study (:mod:`evaluation.replicate_store`).
Used by :mod:`evaluation.simulate`.

Two kinds of data: a designed extract (data contract version 1, :mod:`synthetic.generate`;
one setting per number of HAT patients) and a history extract (version 2,
:mod:`synthetic.history_generate`; one setting, the scenario's ``scale``: the number of
initiators is whatever the simulated population gives). A history replicate runs the
emulated target trial (:func:`evaluation.pipeline.run_study` dispatches it) and keeps the
``estimand`` of every estimate. The truth is computed once by the caller
(:func:`truth_values`) and travels in the task: workers never compute it.
"""

from __future__ import annotations

import hashlib
import json
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
from synthetic.history_spec import HistoryScenario
from synthetic.spec import Scenario

__all__ = [
    "EXTRACT_ROADS",
    "RECORD_VERSION",
    "ReplicateTask",
    "Setting",
    "SimulationError",
    "execute",
    "contract_of",
    "extract_road",
    "replicate_seed",
    "run_replicate",
    "setting_key",
    "study_fingerprint",
    "truth_values",
]

RECORD_VERSION = 1


class SimulationError(ValueError):
    """A simulation that cannot be run as asked (bad options, folder of another study)."""


# ----------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Setting:
    """One setting of the study.

    A designed extract (version 1): ``n_hat`` HAT patients and ``n_ost`` OST candidates, and
    in a power grid (``--effects``) the true effects replaced in the scenario, ``effects``:
    ``(name, value)`` pairs in the order of :data:`synthetic.spec_effects.EFFECT_PARAMETERS`
    (empty: the scenario's own effects). A history extract (version 2): the population's
    ``scale`` (relative to Norway), with ``n_hat`` and ``n_ost`` ``None`` (the simulated
    population decides them).
    """

    n_hat: int | None
    n_ost: int | None
    scale: float | None = None
    effects: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        """Folder name: ``n_hat-<N>`` (+ ``_<effect>-<value>`` each) or ``scale-<s>``."""
        if self.scale is not None:
            return f"scale-{self.scale:g}"
        return f"n_hat-{self.n_hat}" + "".join(f"_{k}-{float(v)!r}" for k, v in self.effects)

    @property
    def sort_key(self) -> tuple[float, ...]:
        """Order of settings: by number of HAT patients, then scale, then effect values."""
        return (self.n_hat or 0, self.scale or 0.0, *(v for _, v in self.effects))

    @property
    def effect_values(self) -> dict[str, float]:
        """``{name: value}`` of the replaced true effects (empty: the scenario's)."""
        return dict(self.effects)

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "n_hat", "n_ost"}``, and ``"scale"`` or ``"effects"`` if any."""
        out: dict[str, Any] = {"name": self.name, "n_hat": self.n_hat, "n_ost": self.n_ost}
        if self.scale is not None:
            out["scale"] = self.scale
        if self.effects:
            out["effects"] = self.effect_values
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Setting:
        """The setting of a record's ``setting`` entry."""
        effects = tuple((k, float(v)) for k, v in (data.get("effects") or {}).items())
        return cls(data["n_hat"], data["n_ost"], data.get("scale"), effects)


def setting_key(setting: dict[str, Any]) -> tuple[float, ...]:
    """:attr:`Setting.sort_key` of a record's ``setting`` entry."""
    return Setting.from_dict(setting).sort_key


@dataclass(frozen=True)
class ReplicateTask:
    """Everything a worker needs to run one replicate (picklable, no file paths).

    Attributes
    ----------
    spec : Scenario or HistoryScenario
        The scenario with the setting's ``n_hat`` (a history scenario: as it is).
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

    spec: Scenario | HistoryScenario
    config: StudyConfig
    truth: dict[str, Any]
    setting: Setting
    replicate: int
    seed: int
    fingerprint: str


def replicate_seed(seed: int, n_hat: int | None, replicate: int) -> np.random.SeedSequence:
    """The seed sequence of one replicate.

    ``SeedSequence(seed, spawn_key=(n_hat, replicate))``, the same sequence as
    ``SeedSequence(seed).spawn(n_hat + 1)[n_hat].spawn(replicate + 1)[replicate]``:
    independent streams for every setting and replicate, each fixed by its own
    coordinates only. A history setting (``n_hat`` ``None``) uses ``n_hat = 0``, which no
    designed setting has (their sizes are positive).

    A power grid's effects (``--effects``) are not in the seed: replicate ``i`` of
    ``n_hat`` patients has the same random numbers at every effect value (common random
    numbers: smoother power curves); studies without ``--effects`` are seeded as before.

    Parameters
    ----------
    seed : int
        The study's seed.
    n_hat : int or None
        The setting's number of HAT patients (``None``: a history setting).
    replicate : int
        Replicate number, from 0.

    Returns
    -------
    numpy.random.SeedSequence
    """
    return np.random.SeedSequence(seed, spawn_key=(n_hat or 0, replicate))


def contract_of(spec: Scenario | HistoryScenario) -> int:
    """The data contract version a scenario generates (2 for a history scenario)."""
    return 2 if isinstance(spec, HistoryScenario) else 1


def study_fingerprint(
    spec: Scenario | HistoryScenario,
    config: StudyConfig,
    seed: int,
    effects: Sequence[str] = (),
) -> str:
    """SHA-256 of what a replicate's results depend on, besides its setting and number.

    The scenario's parameters (but not its own ``seed`` and ``n_hat``, replaced here),
    the study's configuration (but not ``seed``, ``scenario``, ``n_hat``, ``n_ost``) and
    the simulation's seed; for a history scenario also ``contract: 2``. In a power grid the
    true effects it varies (``effects``, planner's names) are settings too: their scenario
    values are left out and their names put in, so a grid extended by more values resumes.
    Without ``effects`` the fingerprint is that of the studies before power grids existed.
    """
    scenario = spec.to_dict()
    for key in ("seed", "n_hat"):
        scenario.pop(key, None)
    if effects:
        from synthetic.spec_effects import EFFECT_PARAMETERS

        for name in effects:
            scenario["effects"].pop(EFFECT_PARAMETERS[name])
    study = config.to_dict()
    for key in ("seed", "scenario", "n_hat", "n_ost"):
        study.pop(key)
    # imputation.sensitivity null is off in a replicate, as false: the same study
    study["imputation"]["sensitivity"] = bool(config.imputation.for_scope("estimates").sensitivity)
    content: dict[str, Any] = {
        "record_version": RECORD_VERSION,
        "scenario": scenario,
        "config": study,
        "seed": seed,
    }
    if contract_of(spec) == 2:
        content["contract"] = 2
    if effects:
        content["effects"] = sorted(effects)
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def truth_values(spec: Scenario | HistoryScenario) -> tuple[dict, dict, dict]:
    """The truth of a scenario, computed once (it does not depend on sizes or seed).

    For a history scenario this is the slow step (minutes for the default scenario; cached
    per process by :mod:`synthetic.history_truth`): call it in the process that starts the
    study and pass ``truth`` in the tasks.

    Returns
    -------
    truth : dict
        Contents of ``truth.json`` for ``spec`` (its size-specific notes use ``spec.n_hat``).
    values : dict
        ``(outcome, measure) -> true value`` (natural scale); for a history scenario
        ``(estimand, outcome, measure) -> true value``.
    mcse : dict
        Monte Carlo SE of each truth, same keys (log scale for ratios).
    """
    if isinstance(spec, HistoryScenario):
        from synthetic.history_truth import compute_history_truth, history_truth_json

        res = compute_history_truth(spec)
        values = {(e, *k): v for e, d in res.values.items() for k, v in d.items()}
        mcse = {(e, *k): v for e, d in res.mc_se.items() for k, v in d.items()}
        return history_truth_json(spec), values, mcse
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


#: cohort counts kept in a record (those the study reports; a history study reports more)
_COHORT_KEYS = (
    "n_hat",
    "n_ost",
    "n_hat_matched",
    "n_ost_matched",
    "n_ost_rows_matched",
    "n_initiators",
    "n_excluded",
    "n_risk_sets",
)


#: how a replicate's generated tables become a validated extract (``run_replicate``'s road)
EXTRACT_ROADS = {
    "memory": "in memory: the generator's tables as the Arrow tables of the contract's Parquet "
    "files, validated and normalised by the second half of read_extract "
    "(analysis.data.extract.extract_from_arrow), no files written",
    "files": "parquet contract files in a temporary folder, read and validated (read_extract)",
}


def extract_road(contract: int, road: str = "memory") -> str:
    """The manifest's ``execution.extract_road``: which road the replicates' extracts took."""
    return f"{EXTRACT_ROADS[road]}; data contract version {contract}"


def _extract(task: ReplicateTask, rng: np.random.Generator, road: str, seconds: dict) -> Any:
    """Generate the replicate's data and make them a validated extract by ``road``
    (:data:`EXTRACT_ROADS`; both give the same extract)."""
    from analysis.data.extract import read_extract

    t = time.perf_counter()
    if isinstance(task.spec, HistoryScenario):
        from synthetic.history_generate import generate_history, history_in_memory, write_history

        tables, _ = generate_history(task.spec, rng, truth=False)
        write, in_memory = write_history, history_in_memory
    else:
        from synthetic.generate import generate, in_memory, write

        tables, _ = generate(task.spec, rng, truth=False)
    seconds["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    if road == "memory":
        extract = in_memory(tables, task.truth, spec=task.spec)
    else:
        with tempfile.TemporaryDirectory(prefix="hat-sim-") as tmp:
            folder = Path(tmp) / "extract"
            extract = read_extract(
                write(tables, task.truth, folder, spec=task.spec, format="parquet")
            )
    seconds["extract"] = time.perf_counter() - t
    return extract


def _config(task: ReplicateTask, study_ss: np.random.SeedSequence) -> StudyConfig:
    """The study's configuration for the replicate: its own seed (and size, version 1)."""
    update: dict[str, Any] = {"seed": int(study_ss.generate_state(1)[0])}
    if not isinstance(task.spec, HistoryScenario):
        update.update(scenario=task.spec.name, n_hat=task.setting.n_hat, n_ost=task.setting.n_ost)
    return task.config.model_copy(update=update)


def _estimate(e: dict[str, Any]) -> dict[str, Any]:
    out = {k: e.get(k) for k in _ESTIMATE_KEYS}
    if e.get("estimand") is not None:
        out = {"estimand": e["estimand"], **out}
    return out


def _design(results: dict[str, Any]) -> dict[str, Any] | None:
    """A history study's per-protocol design: censored comparators and the weights."""
    pp = results.get("design", {}).get("designs", {}).get("per_protocol")
    if not pp:
        return None
    w = pp.get("weights", {})
    return {
        "per_protocol": {
            "n_comparators_censored": pp.get("n_comparators_censored"),
            "weights": {k: w.get(k) for k in ("mean", "sd", "max", "n_truncated")},
        }
    }


def run_replicate(task: ReplicateTask, *, road: str = "memory") -> dict[str, Any]:
    """Generate one data set, make it a validated extract, run the study's estimates.

    The study runs with ``scope="estimates"`` (:func:`evaluation.pipeline.run_study`):
    every design and estimate, identical to the full study's, without the report's
    tables and diagnostics. Errors are caught and returned in the record (``status:
    "failed"``), so that a replicate where the study cannot be done is counted, not lost.
    BLAS runs on one thread.

    Parameters
    ----------
    task : ReplicateTask
    road : {"memory", "files"}
        How the generated tables become a validated extract (:data:`EXTRACT_ROADS`):
        in memory (default) or through Parquet files in a temporary folder; both give
        the same extract and record.

    Returns
    -------
    dict
        The replicate's record: ``record_version, study, setting, replicate, seed,
        status, error, cohort, estimates, warnings, seconds`` (a history replicate also
        ``design``: the per-protocol censoring and weights). ``seconds`` holds
        ``generate``, ``extract``, ``study``, ``total`` and the study's steps
        (``step:<name>``).
    """
    from threadpoolctl import threadpool_limits

    from evaluation.pipeline import run_study
    from evaluation.progress import Steps

    if road not in EXTRACT_ROADS:
        raise ValueError(f"road must be one of {sorted(EXTRACT_ROADS)}, got {road!r}")
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
    steps = Steps(quiet=True)
    t0 = time.perf_counter()
    try:
        with (
            threadpool_limits(limits=1),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            extract = _extract(task, np.random.default_rng(data_ss), road, seconds)
            t = time.perf_counter()
            study = run_study(extract, _config(task, study_ss), steps=steps, scope="estimates")
            seconds["study"] = time.perf_counter() - t
            messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        cohort = study.results["cohort"]
        record.update(
            status="ok",
            cohort={k: cohort[k] for k in _COHORT_KEYS if k in cohort},
            estimates=[_estimate(e) for e in study.results["estimates"]],
            warnings=messages[:20],
        )
        design = _design(study.results)
        if design is not None:
            record["design"] = design
    except Exception as exc:  # a replicate's failure is a result: record it
        record["error"] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(limit=-8),
        }
    seconds["total"] = time.perf_counter() - t0
    seconds.update({f"step:{k}": v for k, v in steps.timings.items()})
    record["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
    return record


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
