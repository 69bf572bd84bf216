"""A design matrix's rules fitted once (``DesignSpec``), the contract schemas checked
without pandera's machinery when they pass, and ``calendar_years`` on dates.

Each is a faster road to numbers or verdicts that the slower road gives: the tests
compare the two.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.errors import SchemaError

from analysis._checks import ColumnError
from analysis.data.cohort import calendar_years
from analysis.data.contract import TABLES
from analysis.data.parsing import normalise_table
from analysis.data.schemas import _passes, conform_columns, raw_schema, typed_schema
from analysis.design.balance import balance_reference, balance_table
from analysis.design.missing import DesignSpec, design_matrix, design_spec, fit_design
from tests.extract_factory import EXAMPLE

COVARIATES = ["sex", "region", "age", "homeless", "charges", "years", "empty", "constant"]
TRANSFORMS = {"charges": "log1p", "years": "rcs4"}
LEVELS = {"region": ("west", "north", "south")}


def cohort(n: int = 400, seed: int = 1) -> pd.DataFrame:
    """Every kind of covariate: categorical with and without missing values, numeric with
    missing values, a log1p and a spline covariate, one never observed, one constant."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "west", "east"], n).astype(object)
    region[rng.random(n) < 0.1] = None
    homeless = rng.integers(0, 2, n).astype(float)
    homeless[rng.random(n) < 0.2] = np.nan
    return pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], n),
            "region": region,
            "age": rng.integers(18, 70, n),
            "homeless": homeless,
            "charges": rng.poisson(2.0, n),
            "years": rng.uniform(0, 6, n),
            "empty": np.full(n, np.nan),
            "constant": np.ones(n),
        },
        index=pd.RangeIndex(100, 100 + n),
    )


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.attrs == b.attrs


@pytest.mark.parametrize("drop_first", [True, False])
def test_spec_reused_equals_a_fresh_expansion(drop_first: bool) -> None:
    """``spec.transform(sample)`` is ``design_matrix(sample, reference=cohort)``, exactly."""
    ref = cohort()
    options = {"transforms": TRANSFORMS, "levels": LEVELS, "drop_first": drop_first}
    spec = design_spec(ref, COVARIATES, **options)
    for rows in (slice(0, 50), slice(200, 400), [5, 3, 3, 399]):
        sample = ref.iloc[rows]
        fresh = design_matrix(sample, COVARIATES, reference=ref, **options)
        assert_same(spec.transform(sample), fresh)
        assert_same(design_matrix(sample, COVARIATES, reference=spec, **options), fresh)
    fitted, design = fit_design(ref, COVARIATES, **options)
    assert fitted == spec
    assert_same(design, design_matrix(ref, COVARIATES, **options))
    assert_same(spec.transform(ref), design)
    assert spec.columns == tuple(design.columns)


def test_spec_holds_the_reference_rules() -> None:
    """Levels in the caller's order, fill values, knots; constant and empty covariates out."""
    ref = cohort()
    spec = design_spec(ref, COVARIATES, transforms=TRANSFORMS, levels=LEVELS)
    terms = {t.covariate: t for t in spec.terms}
    assert terms["region"].levels == ("west", "north", "south", "east")
    assert terms["region"].missing and not terms["sex"].missing
    assert terms["homeless"].fill == pytest.approx(np.nanmean(ref["homeless"]))
    assert len(terms["years"].knots) == 4
    assert not terms["empty"].observed
    assert "constant" not in spec.columns and "empty" not in spec.columns
    assert spec.transforms == TRANSFORMS


def test_spec_refuses_other_arguments_and_other_data() -> None:
    ref = cohort()
    spec = design_spec(ref, COVARIATES, transforms=TRANSFORMS, levels=LEVELS)
    with pytest.raises(ValueError, match="DesignSpec fitted with other"):
        design_matrix(ref, COVARIATES, reference=spec)  # other transforms and levels
    with pytest.raises(ValueError, match="DesignSpec fitted with other"):
        design_matrix(
            ref, COVARIATES, reference=spec, transforms=TRANSFORMS, levels=LEVELS, drop_first=False
        )
    with pytest.raises(ValueError, match="not seen in the reference data"):
        spec.transform(ref.assign(sex="X"))
    with pytest.raises(ValueError, match="missing values, but none in the reference"):
        spec.transform(ref.assign(age=np.nan))
    with pytest.raises(ColumnError):
        spec.transform(ref.drop(columns="age"))
    assert isinstance(spec, DesignSpec)


