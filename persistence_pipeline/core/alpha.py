"""Which features carry persistent alpha across runs, and which decay.

Per feature, over the m runs with a finite IC for it (in time order), from the per-run univariate IC:

    ic_mean, ic_std            mean and sample std of the run ICs
    icir                       ic_mean / ic_std
    n_effective_runs           1 + (m - 1) * (1 - overlap), overlap = mean Jaccard overlap of consecutive
                               runs' training trades: runs over overlapping windows are not independent
                               evidence (30 nightly 90-day windows are worth about one)
    ic_t_stat                  icir * sqrt(n_effective_runs)
    ic_p_value                 two-sided p-value of ic_t_stat, max(n_effective_runs - 1, 1) degrees of freedom
    ic_q_value                 Benjamini-Hochberg adjustment of ic_p_value over the features (many
                               features are tested at once)
    significance               1 - ic_q_value
    ic_sign_consistency        share of runs whose IC has the sign of ic_mean
    importance_share           mean over ALL runs as of the range end of the feature's share of the run's
                               total mean |SHAP| (a run without the feature counts 0)
    importance_rel             importance_share / the largest importance_share among features seen in at
                               least two runs, at most 1
    stability                  the feature's top-k frequency (feature_stability, over all runs)
    persistence                1, unless the feature is `decaying` (below): then the IC trend's fitted
                               value at the latest run over the mean sign-aligned IC, clipped to
                               [0, 1], near 0 for an IC that has faded

    alpha_score                significance * persistence
                               * (ic_sign_consistency + stability + importance_rel) / 3, in [0, 1]

A feature scores high only when its IC is reliably different from zero, has not faded, AND it keeps
its sign, stays in the top k and carries a large share of the model's attributions.

Decay: ic_slope is the least-squares slope of the sign-aligned IC (IC * sign(ic_mean)) on the run
index 0..m-1 (ic_slope_p_value: one-sided p-value of a negative slope). When the slope is negative
and the fitted aligned IC of the first run a is positive, half_life_runs = a / (2 |slope|): the
number of runs after the first for the fitted IC to halve. `decaying` marks a feature with a
half-life whose negative slope is significant (ic_slope_p_value < 0.01).
perf_corr is the Spearman correlation, across runs, of the feature's importance share with the run's
out-of-sample rank IC. Figures that need two runs (three for slope and perf_corr) are None.

feature_run_statistics builds one feature's row (ic_statistics, decay_trend, performance_correlation);
feature_alpha then adds the columns that compare features (benjamini_hochberg, relative_importance,
alpha_scores) and sorts by alpha score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

# One decay test per feature and run: a strict level keeps chance decays among ~20 features rare.
DECAY_P_VALUE = 0.01

# The per-feature figures that need two runs (three for the trend ones): None until then.
_MULTI_RUN_COLUMNS = [
    "ic_std",
    "icir",
    "n_effective_runs",
    "ic_t_stat",
    "ic_p_value",
    "ic_sign_consistency",
    "ic_slope",
    "ic_slope_p_value",
    "half_life_runs",
    "perf_corr",
]


def effective_runs(m: int, overlap: float) -> float:
    """How many independent runs m runs are worth when consecutive runs share `overlap` of their trades."""
    return 1.0 + (m - 1) * (1.0 - min(max(overlap, 0.0), 1.0))


def importance_shares(history: pd.DataFrame, run_order: list[str]) -> pd.DataFrame:
    """The history sorted by feature then run order (`order` column), with each row's `share` of its
    run's total mean |SHAP| (0 in a run whose total is 0)."""
    position = {run_key: i for i, run_key in enumerate(run_order)}
    history = history.assign(order=history["run_key"].map(position)).sort_values(["feature", "order"])
    totals = history.groupby("run_key")["shap_mean_abs"].transform("sum")
    history["share"] = np.where(totals > 0, history["shap_mean_abs"] / totals.where(totals > 0, 1.0), 0.0)
    return history


def ic_statistics(ic: np.ndarray, overlap: float) -> dict[str, float | None]:
    """Dispersion and significance of a feature's run ICs (at least two): ic_std, icir,
    n_effective_runs, ic_t_stat, ic_p_value and ic_sign_consistency."""
    m = len(ic)
    std = float(ic.std(ddof=1))
    m_eff = effective_runs(m, overlap)
    t_stat = float(ic.mean() / (std / np.sqrt(m_eff))) if std > 0 else None
    p_value = float(2 * stats.t.sf(abs(t_stat), df=max(m_eff - 1, 1.0))) if t_stat is not None else 1.0
    sign = np.sign(ic.mean())
    return {
        "ic_std": std,
        "icir": float(ic.mean() / std) if std > 0 else None,
        "n_effective_runs": m_eff,
        "ic_t_stat": t_stat,
        "ic_p_value": p_value,
        "ic_sign_consistency": float((np.sign(ic) == sign).mean()) if sign != 0 else 0.0,
    }


