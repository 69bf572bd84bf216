"""Quick validation of a table against a contract schema, without pandera's machinery.

:func:`passes` evaluates the rules of a schema of :mod:`analysis.data.schemas` as pandera
does, a check carrying a *quick test* (:func:`with_quick_test`: the same rule, vectorised) by
that test; only when a rule fails (or the schema has an option it does not know) does the
caller run pandera, which finds the broken rule and reports it. The quick tests of the
parse rules return the parsed column too, so that normalisation does not parse it again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine

from analysis.data.parsing import encode

#: attribute holding a check's quick test (see :func:`passes`), which pandera's copies of the
#: check keep: ``test(values)`` of a column check takes the column and returns whether every
#: non-missing cell passes and, for a check that parses cells, the parsed column (as
#: :func:`normalise_table` makes it; else ``None``); ``test(frame)`` of a frame check returns
#: whether every row passes
_QUICK = "_contract_quick_test"


def with_quick_test(check: pa.Check, quick: Callable) -> pa.Check:
    """Give ``check`` its quick test (see :data:`_QUICK`); returns the check."""
    setattr(check, _QUICK, quick)
    return check


def quick_test(check: pa.Check) -> Callable | None:
    """The quick test of a check (``None``: none; pandera calls the check)."""
    return getattr(check, _QUICK, None)


def cells_pass(s: pd.Series, ok: pd.Series | np.ndarray) -> bool:
    """Every non-missing cell of ``s`` passes (``ok``): pandera's ``ignore_na``."""
    ok = np.asarray(ok, dtype=bool)
    return bool(ok.all() or (ok | s.isna().to_numpy()).all())


def quick_parse(parse: Callable[[pd.Series], pd.Series], test: Callable | None = None):
    """Quick test of a parse rule: the parsed column, and whether every present cell parses."""

    def quick(s: pd.Series) -> tuple[bool, pd.Series]:
        values = parse(s)
        return cells_pass(s, values.notna() if test is None else test(values)), values

    return quick


def quick_category(allowed: tuple[str, ...]):
    """Quick test of ``Check.isin(allowed)``: on the distinct values; the normalised column
    (one string object per distinct value, as :func:`analysis.data.parsing.normalise_table` makes it)."""
    allowed_set = frozenset(allowed)

    def quick(s: pd.Series) -> tuple[bool, pd.Series]:
        codes, uniques = encode(s)
        passed = all(isinstance(u, str) and u in allowed_set for u in uniques)
        return passed, pd.Series(np.append(uniques, None)[codes], index=s.index)

    return quick


@functools.lru_cache(maxsize=64)
def _engine_dtype(dtype: object) -> object:
    """pandera's data type of a pandas dtype (looked up once: the look-up is slow)."""
    return pandas_engine.Engine.dtype(dtype)


def passes(
    schema: pa.DataFrameSchema,
    df: pd.DataFrame,
    parsed: dict[str, pd.Series] | None = None,
    complete: set[str] | None = None,
) -> bool:
    """Whether ``df`` surely passes ``schema``: its rules checked without pandera's machinery.

    The rules a contract schema has, evaluated as pandera evaluates them: columns present,
    no missing value where not ``nullable``, no duplicate where ``unique``, the ``dtype``
    (pandera's own dtype check) and each :class:`pandera.api.checks.Check` (on the column, or,
    for the schema's checks, the frame): a check with a quick test (:func:`with_quick_test`) by it (the same
    rule, vectorised, on the non-missing cells as pandera's ``ignore_na``), any other called
    as pandera calls it. ``True`` only if every rule passes; on ``False`` the caller runs
    pandera, which finds the broken rule and reports it, so a rule or a schema option this
    function does not know of (or a check that raises) only costs the time of pandera's
    validation. ``parsed`` (given) receives the columns the quick tests parsed, as
    :func:`analysis.data.parsing.normalise_table` makes them (its ``parsed``).

    ``complete`` names columns known to have no missing value, whose ``nullable`` rule is not
    evaluated again; given for the normalised table (:func:`analysis.data.schemas.validate_table`), it names the
    required columns of the table as read, found complete by the raw schema: once every
    present cell parses (the raw schema's checks), normalisation gives a missing
    value exactly where the cell was missing.
    """
    options = (schema.strict, schema.ordered, schema.unique, schema.coerce, schema.parsers)
    if any(options) or schema.dtype is not None or schema.index is not None:
        return False
    if schema.add_missing_columns or schema.drop_invalid_rows or df.columns.has_duplicates:
        return False
    try:
        for name, column in schema.columns.items():
            if column.regex or column.coerce or column.parsers or column.default is not None:
                return False
            if name not in df.columns:
                return False
            s = df[name]
            if not column.nullable and not (complete is not None and name in complete):
                if s.hasnans:
                    return False
            if column.unique and not s.is_unique:
                return False
            if column.dtype is not None:
                same = column.dtype.check(_engine_dtype(s.dtype), s)
                if not (isinstance(same, bool | np.bool_) and same):
                    return False
            for check in column.checks:
                quick = quick_test(check)
                if quick is None:
                    if not bool(check(df, name).check_passed):
                        return False
                    continue
                passed, values = quick(s)
                if not passed:
                    return False
                if parsed is not None and values is not None:
                    parsed[name] = values
        for check in schema.checks:
            quick = quick_test(check)
            if not (quick(df) if quick is not None else bool(check(df).check_passed)):
                return False
        return True
    except Exception:  # a check that cannot run: pandera reports it
        return False
