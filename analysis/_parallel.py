"""Independent tasks shared between this process and worker processes (private).

:func:`map_tasks` runs a function on each item and returns the results in the items'
order. With ``n_jobs`` > 1 this process works through the items from the front while
``n_jobs - 1`` worker processes (a loky executor of this call) take items from the back as they
become free. This process has its modules imported already, so the work starts at once
while a worker starts and imports the package (about 2 CPU-seconds), and one such start is
saved against ``n_jobs`` workers with an idle parent; on two cores this is what a
parallel run of a few dozen one-second tasks (the imputations) costs beyond the tasks.

Workers start with one BLAS/OpenMP thread (``OMP_NUM_THREADS=1`` etc.), so parallel tasks
do not compete for the cores with BLAS threads; the tasks should also hold BLAS to one
thread themselves (:func:`threadpoolctl.threadpool_limits`), so that their results do not
depend on the process that ran them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any

__all__ = ["map_tasks"]

#: the environment of the worker processes: one BLAS/OpenMP thread
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def map_tasks(fn: Callable[[Any], Any], items: Iterable[Any], *, n_jobs: int = 1) -> list[Any]:
    """``[fn(x) for x in items]``, in this process and ``n_jobs - 1`` worker processes.

    Parameters
    ----------
    fn : callable
        A picklable function of one item (a module-level function or a
        :func:`functools.partial` of one).
    items : iterable
        Picklable items.
    n_jobs : int
        Processes working at once, this one included (1: all in this process).

    Returns
    -------
    list
        ``fn(item)`` in the order of ``items``, whichever process ran it.

    Raises
    ------
    Exception
        The first exception of a task (the remaining items are not started).
    """
    items = list(items)
    workers = min(n_jobs, len(items)) - 1
    if workers < 1:
        return [fn(x) for x in items]
    from joblib.externals.loky import ProcessPoolExecutor

    # a private executor, shut down on return: loky's reusable executor is a process-wide
    # singleton that joblib's Parallel also takes over, and one created here lacks the
    # temporary-folder manager joblib adds to its own (joblib then fails on it)
    with ProcessPoolExecutor(max_workers=workers, env=ONE_THREAD) as executor:
        return _run(fn, items, executor, workers)


def _run(fn: Callable[[Any], Any], items: list[Any], executor: Any, workers: int) -> list[Any]:
    """Run ``items`` in this process (from the front) and in ``executor`` (from the back)."""
    results: list[Any] = [None] * len(items)
    todo = deque(range(len(items)))
    errors: list[BaseException] = []
    lock = threading.Lock()

    def take(back: bool) -> int | None:
        with lock:
            if errors or not todo:
                return None
            return todo.pop() if back else todo.popleft()

    def dispatch() -> None:
        # one task in flight per worker: a worker is never left with queued items that this
        # process could have taken
        running: dict[Any, int] = {}
        try:
            while True:
                while len(running) < workers and (i := take(back=True)) is not None:
                    running[executor.submit(fn, items[i])] = i
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    results[running.pop(future)] = future.result()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            with lock:
                errors.append(exc)
                todo.clear()

    thread = threading.Thread(target=dispatch, name="map_tasks", daemon=True)
    thread.start()
    try:
        while (i := take(back=False)) is not None:
            results[i] = fn(items[i])
    except BaseException:
        with lock:
            todo.clear()
        raise
    finally:
        thread.join()
    if errors:
        raise errors[0]
    return results
