"""Leakage guard, second line: features that predict the label too well to be real.

The first line is in schema.py: outcome columns (exit price, pnl, holding period, ...) can never be
features. A feature computed after entry can still leak under another name; an in-sample |rank IC|
with the realized return far above what entry-time signals show (daily-trade ICs of 0.02-0.10 are
already strong) is the evidence, reported by the `no_leaky_features` check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def leakage_suspects(importance: pd.DataFrame, max_abs_ic: float) -> pd.DataFrame:
    """Features whose in-sample |rank IC| with the label exceeds what a real entry-time signal shows."""
    suspects = importance[importance["ic"].abs() > max_abs_ic]
    return suspects[["feature", "ic"]].sort_values("ic", key=np.abs, ascending=False).reset_index(drop=True)
