"""Which features carry persistent alpha, and which decay: the evidence of `core/evidence.py` (from
the distinct trades, per period) with the run-level figures a quant reads beside it.

Per feature, from the IC series of the distinct trades stored as of the range end (evidence.py has
the formulas and their justification):

    n_periods, n_trades        complete periods with an IC, and the trades in them
    ic_mean, ic_std, icir      mean and sd of the period ICs, and their ratio (per period)
    hac_lag, ic_hac_se         the Newey-West lag and standard error of ic_mean
    ic_t_stat, ic_p_value      ic_mean / ic_hac_se, two-sided p
    ic_ci_low, ic_ci_high      95% interval of the mean IC
    n_effective_periods        ic_std^2 / ic_hac_se^2: how many independent periods the series is worth
    ic_q_value, significance   Benjamini-Hochberg q over the features, and 1 - q
    ic_sign_consistency        share of periods whose IC has the sign of ic_mean
    ic_slope, ic_slope_se,     trend of the sign-aligned IC per year, its Newey-West standard error
    ic_slope_p_value           and one-sided p-value of a decline
    decaying                   a significant decline (p < decay_level) from a positive start
    ic_now                     the fitted IC at the latest period (slope shrunk by its evidence)
    persistence                ic_now over the mean, in [0, 1], continuous
    half_life_days             days from the first period for the fitted IC to halve (decaying only)
    effect                     1 - exp(-d / reference_ic), d the distance of the interval from zero
    alpha_score                significance * persistence * effect, in [0, 1]

The alpha monitor's columns from the same series (core/monitor.py): n_recent_periods, ic_recent,
ic_before, ic_change, ic_change_t, ic_change_p_value, monitor_score, monitored, ic_change_q_value,
broken_down.

Beside it, from the runs stored as of the range end (they share trades when their windows overlap,
so none of these enters the score):

    n_runs                     runs whose importance history has the feature
    n_effective_runs           the days the runs cover together over the mean run length: how many
                               non-overlapping runs they are worth (30 nightly 90-day runs: 1.3)
    half_life_runs             half_life_days in runs of the stored cadence (the median step between
                               consecutive runs' ends; one run: its length)
    importance_share           mean over ALL runs of the feature's share of the run's total mean
                               |SHAP| (a run without the feature counts 0)
    importance_rel             importance_share over the largest among features seen in two runs
    stability                  the feature's top-k frequency (feature_stability)
    perf_corr                  Spearman correlation across runs of the importance share with the
                               run's out-of-sample rank IC (None below three runs)
    leak_runs, suspected_leak  runs read that quarantined the feature or named it in a failed
                               out-of-sample check; a suspected leak has no alpha_score
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from persistence_pipeline.core.stability import effective_runs


def importance_shares(history: pd.DataFrame, run_order: list[str]) -> pd.DataFrame:
    """The history sorted by feature then run order (`order` column), with each row's `share` of its
    run's total mean |SHAP| (0 in a run whose total is 0)."""
    position = {run_key: i for i, run_key in enumerate(run_order)}
    history = history.assign(order=history["run_key"].map(position)).sort_values(["feature", "order"])
    totals = history.groupby("run_key")["shap_mean_abs"].transform("sum")
    history["share"] = np.where(totals > 0, history["shap_mean_abs"] / totals.where(totals > 0, 1.0), 0.0)
    return history


def performance_correlation(share: np.ndarray, performance: np.ndarray) -> float | None:
    """Spearman correlation of a feature's importance share with the runs' OOS rank IC (None below
    three runs or when either is constant)."""
    if len(share) >= 3 and np.ptp(share) > 0 and np.ptp(performance) > 0:
        return float(stats.spearmanr(share, performance).statistic)
    return None


def run_figures(history: pd.DataFrame, run_order: list[str], run_rank_ic: pd.Series) -> pd.DataFrame:
    """Per feature from its importance history: n_runs, importance_share, perf_corr."""
    history = importance_shares(history, run_order)
    rows = []
    for feature, runs in history.groupby("feature", sort=True):
        share = runs["share"].to_numpy(dtype="float64")
        performance = runs["run_key"].map(run_rank_ic).to_numpy(dtype="float64")
        rows.append(
            {
                "feature": feature,
                "n_runs": len(runs),
                "importance_share": float(share.sum() / max(len(run_order), 1)),
                "perf_corr": performance_correlation(share, performance),
            }
        )
    return pd.DataFrame(rows, columns=["feature", "n_runs", "importance_share", "perf_corr"])


