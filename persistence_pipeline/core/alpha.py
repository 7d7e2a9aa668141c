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
                               least two runs
    stability                  the feature's top-k frequency (feature_stability, over all runs)
    persistence                1, unless the feature is `decaying` (below): then the IC trend's fitted
                               value at the latest run over the mean sign-aligned IC, clipped to
                               [0, 1], near 0 for an IC that has faded

    alpha_score = significance * persistence * (ic_sign_consistency + stability + importance_rel) / 3   in [0, 1]

A feature scores high only when its IC is reliably different from zero, has not faded, AND it keeps
its sign, stays in the top k and carries a large share of the model's attributions.

Decay: ic_slope is the least-squares slope of the sign-aligned IC (IC * sign(ic_mean)) on the run
index 0..m-1 (ic_slope_p_value: one-sided p-value of a negative slope). When the slope is negative
and the fitted aligned IC of the first run a is positive, half_life_runs = a / (2 |slope|): the
number of runs after the first for the fitted IC to halve. `decaying` marks a feature with a
half-life whose negative slope is significant (ic_slope_p_value < 0.01).
perf_corr is the Spearman correlation, across runs, of the feature's importance share with the run's
out-of-sample rank IC. Figures that need two runs (three for slope and perf_corr) are None.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

# One decay test per feature and run: a strict level keeps chance decays among ~20 features rare.
DECAY_P_VALUE = 0.01


def effective_runs(m: int, overlap: float) -> float:
    """How many independent runs m runs are worth when consecutive runs share `overlap` of their trades."""
    return 1.0 + (m - 1) * (1.0 - min(max(overlap, 0.0), 1.0))


def feature_alpha(
    history: pd.DataFrame,
    run_order: list[str],
    run_rank_ic: pd.Series,
    topk_frequency: pd.Series,
    overlap: float = 0.0,
) -> pd.DataFrame:
    """One row per feature; see the module docstring for every column."""
    position = {run_key: i for i, run_key in enumerate(run_order)}
    history = history.assign(order=history["run_key"].map(position)).sort_values(["feature", "order"])
    totals = history.groupby("run_key")["shap_mean_abs"].transform("sum")
    history["share"] = np.where(totals > 0, history["shap_mean_abs"] / totals.where(totals > 0, 1.0), 0.0)
    rows = []
    for feature, runs in history.groupby("feature", sort=True):
        runs = runs[np.isfinite(runs["ic"].to_numpy(dtype="float64"))]
        ic = runs["ic"].to_numpy(dtype="float64")
        share = runs["share"].to_numpy(dtype="float64")
        m = len(ic)
        row = {
            "feature": feature,
            "n_runs": m,
            "ic_mean": float(ic.mean()) if m else None,
            "importance_share": float(share.sum() / max(len(run_order), 1)),
        }
        row.update(
            dict.fromkeys(
                [
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
            )
        )
        row["persistence"] = 1.0
        if m >= 2:
            std = float(ic.std(ddof=1))
            m_eff = effective_runs(m, overlap)
            t_stat = float(ic.mean() / (std / np.sqrt(m_eff))) if std > 0 else None
            sign = np.sign(ic.mean())
            row.update(
                ic_std=std,
                icir=float(ic.mean() / std) if std > 0 else None,
                n_effective_runs=m_eff,
                ic_t_stat=t_stat,
                ic_p_value=float(2 * stats.t.sf(abs(t_stat), df=max(m_eff - 1, 1.0)))
                if t_stat is not None
                else 1.0,
                ic_sign_consistency=float((np.sign(ic) == sign).mean()) if sign != 0 else 0.0,
            )
        if m >= 3:
            aligned = ic * (np.sign(ic.mean()) or 1.0)
            trend = stats.linregress(np.arange(m, dtype="float64"), aligned)
            start, slope = float(trend.intercept), float(trend.slope)
            performance = runs["run_key"].map(run_rank_ic).to_numpy(dtype="float64")
            p_value = float(trend.pvalue / 2 if slope < 0 else 1 - trend.pvalue / 2)
            decaying = slope < 0 and start > 0 and p_value < DECAY_P_VALUE
            latest = start + slope * (m - 1)
            row.update(
                persistence=float(np.clip(latest / aligned.mean(), 0.0, 1.0)) if decaying else 1.0,
                ic_slope=slope,
                ic_slope_p_value=p_value,
                half_life_runs=float(start / (2 * -slope)) if slope < 0 and start > 0 else None,
                perf_corr=float(stats.spearmanr(share, performance).statistic)
                if np.ptp(share) > 0 and np.ptp(performance) > 0
                else None,
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    tested = table["ic_p_value"].notna()
    table["ic_q_value"] = np.nan
    if tested.any():
        table.loc[tested, "ic_q_value"] = stats.false_discovery_control(
            table.loc[tested, "ic_p_value"].astype("float64"), method="bh"
        )
    table["significance"] = 1.0 - table["ic_q_value"]
    seen_twice = table.loc[table["n_runs"] >= 2, "importance_share"]
    largest = seen_twice.max() if len(seen_twice) else table["importance_share"].max()
    table["importance_rel"] = (table["importance_share"] / largest).clip(upper=1.0) if largest > 0 else 0.0
    table["stability"] = table["feature"].map(topk_frequency).astype("float64")
    components = (
        table["ic_sign_consistency"].astype("float64") + table["stability"] + table["importance_rel"]
    ) / 3
    table["alpha_score"] = table["significance"].astype("float64") * table["persistence"] * components
    table["decaying"] = table["half_life_runs"].notna() & (
        table["ic_slope_p_value"].astype("float64") < DECAY_P_VALUE
    )
    return table.sort_values(
        ["alpha_score", "feature"], ascending=[False, True], na_position="last", kind="stable"
    ).reset_index(drop=True)
