"""Leakage guard, second line: features that predict the label too well to be real.

The first line is in schema.py: outcome columns (exit price, pnl, holding period, ...) can never be
features. A feature computed after entry can still leak under another name; an in-sample |rank IC|
with the realized return far above what entry-time signals show (daily-trade ICs of 0.02-0.10 are
already strong) is the evidence. Such a feature is quarantined: left out of the run's model (it
would otherwise take all the credit and bury every honest feature), stored in `excluded_features`
with its IC, and reported by the failing `no_leaky_features` check. The screen runs on each
walk-forward fold's training trades (a fold model holds out what its own training trades flag)
and on all trades for the final model, whose flags are the stored ones; the feature keeps a row in
the importance history, marked `quarantined`, so no series has a hole. The threshold is
max(max_abs_ic, 5 / sqrt(n)), n the distinct entry days: 0.3 by default, and never within five
standard errors of zero (an IC over n independent days has a standard error of about 1 / sqrt(n)).
Five, because over the 42 quarters of the embedded data (2013-2024) the largest honest
within-strategy |IC| was 4.1 / sqrt(days) (0.58 over 50 days): slowly moving features read on few
symbols give ICs far from zero in one quarter. A leak of the return itself (IC near 1) is far
above; a partial leak below the threshold is left to the out-of-sample plausibility check.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from persistence_pipeline.core.metrics import rank_ic_columns

LEAKAGE_STANDARD_ERRORS = 5.0


def leakage_threshold(max_abs_ic: float, n: int) -> float:
    """The |IC| above which a feature is quarantined, for n independent observations (entry days)."""
    return max(max_abs_ic, LEAKAGE_STANDARD_ERRORS / np.sqrt(max(n, 1)))


def quarantine(
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    max_abs_ic: float,
    strategy: np.ndarray | None = None,
    entry_day: np.ndarray | None = None,
) -> pd.DataFrame:
    """The features to leave out of the model, with the in-sample IC that gave them away (the
    strongest over the strategies) and the reason. The threshold of a strategy counts its distinct
    entry days, not its trades, when `entry_day` is given: trades entered the same day share the
    market's move and their features, so they are not independent evidence (on the embedded data an
    honest 60-day momentum reached IC 0.33 over 152 momentum trades)."""
    strategy = (
        np.full(len(y), "all", dtype=object) if strategy is None else np.asarray(strategy, dtype=object)
    )
    found: dict[str, tuple[float, str]] = {}
    for name in sorted(set(strategy)):
        rows = strategy == name
        n = int(rows.sum()) if entry_day is None else len(np.unique(np.asarray(entry_day)[rows]))
        threshold = leakage_threshold(max_abs_ic, n)
        ic = rank_ic_columns(X[rows], y[rows])
        unit = "trades" if entry_day is None else "entry days"
        for feature, value in zip(features, ic, strict=True):
            if abs(value) > threshold and abs(value) > abs(found.get(feature, (0.0, ""))[0]):
                where = "" if name == "all" else f" within strategy {name!r} ({n} {unit})"
                reason = f"in-sample |rank IC| {abs(value):.3f} > {threshold:.3f}{where}"
                found[feature] = (float(value), reason + ": likely computed after entry")
    table = pd.DataFrame(
        [{"feature": f, "ic": ic, "reason": reason} for f, (ic, reason) in found.items()],
        columns=["feature", "ic", "reason"],
    )
    return table.sort_values("ic", key=np.abs, ascending=False, kind="stable").reset_index(drop=True)


def leak_screen(
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    max_abs_ic: float,
    strategy: np.ndarray,
    entry_day: np.ndarray,
) -> Callable[[np.ndarray], np.ndarray]:
    """training positions -> mask of the features `quarantine` flags on those trades alone: what
    the walk-forward runs on each fold's training trades, so no test label decides what a fold
    model sees (core/model.py)."""

    def screen(rows: np.ndarray) -> np.ndarray:
        flagged = quarantine(X[rows], y[rows], features, max_abs_ic, strategy[rows], entry_day[rows])
        return np.isin(np.asarray(features, dtype=object), flagged["feature"].to_numpy(dtype=object))

    return screen


def implausible_performance(
    rank_ic: float, hit_rate: float, importance: pd.DataFrame, max_rank_ic: float, max_hit_rate: float
) -> str | None:
    """Why the run's out-of-sample performance is beyond what entry-time trade features plausibly
    reach, naming the three features with the largest OOS permutation importance (`importance`:
    feature, perm_importance) as the likely leak; None when it is plausible.

    The per-feature screen cannot see a leak that no single feature shows: a post-exit statistic
    times a random +-1 flag has a univariate IC near 0, yet a tree multiplies them back (OOS rank IC
    0.98, hit rate 0.96 in the planted case). Real trade-level OOS rank ICs are a few hundredths to a
    few tenths; the defaults (rank IC 0.5, hit rate 0.8) leave room for strong honest signals."""
    problems = []
    if np.isfinite(rank_ic) and rank_ic > max_rank_ic:
        problems.append(f"OOS rank IC {rank_ic:.3f} > {max_rank_ic}")
    if np.isfinite(hit_rate) and hit_rate > max_hit_rate:
        problems.append(f"OOS hit rate {hit_rate:.3f} > {max_hit_rate}")
    if not problems:
        return None
    top = importance.sort_values(["perm_importance", "feature"], ascending=[False, True]).head(3)
    named = ", ".join(f"{f} ({v:.3g})" for f, v in zip(top["feature"], top["perm_importance"], strict=True))
    return (
        " and ".join(problems)
        + ": more than entry-time features plausibly predict; likely leak (largest OOS permutation "
        + f"importance): {named}"
    )