def relative_importance(table: pd.DataFrame) -> pd.Series | float:
    """importance_share over the largest among features seen in at least two runs, capped at 1."""
    seen_twice = table.loc[table["n_runs"] >= 2, "importance_share"]
    largest = seen_twice.max() if len(seen_twice) else table["importance_share"].max()
    return (table["importance_share"] / largest).clip(upper=1.0) if largest > 0 else 0.0


def run_cadence_days(ranges: pd.DataFrame) -> float | None:
    """The median step in days between consecutive runs' ends; one run: its length."""
    ends = pd.to_datetime(ranges["range_end"]).drop_duplicates().sort_values()
    if len(ends) >= 2:
        return float(ends.diff().dt.days.dropna().median())
    if len(ranges):
        first = ranges.iloc[0]
        return float((pd.Timestamp(first["range_end"]) - pd.Timestamp(first["range_start"])).days + 1)
    return None


def alpha_table(
    evidence: pd.DataFrame,
    history: pd.DataFrame,
    ranges: pd.DataFrame,
    run_rank_ic: pd.Series,
    topk_frequency: pd.Series,
) -> pd.DataFrame:
    """One row per feature of the importance history, best alpha score first; `evidence` is
    evidence.feature_evidence over those features (with monitor.alpha_monitor's columns), `ranges`
    the runs (run_key, range_start, range_end) in time order. See the module docstring for every column."""
    run_order = ranges["run_key"].tolist()
    table = run_figures(history, run_order, run_rank_ic).merge(evidence, on="feature", how="left")
    table["importance_rel"] = relative_importance(table)
    table["stability"] = table["feature"].map(topk_frequency).astype("float64")
    table["n_effective_runs"] = effective_runs(ranges)
    cadence = run_cadence_days(ranges)
    table["half_life_runs"] = table["half_life_days"].astype("float64") / cadence if cadence else None
    for flag in ["decaying", "monitored", "broken_down"]:
        if flag in table:
            table[flag] = table[flag].astype("boolean").fillna(False).astype(bool)
    return table.sort_values(
        ["alpha_score", "feature"], ascending=[False, True], na_position="last", kind="stable"
    ).reset_index(drop=True)


def with_leak_flags(table: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The alpha table with `leak_runs` (how many of the runs read quarantined the feature or named
    it in a failed out-of-sample check: `history` holds every run's rows, quarantined ones included)
    and `suspected_leak` (leak_runs > 0). A suspected leak keeps its evidence but gets no alpha
    score: a leak's IC is the strongest of all, and must never be read as the top alpha."""
    flagged = history["quarantined"].astype("boolean").fillna(False)
    if "suspect" in history.columns:
        flagged = flagged | history["suspect"].astype("boolean").fillna(False)
    runs = history[flagged.to_numpy(dtype=bool)].groupby("feature")["run_key"].nunique()
    table = table.assign(leak_runs=table["feature"].map(runs).fillna(0).astype("int64"))
    table["suspected_leak"] = table["leak_runs"] > 0
    table["alpha_score"] = table["alpha_score"].where(~table["suspected_leak"])
    return table.sort_values(
        ["alpha_score", "feature"], ascending=[False, True], na_position="last", kind="stable"
    ).reset_index(drop=True)


def suspected_leaks_note(alpha: pd.DataFrame) -> str:
    """Which features are not scored because a run read quarantined them or named them in a failed
    out-of-sample check."""
    flagged = alpha[alpha["suspected_leak"].fillna(False).astype(bool)]
    names = ", ".join(
        f"{' '.join(str(f).split())} ({int(n)} run{'s' if int(n) != 1 else ''})"
        for f, n in zip(flagged["feature"], flagged["leak_runs"], strict=True)
    )
    return f"Not scored, suspected leaks: {names}."


def alpha_note(table: pd.DataFrame, n_runs: int, as_of: object) -> str:
    """What the alpha figures rest on, in words."""
    periods = int(table["n_periods"].max()) if len(table) and table["n_periods"].notna().any() else 0
    trades = int(table["n_trades"].max()) if len(table) and table["n_trades"].notna().any() else 0
    effective = table["n_effective_runs"].iloc[0] if len(table) else None
    worth = f", worth {effective:.1f} non-overlapping runs" if effective is not None else ""
    return (
        f"as of {as_of}: {trades} distinct trades in {periods} complete periods "
        f"(evidence per period, whatever the runs); {n_runs} runs stored{worth}"
    )
