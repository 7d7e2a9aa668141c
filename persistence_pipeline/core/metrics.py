"""Out-of-sample performance measures of return predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (column-wise for a 2-D array)."""
    return pd.DataFrame(values).rank(method="average").to_numpy().reshape(np.shape(values))


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
    """Spearman rank correlation of every column of a 2-D array with realized returns (one column at
    a time, so memory stays at a few columns whatever the width)."""
    if len(realized) < 3:
        return np.full(columns.shape[1], np.nan)
    y = average_ranks(np.asarray(realized, dtype="float64"))
    return np.array(
        [_pearson_columns(average_ranks(columns[:, j])[:, None], y)[0] for j in range(columns.shape[1])]
    )


def rank_ic_block(columns: np.ndarray, realized: np.ndarray) -> np.ndarray:
    """rank_ic_columns of a small block, ranked all at once (one week's trades: the per-column loop
    would cost a pandas call per feature and week)."""
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
