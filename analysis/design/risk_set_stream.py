"""Risk-set matching on risk sets too large to hold: the stacked rows streamed in pieces.

:func:`analysis.design.risk_set_matching.risk_set_match` stacks every (initiator,
candidate) row of every risk set in one table. On a national extract (thousands of
initiators, tens of thousands of candidates on each of their dates) that table has tens
of millions of rows and some forty columns. :func:`stream_risk_set_match` does the same
analysis holding one piece of index dates at a time
(:meth:`analysis.data.risk_set_rows.RiskSetSource.pieces`):

1. one pass over the risk sets, without their outcomes: each piece's analysed rows are
   kept in compact form (the covariates in the smallest dtype that holds their values
   exactly, the day and the person's code), and what the design of the whole needs is
   gathered (:class:`analysis.design.streamed_design.DesignAccumulator`);
2. the propensity model on all stacked rows by Newton-Raphson over sums
   (:func:`analysis.design.streamed_logit.fit_logit_pieces`: exact maximum likelihood,
   the subsample only its start), the design matrix rebuilt chunk by chunk at each pass,
   the chunks on ``threads`` threads; its first pass also gathers balance before
   matching as per-group moments (means and variances by Chan's pairwise update, added
   in chunk order), and its last pass gives every row's logit at the estimate;
3. the caliper width from every row's logit;
4. matching piece by piece: a risk set is an exact stratum, so pieces of index dates are
   independent given the fitted model and the caliper width (from every row's logit, as
   :func:`analysis.design.matching.caliper_width` computes it on the whole). Each piece
   is matched by :func:`analysis.design.matching.match` with the caliper (in SDs) chosen
   so that its width on the piece is the global width to the last bit; row ids are
   integers that sort as ``<index date>|<person_id>`` does, so ties break as on the
   whole table, and sets are numbered on across pieces in that order;
5. the matched rows only get their outcomes (:meth:`RiskSetSource.rows`).

Given the same scores, the matched sets are those of the whole-table analysis (the
matching is the same algorithm on the same strata); the scores differ from the
whole-table fit (statsmodels) by the convergence tolerance and summation order (about
``1e-10``), so a near-tie of two candidates' distances could in principle resolve the
other way. Below ``whole_rows`` stacked rows the whole-table analysis is the one to use
(:mod:`evaluation` keeps it for every extract it runs).
"""

from __future__ import annotations

# long: the five steps of the module notes, each a function of a few dozen lines
import mmap
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from analysis.data.contract import CALENDAR_COVARIATE, DAYS_PER_YEAR
from analysis.data.risk_set_rows import ROLE_CANDIDATE, ROLE_INITIATOR, RiskSetSource
from analysis.design.matching import REASON_CALIPER, caliper_width, match
from analysis.design.streamed_design import DesignAccumulator, DesignSpec, Moments, compact_frame
from analysis.design.streamed_logit import (
    LogitFit,
    fit_logit_pieces,
    ordered_map,
    subsample_every,
    subsample_rows,
)

__all__ = ["StreamedRiskSetMatch", "stream_risk_set_match"]

_SEP = "|"