def decay_trend(ic: np.ndarray) -> dict[str, float | None]:
    """The trend of a feature's sign-aligned run ICs (at least three): ic_slope, ic_slope_p_value,
    half_life_runs and the persistence it implies."""
    m = len(ic)
    aligned = ic * (np.sign(ic.mean()) or 1.0)
    trend = stats.linregress(np.arange(m, dtype="float64"), aligned)
    start, slope = float(trend.intercept), float(trend.slope)
    p_value = float(trend.pvalue / 2 if slope < 0 else 1 - trend.pvalue / 2)
    decaying = slope < 0 and start > 0 and p_value < DECAY_P_VALUE
    latest = start + slope * (m - 1)
    return {
        "persistence": float(np.clip(latest / aligned.mean(), 0.0, 1.0)) if decaying else 1.0,
        "ic_slope": slope,
        "ic_slope_p_value": p_value,
        "half_life_runs": float(start / (2 * -slope)) if slope < 0 and start > 0 else None,
    }


def performance_correlation(share: np.ndarray, performance: np.ndarray) -> float | None:
    """Spearman correlation of a feature's importance share with the runs' OOS rank IC (None when
    either is constant)."""
    if np.ptp(share) > 0 and np.ptp(performance) > 0:
        return float(stats.spearmanr(share, performance).statistic)
    return None


def feature_run_statistics(
    feature: str, runs: pd.DataFrame, n_runs_total: int, run_rank_ic: pd.Series, overlap: float
) -> dict[str, object]:
    """One feature's row from its history rows (in run order, with `share`): the figures its runs
    with a finite IC support, None for the others."""
    runs = runs[np.isfinite(runs["ic"].to_numpy(dtype="float64"))]
    ic = runs["ic"].to_numpy(dtype="float64")
    share = runs["share"].to_numpy(dtype="float64")
    m = len(ic)
    row: dict[str, object] = {
        "feature": feature,
        "n_runs": m,
        "ic_mean": float(ic.mean()) if m else None,
        "importance_share": float(share.sum() / max(n_runs_total, 1)),
        **dict.fromkeys(_MULTI_RUN_COLUMNS),
        "persistence": 1.0,
    }
    if m >= 2:
        row.update(ic_statistics(ic, overlap))
    if m >= 3:
        performance = runs["run_key"].map(run_rank_ic).to_numpy(dtype="float64")
        row.update(decay_trend(ic))
        row["perf_corr"] = performance_correlation(share, performance)
    return row


def benjamini_hochberg(p_values: pd.Series) -> pd.Series:
    """Benjamini-Hochberg q-values of the non-null p-values (NaN where there is none)."""
    tested = p_values.notna()
    q_values = pd.Series(np.nan, index=p_values.index)
    if tested.any():
        q_values[tested] = stats.false_discovery_control(p_values[tested].astype("float64"), method="bh")
    return q_values


def relative_importance(table: pd.DataFrame) -> pd.Series | float:
    """importance_share over the largest among features seen in at least two runs, capped at 1."""
    seen_twice = table.loc[table["n_runs"] >= 2, "importance_share"]
    largest = seen_twice.max() if len(seen_twice) else table["importance_share"].max()
    return (table["importance_share"] / largest).clip(upper=1.0) if largest > 0 else 0.0


def alpha_scores(table: pd.DataFrame) -> pd.Series:
    """significance * persistence * (ic_sign_consistency + stability + importance_rel) / 3."""
    components = (
        table["ic_sign_consistency"].astype("float64") + table["stability"] + table["importance_rel"]
    ) / 3
    return table["significance"].astype("float64") * table["persistence"] * components


def feature_alpha(
    history: pd.DataFrame,
    run_order: list[str],
    run_rank_ic: pd.Series,
    topk_frequency: pd.Series,
    overlap: float = 0.0,
) -> pd.DataFrame:
    """One row per feature, best alpha score first; see the module docstring for every column."""
    history = importance_shares(history, run_order)
    table = pd.DataFrame(
        [
            feature_run_statistics(feature, runs, len(run_order), run_rank_ic, overlap)
            for feature, runs in history.groupby("feature", sort=True)
        ]
    )
    table["ic_q_value"] = benjamini_hochberg(table["ic_p_value"])
    table["significance"] = 1.0 - table["ic_q_value"]
    table["importance_rel"] = relative_importance(table)
    table["stability"] = table["feature"].map(topk_frequency).astype("float64")
    table["alpha_score"] = alpha_scores(table)
    table["decaying"] = table["half_life_runs"].notna() & (
        table["ic_slope_p_value"].astype("float64") < DECAY_P_VALUE
    )
    return table.sort_values(
        ["alpha_score", "feature"], ascending=[False, True], na_position="last", kind="stable"
    ).reset_index(drop=True)


def alpha_note(n_runs: int, overlap: float, as_of: object) -> str:
    """How much independent evidence the alpha figures rest on, in words."""
    if n_runs < 2:
        return f"{n_runs} run: IC dispersion, t-stat and alpha score need at least 2 runs (NULL until then)"
    return (
        f"{n_runs} runs as of {as_of}, worth {effective_runs(n_runs, overlap):.1f} independent runs "
        f"(consecutive runs share {overlap:.0%} of their training trades)"
    )
