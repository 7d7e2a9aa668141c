"""How stable feature importance is across runs.

Input is the long importance history (one row per run and feature, runs in time order).

Runs over overlapping windows are not independent rankings: 30 nightly runs of a 90-day window
share most of their trades, and their rankings agree because of it (Kendall's W and the Spearman
figures over them mostly measure shared trades). Every figure here is therefore computed over the
runs whose windows do not overlap (`non_overlapping_runs`: from the newest run back, each run that
ends before the last kept one starts); the summary states how many runs are stored, how many were
compared, how many non-overlapping runs the stored ones are worth, and the mean trade overlap of
consecutive stored runs. With fewer than two compared runs there is nothing to compare, and every
cross-run figure is None.

- Ranks are by mean |SHAP| within each run, tied features sharing their average rank (a tree's
  never-used features all have 0; the stored `rank` breaks ties by name, for display only).
- Kendall's W (coefficient of concordance) of the importance ranks, runs as raters and features as
  objects, corrected for ties: W = 12 S / (m^2 (n^3 - n) - m sum T), S the squared deviations of
  the features' rank sums, T = sum of t^3 - t over a run's groups of t tied features.
- Spearman correlation of two runs' ranks: mean over all pairs, and of the latest two runs.
- Nogueira, Sechidis & Brown (JMLR 2018) stability of top-k selection, with its asymptotic variance
  (their Definition 4 and Corollary 9) and a 95% interval clipped to [-1, 1]. Their normal interval
  covered the true value only 63% of the time at 3 runs and 73% at 5 (simulated top-5 selections
  of 15 features); with Student's t on M - 1 degrees of freedom it covers 87% at 5 runs, 91% at 10
  and 93% at 20, so that is the interval used, and below MIN_RUNS_FOR_INTERVAL = 5 compared runs it
  is None.
- Per feature: mean and std of its rank, how often it is in the top k, sign consistency of its
  coefficient (share of runs agreeing with the majority sign; IC sign for trees), and the
  coefficient of variation of its mean |SHAP|.

The cross-run figures use the features present in every run (re-ranked among themselves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from persistence_pipeline.core.metrics import average_ranks

MIN_RUNS_FOR_INTERVAL = 5


@dataclass(frozen=True)
class StabilitySummary:
    n_runs: int  # runs stored as of the range end
    n_independent_runs: int  # the non-overlapping ones the figures compare
    n_effective_runs: float | None  # how many non-overlapping runs the stored ones are worth
    k: int
    n_features: int
    kendall_w: float | None
    mean_pairwise_spearman: float | None
    latest_spearman: float | None
    nogueira_phi: float | None
    nogueira_ci_low: float | None
    nogueira_ci_high: float | None
    mean_trade_overlap: float | None
    note: str


def average_importance_ranks(history: pd.DataFrame) -> pd.Series:
    """Each history row's rank within its run by mean |SHAP| (1 = largest), ties sharing their
    average rank: a tree gives every feature it never splits on exactly 0, and breaking those ties by
    name (as the stored `rank` does, for display) would give them identical ranks in every run and
    inflate every agreement figure (Kendall's W 0.79 -> 0.90 in a simulation)."""
    return history.groupby("run_key")["shap_mean_abs"].rank(ascending=False, method="average")


def rank_matrix(history: pd.DataFrame, run_order: list[str]) -> pd.DataFrame:
    """Runs x features of average importance ranks (by mean |SHAP|, ties averaged) over the features
    every run has, re-ranked 1..n among them."""
    wide = history.pivot(index="run_key", columns="feature", values="shap_mean_abs").reindex(run_order)
    common = wide.dropna(axis=1)
    return pd.DataFrame(
        average_ranks(-common.to_numpy(dtype="float64").T).T, index=common.index, columns=common.columns
    )


def kendall_w(ranks: np.ndarray) -> float:
    """Kendall's W of an m x n matrix of ranks (m raters, n objects), corrected for ties:
    W = 12 S / (m^2 (n^3 - n) - m sum T), S the squared deviations of the objects' rank sums and T
    the sum of t^3 - t over each rater's groups of t tied ranks (equal to Friedman's tie-corrected
    chi-square / (m (n - 1)))."""
    m, n = ranks.shape
    sums = ranks.sum(axis=0)
    s = ((sums - sums.mean()) ** 2).sum()
    ties = sum(
        float(((counts**3) - counts).sum())
        for counts in (np.unique(row, return_counts=True)[1] for row in ranks)
    )
    denominator = m**2 * (n**3 - n) - m * ties
    return float(12.0 * s / denominator) if denominator > 0 else float("nan")


def pairwise_spearman(ranks: np.ndarray) -> np.ndarray:
    """Spearman correlations of every pair of rows of a rank matrix (upper triangle, row-major)."""
    centered = ranks - ranks.mean(axis=1, keepdims=True)
    norms = np.sqrt((centered**2).sum(axis=1))
    corr = (centered @ centered.T) / np.outer(norms, norms)
    upper = np.triu_indices(len(ranks), k=1)
    return corr[upper]


def non_overlapping_runs(ranges: pd.DataFrame) -> list[str]:
    """The run keys (oldest first) of runs whose [range_start, range_end] do not overlap: the newest
    run, then going back, each run that ends before the last kept one starts."""
    kept: list[str] = []
    start_of_kept = None
    for row in ranges.sort_values(["range_end", "range_start", "run_key"], ascending=False).itertuples():
        if start_of_kept is None or pd.Timestamp(row.range_end) < start_of_kept:
            kept.append(str(row.run_key))
            start_of_kept = pd.Timestamp(row.range_start)
    return kept[::-1]


def covered_days(ranges: pd.DataFrame) -> int:
    """Days covered by the union of the [range_start, range_end] date ranges."""
    days: set[pd.Timestamp] = set()
    for start, end in zip(ranges["range_start"], ranges["range_end"], strict=True):
        days.update(pd.date_range(start, end, freq="D"))
    return len(days)


def effective_runs(ranges: pd.DataFrame) -> float | None:
    """How many non-overlapping runs the runs are worth: the days they cover together over their
    mean length (one 90-day window stepping a day 30 times: 119 / 90 = 1.3)."""
    if ranges.empty:
        return None
    lengths = (pd.to_datetime(ranges["range_end"]) - pd.to_datetime(ranges["range_start"])).dt.days + 1
    return covered_days(ranges) / float(lengths.mean())


def nogueira_stability(selected: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float, float]:
    """Stability of a binary M x d selection matrix: (phi, variance, ci_low, ci_high), the interval
    from Student's t on M - 1 degrees of freedom, clipped to [-1, 1]."""
    Z = np.asarray(selected, dtype="float64")
    M, d = Z.shape
    p = Z.mean(axis=0)
    k_bar = p.sum()
    denominator = (k_bar / d) * (1 - k_bar / d)
    phi = 1 - (M / (M - 1)) * np.mean(p * (1 - p)) / denominator
    k = Z.sum(axis=1)
    phi_i = (
        (Z * p).mean(axis=1) - k * k_bar / d**2 + (phi / 2) * (2 * k * k_bar / d**2 - k / d - k_bar / d + 1)
    ) / denominator
    variance = 4 / M**2 * ((phi_i - phi_i.mean()) ** 2).sum()
    half_width = student_t.ppf(1 - alpha / 2, M - 1) * np.sqrt(variance)
    return float(phi), float(variance), float(max(phi - half_width, -1.0)), float(min(phi + half_width, 1.0))


def effective_k(k: int, n_features: int) -> int:
    """The top-k size actually used: at most n_features - 1 (a top k of every feature says nothing)."""
    return max(1, min(k, n_features - 1))


def quarantined_rows(history: pd.DataFrame) -> pd.Series:
    """Whether each history row is of a feature the leak screen kept out of that run's model (rows
    stored before the column existed count as not)."""
    if "quarantined" not in history:
        return pd.Series(False, index=history.index)
    return history["quarantined"].astype("boolean").fillna(False).astype(bool)


def per_feature_stability(history: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per feature: n_runs (runs whose model had it), rank_mean, rank_std, sign_consistency,
    importance_cv over those runs (None where it needs two), and topk_frequency over every run that
    could select it: all runs but those whose leak screen quarantined it (a run without the feature
    did not select it; a run that quarantined it could not)."""
    n_total = history["run_key"].nunique()
    held = quarantined_rows(history)
    n_quarantined = history[held].groupby("feature").size()
    history = history[~held]
    k = effective_k(k, history["feature"].nunique())
    rows = []
    history = history.assign(rank=average_importance_ranks(history))
    for feature, runs in history.groupby("feature", sort=True):
        n = len(runs)
        direction = runs["coef"] if runs["coef"].notna().all() else runs["ic"]
        signs = np.sign(direction.to_numpy(dtype="float64"))
        majority = max((signs > 0).sum(), (signs < 0).sum())
        shap_values = runs["shap_mean_abs"].to_numpy(dtype="float64")
        rows.append(
            {
                "feature": feature,
                "n_runs": n,
                "rank_mean": float(runs["rank"].mean()),
                "rank_std": float(runs["rank"].std(ddof=1)) if n > 1 else None,
                "topk_frequency": float(
                    (runs["rank"] <= k).sum() / (n_total - int(n_quarantined.get(feature, 0)))
                ),
                "sign_consistency": float(majority / n) if n > 1 else None,
                "importance_cv": float(shap_values.std(ddof=1) / shap_values.mean())
                if n > 1 and shap_values.mean() > 0
                else None,
            }
        )
    return pd.DataFrame(rows).sort_values(["rank_mean", "feature"], kind="stable").reset_index(drop=True)


def summarize_stability(
    history: pd.DataFrame,
    ranges: pd.DataFrame,
    k: int,
    mean_trade_overlap: float | None,
    n_effective_runs: float | None = None,
) -> StabilitySummary:
    """Cross-run stability of the importance ranking over the non-overlapping runs among `ranges`
    (run_key, range_start, range_end; None figures, with the reason, below two of them)."""
    compared = non_overlapping_runs(ranges)
    usable = history[history["run_key"].isin(compared) & ~quarantined_rows(history)]
    ranks = rank_matrix(usable, compared)
    m, n = ranks.shape
    k = effective_k(k, n)
    stored = len(ranges)
    overlap = ""
    if mean_trade_overlap is not None and mean_trade_overlap > 0:
        overlap = (
            f"; consecutive stored runs share {mean_trade_overlap:.0%} of their training trades, "
            f"so only {m} of the {stored} runs are compared"
        )
    if m < 2 or n < 2:
        reason = (
            f"{m} non-overlapping run(s) with {n} common feature(s): cross-run stability needs at "
            f"least 2 runs whose windows do not overlap and 2 features{overlap}"
        )
        return StabilitySummary(
            stored, m, n_effective_runs, k, n, None, None, None, None, None, None, mean_trade_overlap, reason
        )
    values = ranks.to_numpy()
    phi, _, low, high = nogueira_stability(values <= k)
    note = f"{m} non-overlapping runs of {stored} stored, {n} features common to them, top-{k} selection"
    if m < MIN_RUNS_FOR_INTERVAL:
        note += f"; the interval of the top-k stability needs {MIN_RUNS_FOR_INTERVAL} non-overlapping runs"
    interval = m >= MIN_RUNS_FOR_INTERVAL
    return StabilitySummary(
        n_runs=stored,
        n_independent_runs=m,
        n_effective_runs=n_effective_runs,
        k=k,
        n_features=n,
        kendall_w=kendall_w(values),
        mean_pairwise_spearman=float(pairwise_spearman(values).mean()),
        latest_spearman=float(pairwise_spearman(values[-2:])[0]),
        nogueira_phi=phi,
        nogueira_ci_low=low if interval else None,
        nogueira_ci_high=high if interval else None,
        mean_trade_overlap=mean_trade_overlap,
        note=note + overlap,
    )


def jaccard_overlap(n_a: np.ndarray, n_b: np.ndarray, n_both: np.ndarray) -> np.ndarray:
    """|A ∩ B| / |A ∪ B| from set sizes."""
    union = n_a + n_b - n_both
    return np.where(union > 0, n_both / np.maximum(union, 1), 0.0)


def mean_jaccard_overlap(counts: np.ndarray) -> float | None:
    """Mean Jaccard overlap over consecutive pairs of runs, from rows (|A|, |B|, |A ∩ B|); None
    without a pair."""
    if len(counts) == 0:
        return None
    return float(jaccard_overlap(counts[:, 0], counts[:, 1], counts[:, 2]).mean())