def test_balance_table_with_its_spec_equals_the_reference_frame() -> None:
    ref = cohort().assign(treatment=lambda d: (np.arange(len(d)) % 3 == 0).astype(int))
    options = {"treatment": "treatment", "covariates": COVARIATES, "transforms": TRANSFORMS}
    sample = ref.iloc[::2]
    expected = balance_table(sample, reference=ref, **options)
    result = balance_table(sample, reference=balance_reference(ref, **options), **options)
    pd.testing.assert_frame_equal(result, expected, check_exact=True)


# --------------------------------------------------------------------------- schemas
def raw_table(table: str) -> pd.DataFrame:
    """The example extract's table as read from CSV: strings, missing cells ``None``."""
    text = pd.read_csv(EXAMPLE / f"{table}.csv", dtype=str, keep_default_na=False)
    raw = text.astype(object).where(text != "", None)
    return conform_columns(raw, table=table, file=f"{table}.csv")[0]


def pandera_passes(schema: pa.DataFrameSchema, df: pd.DataFrame) -> bool:
    try:
        schema.validate(df.copy(), lazy=False)
    except SchemaError:
        return False
    return True


BREAKS = ["", "x", "-1", "1.5", "2020-13-01", "2999-01-01", "1850", "2", "true", "P1"]


@pytest.mark.parametrize("table", TABLES)
def test_checks_without_pandera_agree_with_pandera(table: str) -> None:
    """On the example and on every one-cell break of it, the quick check passes a table
    exactly when pandera passes it (raw schema, then the typed schema of what passes, also
    with the raw schema's required columns known complete); the columns its quick tests
    parse are those ``normalise_table`` makes."""
    extract_date = pd.Timestamp("2024-12-31")
    good = raw_table(table)
    frames = [good]
    for column in good.columns:
        for value in BREAKS:
            broken = good.copy()
            broken.loc[broken.index[-1], column] = value if value else None
            frames.append(broken)
    complete = {n for n, c in raw_schema(table).columns.items() if not c.nullable}
    for raw in frames:
        schema = raw_schema(table)
        parsed: dict[str, pd.Series] = {}
        assert _passes(schema, raw, parsed) == pandera_passes(schema, raw)
        if pandera_passes(schema, raw):
            typed = normalise_table(raw, table)
            assert parsed
            pd.testing.assert_frame_equal(
                normalise_table(raw, table, parsed=parsed), typed, check_exact=True
            )
            schema = typed_schema(table, extract_date=extract_date)
            assert _passes(schema, typed) == pandera_passes(schema, typed)
            assert _passes(schema, typed, complete=complete) == pandera_passes(schema, typed)
    assert _passes(raw_schema(table), good)


def test_schemas_are_built_once() -> None:
    date = pd.Timestamp("2024-12-31")
    assert raw_schema("persons") is raw_schema("persons")
    assert typed_schema("persons", extract_date=date) is typed_schema(
        "persons", extract_date="2024-12-31"
    )
    assert typed_schema("persons", extract_date=date) is not typed_schema(
        "persons", extract_date=pd.Timestamp("2023-12-31")
    )


# --------------------------------------------------------------------------- calendar time
def test_calendar_years_of_dates_and_of_text() -> None:
    text = pd.Series(["2021-03-01", "2020-01-01", None, "2024-12-31"], name="index_date")
    dates = pd.to_datetime(text).astype("datetime64[s]")
    pd.testing.assert_series_equal(calendar_years(dates), calendar_years(text), check_exact=True)
    first = pd.Timestamp("2022-01-01")
    pd.testing.assert_series_equal(
        calendar_years(dates, first=first), calendar_years(text, first=first), check_exact=True
    )
    assert calendar_years(dates).iloc[1] == 0.0
