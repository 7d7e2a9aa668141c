"""Leakage guard, second line: features that predict the label too well to be real.

The first line is in schema.py: outcome columns (exit price, pnl, holding period, ...) can never be
features. A feature computed after entry can still leak under another name; an in-sample |rank IC|
with the realized return far above what entry-time signals show (daily-trade ICs of 0.02-0.10 are
already strong) is the evidence. Such a feature is quarantined: left out of the run's model (it
would otherwise take all the credit and bury every honest feature), stored in `excluded_features`
with its IC, and reported by the failing `no_leaky_features` check. The threshold is
max(max_abs_ic, 4 / sqrt(n)): 0.3 by default, and never within four standard errors of zero (an
honest feature's IC on n trades has a standard error of about 1 / sqrt(n)), so small runs do not
quarantine honest features by chance. It is high enough that the selection cannot flatter the
out-of-sample metrics of honest features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from persistence_pipeline.core.metrics import rank_ic_columns


def leakage_suspects(importance: pd.DataFrame, max_abs_ic: float) -> pd.DataFrame:
    """Features whose in-sample |rank IC| with the label exceeds what a real entry-time signal shows."""
    suspects = importance[importance["ic"].abs() > max_abs_ic]
    return suspects[["feature", "ic"]].sort_values("ic", key=np.abs, ascending=False).reset_index(drop=True)


def leakage_threshold(max_abs_ic: float, n_trades: int) -> float:
    return max(max_abs_ic, 4.0 / np.sqrt(max(n_trades, 1)))


def quarantine(X: np.ndarray, y: np.ndarray, features: list[str], max_abs_ic: float) -> pd.DataFrame:
    """The features to leave out of the model, with their in-sample IC and the reason."""
    threshold = leakage_threshold(max_abs_ic, len(y))
    ic = rank_ic_columns(X, y)
    suspects = leakage_suspects(pd.DataFrame({"feature": features, "ic": ic}), threshold)
    return suspects.assign(
        reason=[
            f"in-sample |rank IC| {abs(v):.3f} > {threshold:.3f}: likely computed after entry"
            for v in suspects["ic"]
        ]
    )
