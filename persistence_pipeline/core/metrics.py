"""Out-of-sample performance measures of return predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from persistence_pipeline.core.leakage import clustered_rank_ic, holding_reach_days


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (column-wise for a 2-D array), NaN where a
    value is NaN (the others ranked 1..k among themselves), as pandas' rank(method="average").

    By one numpy argsort per column: pandas' rank cost 2.3x as much, and it was the largest part of
    a run's compute (issue 26). Ties need no stable sort: a tie group's members share its mean
    position whatever their order within it."""
    array = np.asarray(values, dtype="float64")
    if array.size == 0:
        return array.copy()
    rows = np.ascontiguousarray((array[:, None] if array.ndim == 1 else array).T)  # a column per row
    n = rows.shape[1]
    flat = np.argsort(rows, axis=1)
    if len(rows) > 1:
        flat += (np.arange(len(rows)) * n)[:, None]  # positions in the flattened rows: 1-D indexing
    ordered = rows.ravel()[flat]
    tied = ordered[:, 1:] == ordered[:, :-1]  # NaN equals nothing: each NaN stands alone, last
    with_ties = np.flatnonzero(tied.any(axis=1))
    position = np.broadcast_to(np.arange(1.0, n + 1), rows.shape)
    if with_ties.size:
        position = position.copy()
        position[with_ties] = _tie_averaged(tied[with_ties])
    flat_ranks = np.empty(rows.size)
    flat_ranks[flat] = position
    ranks = flat_ranks.reshape(rows.shape)
    if np.isnan(ordered[:, -1]).any():
        ranks[np.isnan(rows)] = np.nan
    return ranks.T.reshape(array.shape)


def _tie_averaged(tied: np.ndarray) -> np.ndarray:
    """The average 1-based sorted position of each element's tie group, from `tied` (rows x n-1:
    whether sorted element k+1 equals element k): a group starting at position s with m members
    averages s + (m + 1) / 2."""
    rows, n = len(tied), tied.shape[1] + 1
    starts = np.ones((rows, n), dtype=bool)
    starts[:, 1:] = ~tied
    first = np.flatnonzero(starts)  # in the flattened rows; every row starts a group
    size = np.diff(first, append=starts.size)
    return np.repeat(first % n + (size + 1) / 2.0, size).reshape(rows, n)


def _centered(ranks: np.ndarray) -> tuple[np.ndarray, float]:
    """Ranks (a fresh array, centered in place) minus their mean, and their sum of squares."""
    ranks -= ranks.mean()
    return ranks, float(ranks @ ranks)


def _spearman(ranks: np.ndarray, y_centered: np.ndarray, y_squares: float) -> float:
    """Pearson correlation of one column's ranks with the centered ranks of the returns (NaN when
    either is constant)."""
    centered, squares = _centered(ranks)
    denominator = np.sqrt(squares * y_squares)
    return float(centered @ y_centered / denominator) if denominator > 0 else float("nan")


def _pearson_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    y = y - y.mean()
    denominator = np.sqrt((x**2).sum(axis=0) * (y**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x * y[:, None]).sum(axis=0) / denominator, np.nan)


def rank_ic(prediction: np.ndarray, realized: np.ndarray) -> float:
    """Spearman rank correlation of a prediction with realized returns (NaN when either is constant)."""
    return float(rank_ic_columns(np.asarray(prediction, dtype="float64")[:, None], realized)[0])


