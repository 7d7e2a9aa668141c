"""Leakage guard, second line: features that predict the label too well to be real.

The first line is in schema.py: outcome columns (exit price, pnl, holding period, ...) can never be
features. A feature computed after entry can still leak under another name; an in-sample |rank IC|
with the realized return far above what entry-time signals show (daily-trade ICs of 0.02-0.10 are
already strong) is the evidence. Such a feature is quarantined: left out of the run's model (it
would otherwise take all the credit and bury every honest feature), stored in `excluded_features`
with its IC, and reported by the failing `no_leaky_features` check. The threshold is high enough
(default 0.3) that the selection cannot flatter the out-of-sample metrics of honest features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from persistence_pipeline.core.metrics import rank_ic_columns


def leakage_suspects(importance: pd.DataFrame, max_abs_ic: float) -> pd.DataFrame:
    """Features whose in-sample |rank IC| with the label exceeds what a real entry-time signal shows."""
    suspects = importance[importance["ic"].abs() > max_abs_ic]
    return suspects[["feature", "ic"]].sort_values("ic", key=np.abs, ascending=False).reset_index(drop=True)


def quarantine(X: np.ndarray, y: np.ndarray, features: list[str], max_abs_ic: float) -> pd.DataFrame:
    """The features to leave out of the model, with their in-sample IC and the reason."""
    ic = rank_ic_columns(X, y)
    suspects = leakage_suspects(pd.DataFrame({"feature": features, "ic": ic}), max_abs_ic)
    return suspects.assign(reason=[f"in-sample |rank IC| {abs(v):.3f} > {max_abs_ic}: likely computed after entry" for v in suspects["ic"]])
