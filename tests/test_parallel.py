"""analysis._parallel.map_tasks: results in order, and no clash with joblib's executor."""

from __future__ import annotations

import operator
from functools import partial

from joblib import Parallel, delayed

from analysis._parallel import map_tasks


def test_results_in_the_items_order_whichever_process_ran_them():
    items = list(range(12))
    assert map_tasks(partial(operator.mul, 3), items, n_jobs=2) == [3 * x for x in items]
    assert map_tasks(partial(operator.mul, 3), items, n_jobs=1) == [3 * x for x in items]


def test_joblib_parallel_runs_after_map_tasks_in_the_same_process():
    # a study with imputations and then a simulation study with joblib workers in one
    # process: joblib must not be handed an executor it did not set up
    assert map_tasks(partial(operator.add, 1), range(4), n_jobs=2) == [1, 2, 3, 4]
    out = Parallel(n_jobs=2)(delayed(operator.add)(x, 1) for x in range(4))
    assert out == [1, 2, 3, 4]
    assert map_tasks(partial(operator.add, 1), range(4), n_jobs=2) == [1, 2, 3, 4]