def rank_ic_columns(columns: np.ndarray, realized: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of every column of a 2-D array with realized returns: the returns
    ranked and centered once, the columns one at a time (memory stays at a few columns whatever the
    width)."""
    if len(realized) < 3:
        return np.full(columns.shape[1], np.nan)
    y_centered, y_squares = _centered(average_ranks(np.asarray(realized, dtype="float64")))
    return np.array(
        [_spearman(average_ranks(columns[:, j]), y_centered, y_squares) for j in range(columns.shape[1])]
    )


def rank_ic_block(columns: np.ndarray, realized: np.ndarray) -> np.ndarray:
    """rank_ic_columns of a small block, ranked all at once (one week's trades: a call per feature
    and week would cost more than the ranking)."""
    if len(realized) < 3:
        return np.full(columns.shape[1], np.nan)
    return _pearson_columns(average_ranks(columns), average_ranks(np.asarray(realized, dtype="float64")))


def r_squared(prediction: np.ndarray, realized: np.ndarray) -> float:
    """1 - SSE / SST around the realized mean (negative when worse than predicting the mean)."""
    total = float(((realized - realized.mean()) ** 2).sum())
    return float(1.0 - ((realized - prediction) ** 2).sum() / total) if total > 0 else float("nan")


@dataclass(frozen=True)
class OutOfSampleMetrics:
    n_oos: int
    rank_ic: float
    r2: float
    hit_rate: float  # share of taken trades (prediction > 0) whose realized return was > 0
    base_rate: float  # share of ALL OOS trades whose realized return was > 0: what the hit rate must beat
    n_taken: int
    mean_return_taken: float
    mean_return_all: float


def out_of_sample_metrics(prediction: np.ndarray, realized: np.ndarray) -> OutOfSampleMetrics:
    """Rank IC, R^2, hit rate and mean return of the trades the model would take (prediction > 0)."""
    taken = prediction > 0
    return OutOfSampleMetrics(
        n_oos=int(len(realized)),
        rank_ic=rank_ic(prediction, realized),
        r2=r_squared(prediction, realized),
        hit_rate=float((realized[taken] > 0).mean()) if taken.any() else float("nan"),
        base_rate=float((realized > 0).mean()) if len(realized) else float("nan"),
        n_taken=int(taken.sum()),
        mean_return_taken=float(realized[taken].mean()) if taken.any() else float("nan"),
        mean_return_all=float(realized.mean()) if len(realized) else float("nan"),
    )


def metric_columns(metrics: OutOfSampleMetrics) -> dict[str, float]:
    """The metrics under their contract column names (`n_oos`, `oos_rank_ic`, ...: run_metrics and
    ensemble_metrics)."""
    return {("n_oos" if name == "n_oos" else f"oos_{name}"): value for name, value in vars(metrics).items()}


MIN_OOS_TRADES = 200  # below this many OOS trades the figures say how few they rest on
OOS_NEGATIVE_LEVEL = 0.01  # one-sided level at which an OOS rank IC is called below zero


@dataclass(frozen=True)
class OosJudgement:
    """The OOS rank IC with its standard error clustered by entry day (trades of one day share
    their market move), its one-sided upper bound at OOS_NEGATIVE_LEVEL and the caveat the figures
    need (empty when none)."""

    rank_ic: float
    se: float
    upper: float
    n_oos: int
    n_days: int
    caveat: str

    @property
    def below_zero(self) -> bool:
        """Whether the model ranks trades significantly worse than chance: something to act on."""
        return bool(np.isfinite(self.upper) and self.upper < 0)


def oos_caveat(n_oos: int, n_folds: int, configured_folds: int, first: object, last: object) -> str:
    """'' or what the OOS figures rest on, when that is thin: fewer than MIN_OOS_TRADES trades, or a
    walk-forward cut to fewer folds than configured (a short range), with the span of entry days."""
    parts = []
    if n_oos < MIN_OOS_TRADES:
        parts.append(f"only {n_oos} OOS trades")
    if n_folds < configured_folds:
        parts.append(f"{n_folds} of {configured_folds} folds")
    if not parts:
        return ""
    known = n_oos and first is not None and last is not None
    span = f", entered {pd.Timestamp(first):%Y-%m-%d}..{pd.Timestamp(last):%Y-%m-%d}" if known else ""
    return "; ".join(parts) + span


def judge_oos(
    prediction: np.ndarray,
    realized: np.ndarray,
    entry_time: pd.Series,
    exit_time: pd.Series,
    symbol: np.ndarray,
    n_folds: int,
    configured_folds: int,
) -> OosJudgement:
    """The OOS rank IC, its standard error (the influence function of the rank correlation summed
    per entry day, a Bartlett HAC over the holding reach, at least the variance clustered by symbol:
    the leak screen's `clustered_rank_ic`) and the one-sided upper bound; NaN below 5 trades or 3
    entry days."""
    n = len(realized)
    entry = pd.to_datetime(entry_time, utc=True)
    day = entry.dt.tz_localize(None).to_numpy().astype("datetime64[D]").astype("int64")
    n_days = len(np.unique(day)) if n else 0
    caveat = oos_caveat(n, n_folds, configured_folds, entry.min() if n else None, entry.max() if n else None)
    if n < 5 or n_days < 3:
        return OosJudgement(float("nan"), float("nan"), float("nan"), n, n_days, caveat)
    exits = pd.to_datetime(exit_time, utc=True).dt.tz_localize(None).to_numpy()
    evidence = clustered_rank_ic(
        np.asarray(prediction)[:, None],
        np.asarray(realized),
        np.zeros(n),
        day,
        lag=holding_reach_days(entry.dt.tz_localize(None).to_numpy(), exits),
        symbol=np.asarray(symbol),
    )
    ic, se = float(evidence.ic[0]), float(evidence.se[0])
    upper = ic + float(stats.t.ppf(1 - OOS_NEGATIVE_LEVEL, n_days - 1)) * se
    return OosJudgement(ic, se, upper, n, n_days, caveat)
