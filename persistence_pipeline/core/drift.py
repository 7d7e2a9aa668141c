"""Drift between a run's trades and the previous run's (how the ranking moved is in changes.py).

PSI (population stability index) of a feature: cut the previous range's values at their deciles
(ties merged), count the share of each range's values per bin (an empty bin counts as 0.0001), and
sum (actual - expected) * ln(actual / expected). Rules of thumb: < 0.1 stable, 0.1-0.25 moderate,
> 0.25 a major shift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PSI_FLOOR = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`, decile bins of `expected` (NaNs dropped)."""
    expected = np.asarray(expected, dtype="float64")
    actual = np.asarray(actual, dtype="float64")
    expected, actual = expected[~np.isnan(expected)], actual[~np.isnan(actual)]
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1))[1:-1])
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1) / len(actual)
    e, a = np.maximum(e, PSI_FLOOR), np.maximum(a, PSI_FLOOR)
    return float(((a - e) * np.log(a / e)).sum())


def feature_drift(previous: pd.DataFrame, current: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """PSI per feature present in both frames, largest first."""
    rows = [
        {"feature": f, "psi": psi(previous[f].to_numpy(), current[f].to_numpy())}
        for f in features
        if f in previous
    ]
    return (
        pd.DataFrame(rows, columns=["feature", "psi"])
        .sort_values(["psi", "feature"], ascending=[False, True])
        .reset_index(drop=True)
    )