def _off_heap(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` in its own anonymous memory map, outside the malloc heap.

    The kept rows of a piece live until the end while each piece's temporaries come and
    go; in the heap the long-lived arrays pin the freed space between them (glibc keeps
    arrays under its dynamic mmap threshold, up to 32 MB, in the heap), and the process
    grows by several times the data kept. Mapped on their own, they leave the heap free.
    """
    a = np.ascontiguousarray(a)
    if a.nbytes == 0:
        return a.copy()
    buf = mmap.mmap(-1, a.nbytes)
    out = np.frombuffer(buf, dtype=a.dtype, count=a.size).reshape(a.shape)
    out[...] = a
    return out


@dataclass
class _Piece:
    """The analysed rows of a piece: compact covariates (calendar time left out: from
    ``day``), each column off the heap (categorical ones as codes)."""

    columns: dict[str, np.ndarray]
    categories: dict[str, pd.Index]
    day: np.ndarray
    code: np.ndarray
    treated: np.ndarray
    logit: np.ndarray | None = None

    @classmethod
    def of(cls, cov: pd.DataFrame, day: np.ndarray, code: np.ndarray, treated: np.ndarray):
        cov = compact_frame(cov)
        columns, categories = {}, {}
        for c in cov.columns:
            s = cov[c]
            if isinstance(s.dtype, pd.CategoricalDtype):
                categories[c] = s.cat.categories
                columns[c] = _off_heap(s.cat.codes.to_numpy())
            else:
                columns[c] = _off_heap(s.to_numpy())
        return cls(columns, categories, _off_heap(day.astype(np.int32)),
                   _off_heap(code.astype(np.int32)), _off_heap(treated))  # fmt: skip

    def frame(self, sl: slice | np.ndarray) -> pd.DataFrame:
        """The covariates of the rows ``sl`` (categoricals rebuilt from their codes)."""
        return pd.DataFrame(
            {c: pd.Categorical.from_codes(v[sl], categories=self.categories[c])
             if c in self.categories else v[sl] for c, v in self.columns.items()}
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class StreamedRiskSetMatch:
    """Risk-set matching done in pieces (:func:`stream_risk_set_match`).

    Attributes
    ----------
    data : pandas.DataFrame
        As :attr:`analysis.design.risk_set_matching.RiskSetMatch.data`: the matched rows
        with every risk-set column (outcomes included), ``treatment``, ``group``,
        ``row_id``, ``calendar_years``, ``ps``, ``ps_logit``, ``match_set``,
        ``n_in_set``, ``weight``.
    pairs, unmatched : pandas.DataFrame
        As :class:`analysis.design.matching.MatchedSample`'s (ids are ``row_id``).
    propensity : LogitFit
    covariates : tuple of str
    caliper_width : float
    counts : dict
        Rows and persons of the stacked risk sets, pieces, passes.
    balance_before, balance_matched : pandas.DataFrame
        Per design column (every level): ``variable``, ``mean_treated``,
        ``mean_control``, ``var_treated``, ``var_control``.
    """

    data: pd.DataFrame
    pairs: pd.DataFrame
    unmatched: pd.DataFrame
    propensity: LogitFit
    covariates: tuple[str, ...]
    k: int
    caliper: float | None
    caliper_width: float
    exact: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    balance_before: pd.DataFrame | None = None
    balance_matched: pd.DataFrame | None = None

    def balance(self) -> pd.DataFrame:
        """``variable, smd_before, variance_ratio_before, smd_matched,
        variance_ratio_matched`` on the yardstick of all stacked rows (as
        :meth:`analysis.design.risk_set_matching.RiskSetMatch.balance`)."""
        b, a = self.balance_before, self.balance_matched
        sd = np.sqrt((np.nan_to_num(b["var_treated"]) + np.nan_to_num(b["var_control"])) / 2)

        def smd(t: pd.DataFrame) -> np.ndarray:
            diff = (t["mean_treated"] - t["mean_control"]).to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(sd > 0, diff / sd, np.where(diff == 0, 0.0, np.sign(diff) * np.inf))

        with np.errstate(divide="ignore", invalid="ignore"):
            return pd.DataFrame(
                {
                    "variable": b["variable"],
                    "smd_before": smd(b),
                    "variance_ratio_before": b["var_treated"] / b["var_control"],
                    "smd_matched": smd(a),
                    "variance_ratio_matched": a["var_treated"] / a["var_control"],
                }
            )

    def info(self) -> dict[str, Any]:
        """Numbers describing the design (the keys of ``RiskSetMatch.info`` it can give)."""
        d = self.data
        mc = d[d["treatment"] == 0]
        n_t = self.counts["n_treated"]
        n_tm = int((d["treatment"] == 1).sum())
        return {
            "k": self.k,
            "caliper_sd": self.caliper,
            "caliper_width": self.caliper_width,
            "replace": False,
            "exact": list(self.exact),
            "n_risk_sets": self.counts["n_risk_sets"],
            "n_treated": n_t,
            "n_treated_matched": n_tm,
            "n_control_matched": int(mc["person_id"].nunique()),
            "n_control_rows_matched": len(mc),
            "n_candidate_rows": self.counts["n_candidate_rows"],
            "n_candidate_persons": self.counts["n_candidate_persons"],
            "share_treated_matched": n_tm / n_t if n_t else float("nan"),
            "n_sets_complete": int((d.loc[d["treatment"] == 1, "n_in_set"] == self.k).sum()),
            "comparators_later_hat_rows": int(mc["pp_censor_date"].notna().sum()),
            "unmatched_treated_by_reason": {
                str(r): int(v)
                for r, v in self.unmatched["reason"].value_counts().sort_index().items()
            },
            "propensity_rows": self.propensity.n,
            "propensity_method": "logit_mle_streamed",
            "propensity_passes": self.propensity.passes,
            "pieces": self.counts["pieces"],
        }


def _store(
    source: RiskSetSource, covs: tuple[str, ...], exact: Sequence[str], acc: DesignAccumulator,
    first: pd.Timestamp, max_rows: int, threads: int = 1,
) -> tuple[list[_Piece], dict[str, int]]:  # fmt: skip
    """Step 1: the analysed rows of every piece, compact (built on ``threads`` threads);
    the design's statistics (gathered in piece order)."""
    h = source.histories
    keep = list(dict.fromkeys([*[c for c in covs if c != CALENDAR_COVARIATE], *exact]))

    def work(_: int, task: Callable[[], Any]) -> _Piece:
        t = task().table
        rows = t[t["role"].isin([ROLE_INITIATOR, ROLE_CANDIDATE])]
        del t
        treated = (rows["role"] == ROLE_INITIATOR).to_numpy()
        day = rows["index_date"].to_numpy("datetime64[D]").astype(np.int64)
        code = rows["person_code"].to_numpy(np.int64)
        return _Piece.of(rows[keep].reset_index(drop=True), day, code, treated)

    pieces: list[_Piece] = []
    seen = np.zeros(h.n, dtype=bool)
    n_cand = 0
    days: set[int] = set()
    tasks = source.tasks(max_rows=max_rows, with_outcomes=False, with_codes=True)
    for p in ordered_map(work, tasks, threads):
        # the compact columns read back exactly: the statistics of the rows themselves
        acc.add(_frame(p, first, covs, slice(None)))
        seen[p.code[~p.treated]] = True
        n_cand += int((~p.treated).sum())
        days |= set(np.unique(p.day[p.treated]).tolist())
        pieces.append(p)
    counts = {
        "n_candidate_rows": n_cand,
        "n_candidate_persons": int(seen.sum()),
        "n_risk_sets": len(days),
        "n_treated": int(sum(p.treated.sum() for p in pieces)),
        "pieces": len(pieces),
    }
    return pieces, counts


def _subsample(
    pieces: list[_Piece], spec: DesignSpec, first: pd.Timestamp, covs: tuple[str, ...],
    start_rows: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:  # fmt: skip
    """The propensity fit's start rows (:func:`subsample_rows`), their design and weights."""
    m = subsample_every(sum(len(p.day) for p in pieces), start_rows)
    if not m:
        return None
    X, y, offset = [], [], 0
    for p in pieces:
        rows = subsample_rows(p.treated, offset, m)
        offset += len(p.day)
        X.append(spec.matrix(_frame(p, first, covs, rows)))
        y.append(p.treated[rows].astype(np.float64))
    yy = np.concatenate(y)
    return np.vstack(X), yy, np.where(yy == 1, 1.0, float(m))


def _propensity(
    pieces: list[_Piece], spec: DesignSpec, bal: DesignSpec, first: pd.Timestamp,
    covs: tuple[str, ...], *, chunk_rows: int, start_rows: int, threads: int,
) -> tuple[LogitFit, dict[int, tuple[Moments, Moments]]]:  # fmt: skip
    """Step 2 (and 3's logits, stored in the pieces): the fit; balance before matching as
    each chunk's moments by group (gathered in the first pass)."""
    chunks = list(_chunks(pieces, chunk_rows))
    for p in pieces:
        p.logit = _off_heap(np.empty(len(p.day)))
    before: dict[int, tuple[Moments, Moments]] = {}

    def build(i: int, p: _Piece, sl: slice) -> tuple[np.ndarray, np.ndarray]:
        f = _frame(p, first, covs, sl)
        t = p.treated[sl]
        if i not in before:  # the first pass: balance before matching, by group
            B = bal.matrix(f)
            before[i] = (Moments.of(B[t]), Moments.of(B[~t]))
        return spec.matrix(f), t.astype(np.float64)

    def put(i: int, eta: np.ndarray) -> None:  # each Newton pass; the last at the estimate
        _, p, sl = chunks[i]
        p.logit[sl] = eta

    fit = fit_logit_pieces(
        lambda: [partial(build, i, p, sl) for i, (_, p, sl) in enumerate(chunks)],
        spec.names, start_rows=start_rows, threads=threads, logits=put,
        start=_subsample(pieces, spec, first, covs, start_rows),
    )  # fmt: skip
    return fit, before


def _calendar(day: np.ndarray, first: pd.Timestamp) -> np.ndarray:
    """:func:`analysis.data.cohort.calendar_years` of day numbers: whole days since
    ``first`` over :data:`DAYS_PER_YEAR`, the same float division, without dates."""
    origin = int(np.datetime64(first, "D").astype(np.int64))
    return (day.astype(np.int64) - origin) / DAYS_PER_YEAR


def _frame(
    p: _Piece, first: pd.Timestamp, covs: tuple[str, ...], sl: slice | np.ndarray
) -> pd.DataFrame:
    f = p.frame(sl)
    if CALENDAR_COVARIATE in covs:
        f = f.assign(**{CALENDAR_COVARIATE: _calendar(p.day[sl], first)})
    return f


def _chunks(pieces: list[_Piece], chunk_rows: int):
    for i, p in enumerate(pieces):
        for lo in range(0, len(p.day), chunk_rows):
            yield i, p, slice(lo, lo + chunk_rows)


def _caliper_for(width: float, sd: float) -> float:
    """A caliper ``c`` (in SDs) with ``float(c * sd) == width``, as near as floats allow."""
    c = width / sd
    for _ in range(8):
        got = float(c * sd)
        if got == width:
            break
        c = np.nextafter(c, np.inf if got < width else -np.inf)
    return float(c)


def _match_piece(
    p: _Piece, first_day: int, rank: np.ndarray, n_persons: int, *, k: int,
    width: float, exact: Sequence[str],
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Step 4 on one piece: pairs and unmatched initiators (integer row ids)."""
    rid = (p.day.astype(np.int64) - first_day) * n_persons + rank[p.code]
    df = pd.DataFrame(
        {"rid": rid, "treatment": p.treated.astype(np.int64), "ps_logit": p.logit,
         "index_date": p.day, **{c: p.frame(slice(None))[c] for c in exact}}
    )  # fmt: skip
    caliper = None
    if np.isfinite(width):
        sd = caliper_width(p.logit, p.treated, 1.0)
        caliper = _caliper_for(width, sd) if sd > 0 else None
    m = match(
        df, treatment="treatment", score="ps_logit", id="rid", k=k, caliper=caliper,
        exact=("index_date", *exact), replace=False,
    )  # fmt: skip
    pairs, unmatched = m.pairs, m.unmatched
    if caliper is None and np.isfinite(width):
        # the piece's scores have SD 0 (one treated row, controls all alike): the caliper
        # keeps all of a treated row's pairs or none, so filtering after matching is the same
        pairs = pairs[pairs["distance"] <= width]
        lost = np.setdiff1d(m.pairs["treated_id"], pairs["treated_id"])
        extra = pd.DataFrame(
            {"rid": lost, "score": df.set_index("rid").loc[lost, "ps_logit"].to_numpy(),
             "reason": REASON_CALIPER}
        )  # fmt: skip
        unmatched = pd.concat([unmatched, extra], ignore_index=True)
    return pairs, unmatched


def _decode(rid: np.ndarray, first_day: int, by_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Person codes and days of integer row ids."""
    day, rank = np.divmod(np.asarray(rid, dtype=np.int64), len(by_rank))
    return by_rank[rank], day + first_day


def _moments_table(names: list[str], mt: Moments, mc: Moments) -> pd.DataFrame:
    return pd.DataFrame(
        {"variable": names, "mean_treated": mt.mean, "mean_control": mc.mean,
         "var_treated": mt.var, "var_control": mc.var}
    )  # fmt: skip


def _weighted(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and reliability-weighted variance (as the balance tables)."""
    sw = w.sum()
    m = (w[:, None] * X).sum(axis=0) / sw
    denom = sw - (w**2).sum() / sw
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (w[:, None] * (X - m) ** 2).sum(axis=0) / denom
    return m, v


def _matched_rows(
    source: RiskSetSource, pairs: pd.DataFrame, first_day: int, by_rank: np.ndarray,
    logit_of: dict[int, float], first: pd.Timestamp,
) -> pd.DataFrame:  # fmt: skip
    """Step 5: the matched rows with their outcomes and the matching's columns."""
    n_in_set = pairs.groupby("match_set").size()
    treated = pairs.drop_duplicates("match_set")[["match_set", "treated_id"]]
    rid = np.r_[treated["treated_id"].to_numpy(), pairs["control_id"].to_numpy()].astype(np.int64)
    sets = np.r_[treated["match_set"].to_numpy(), pairs["match_set"].to_numpy()]
    is_t = np.r_[np.ones(len(treated), np.int64), np.zeros(len(pairs), np.int64)]
    code, day = _decode(rid, first_day, by_rank)
    data = source.rows(code, day)
    logit = np.array([logit_of[int(r)] for r in rid])
    m = n_in_set.reindex(sets).to_numpy()
    data = data.assign(
        treatment=is_t,
        group=np.where(is_t == 1, "HAT", "OST"),
        row_id=data["index_date"].dt.strftime("%Y-%m-%d") + _SEP + data["person_id"].astype(str),
        **{CALENDAR_COVARIATE: _calendar(day, first)},
        ps=expit(logit),
        ps_logit=logit,
        match_set=sets,
        n_in_set=m,
        weight=np.where(is_t == 1, 1.0, 1.0 / m),
        _key=1 - is_t,
    )
    data = data.sort_values(["match_set", "_key", "person_id"], kind="stable", ignore_index=True)
    return data.drop(columns="_key")


def _ranks(source: RiskSetSource) -> tuple[np.ndarray, np.ndarray]:
    """Codes in ``person_id`` order, and each code's rank in it."""
    h = source.histories
    by_rank = np.argsort(h.ids.astype(str), kind="stable")
    rank = np.empty(h.n, dtype=np.int64)
    rank[by_rank] = np.arange(h.n)
    return by_rank, rank


#: day numbers of the integer row ids start here (any day before the first index date)
_FIRST_DAY = 0


def _match_all(
    pieces: list[_Piece], source: RiskSetSource, *, k: int, width: float, exact: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[int, float]]:
    """Step 4: every piece matched; sets numbered on; ids back to ``row_id`` strings."""
    n = source.histories.n
    by_rank, rank = _ranks(source)
    all_pairs, all_unmatched, logit_of, offset = [], [], {}, 0
    for p in pieces:
        pairs, unmatched = _match_piece(p, _FIRST_DAY, rank, n, k=k, width=width, exact=exact)
        pairs = pairs.assign(match_set=pairs["match_set"] + offset)
        offset += int(pairs["match_set"].nunique())
        rid = (p.day.astype(np.int64) - _FIRST_DAY) * n + rank[p.code]
        used = np.isin(rid, np.r_[pairs["treated_id"], pairs["control_id"]])
        logit_of.update(zip(rid[used].tolist(), p.logit[used].tolist(), strict=True))
        all_pairs.append(pairs)
        all_unmatched.append(unmatched)
    pairs = pd.concat(all_pairs, ignore_index=True)
    unmatched = pd.concat(all_unmatched, ignore_index=True)
    return pairs, unmatched, logit_of


def _as_row_ids(rid: np.ndarray, source: RiskSetSource, by_rank: np.ndarray) -> np.ndarray:
    code, day = _decode(rid, _FIRST_DAY, by_rank)
    dates = day.astype("datetime64[D]").astype(str).astype(object)
    return dates + _SEP + source.histories.ids.astype(str).astype(object)[code]


def _matched(
    source: RiskSetSource, pairs: pd.DataFrame, logit_of: dict[int, float], bal: DesignSpec,
    first: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Step 5: matched rows with outcomes, balance after matching; string ids in ``pairs``."""
    by_rank, _ = _ranks(source)
    data = _matched_rows(source, pairs, _FIRST_DAY, by_rank, logit_of, first)
    B = bal.matrix(data)
    t = data["treatment"].to_numpy() == 1
    w = data["weight"].to_numpy()
    (m1, v1), (m0, v0) = _weighted(B[t], w[t]), _weighted(B[~t], w[~t])
    after = pd.DataFrame({"variable": bal.names, "mean_treated": m1, "mean_control": m0,
                          "var_treated": v1, "var_control": v0})  # fmt: skip
    return data, after


# over 80 lines only by its numpydoc docstring (the code is under 60)
def stream_risk_set_match(
    source: RiskSetSource,
    *,
    covariates: Sequence[str],
    k: int = 1,
    caliper: float | None = None,
    exact: Sequence[str] = (),
    calendar_time: bool = True,
    transforms: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
    max_rows: int = 2_000_000,
    chunk_rows: int = 500_000,
    start_rows: int = 1_000_000,
    threads: int = 1,
    step: Callable[[str], AbstractContextManager] | None = None,
) -> StreamedRiskSetMatch:
    """Risk-set matching with the stacked rows streamed (see the module notes).

    Parameters
    ----------
    source : RiskSetSource
        :func:`analysis.data.risk_set_rows.risk_set_source` of the extract.
    covariates, k, caliper, exact, calendar_time, transforms, levels
        As :func:`analysis.design.risk_set_matching.risk_set_match`.
    max_rows : int, default 2,000,000
        Rows evaluated per piece of the risk sets (memory of one piece).
    chunk_rows : int, default 500,000
        Rows per design matrix built in the passes of the fit.
    start_rows : int, default 1,000,000
        About the size of the subsample the fit's start is fitted on
        (:func:`analysis.design.streamed_logit.fit_logit_pieces`).
    threads : int, default 1
        Threads building the pieces of the risk sets and the chunks of the fit's passes;
        the result does not depend on it, the memory does (each thread's malloc arena
        keeps its freed pieces: at scale 2 of the default scenario 1.9 GB against 0.9 GB
        on one thread).
    step : callable, optional
        ``step(name)`` is entered around each step (``risk sets``, ``propensity``,
        ``scores and balance``, ``matching``, ``matched rows``): a timer, say.

    Returns
    -------
    StreamedRiskSetMatch

    Raises
    ------
    ValueError
        No initiator or no candidate, or the propensity model cannot be fitted.
    """
    covs = tuple(covariates) + ((CALENDAR_COVARIATE,) if calendar_time else ())
    init = source.initiators
    analysed = init.loc[init["analysed"], "index_date"]
    if analysed.empty:
        raise ValueError("no analysed initiator: no risk set")
    first = pd.Timestamp(analysed.min())
    step = step or (lambda name: nullcontext())
    acc = DesignAccumulator(covs, transforms=transforms, levels=levels)
    with step("risk sets"):
        pieces, counts = _store(source, covs, exact, acc, first, max_rows, threads)
    if counts["n_candidate_rows"] == 0:
        raise ValueError(f"{counts['n_treated']} initiators and 0 candidate rows: both are needed")
    spec, bal = acc.spec(drop_first=True), acc.spec(drop_first=False)
    with step("propensity"):
        fit, before = _propensity(
            pieces, spec, bal, first, covs, chunk_rows=chunk_rows, start_rows=start_rows,
            threads=threads,
        )  # fmt: skip
    with step("scores and balance"):
        mt, mc = Moments(), Moments()
        for i in range(len(before)):  # in chunk order, as one pass would add them
            mt.merge(before[i][0])
            mc.merge(before.pop(i)[1])
        logits = np.concatenate([p.logit for p in pieces])
        width = caliper_width(logits, np.concatenate([p.treated for p in pieces]), caliper)
        del logits
    with step("matching"):
        pairs, unmatched, logit_of = _match_all(pieces, source, k=k, width=width, exact=exact)
    with step("matched rows"):
        data, after = _matched(source, pairs, logit_of, bal, first)
        by_rank, _ = _ranks(source)
        for c in ("treated_id", "control_id"):
            pairs[c] = _as_row_ids(pairs[c].to_numpy(), source, by_rank)
        unmatched = unmatched.assign(rid=_as_row_ids(unmatched["rid"].to_numpy(), source, by_rank))
        unmatched = unmatched.rename(columns={"rid": "row_id"})
    return StreamedRiskSetMatch(
        data=data,
        pairs=pairs,
        unmatched=unmatched,
        propensity=fit,
        covariates=covs,
        k=k,
        caliper=caliper,
        caliper_width=width,
        exact=tuple(exact),
        counts=counts,
        balance_before=_moments_table(bal.names, mt, mc),
        balance_matched=after,
    )
