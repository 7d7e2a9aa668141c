"""The alpha monitor: has a feature's IC broken down in the most recent periods?

After every run, for the features with the strongest IC, the monitor compares the IC of the last
`recent_periods` periods (8; weeks at the embedded data's density, longer for a sparse log: the
period adapts) of the IC series of core/evidence.py with the IC of every earlier period, and
raises an alert when the recent IC is significantly weaker. The series
are those of `feature_alpha` (complete periods of the distinct trades as of the range end), so the
monitor, like the evidence, does not depend on how the runs overlap. The recent window is the last
`recent_periods` calendar periods up to the series' last complete period (a period is complete once
every trade entered in it has exited, so it may end a week or two before the range end).

1. The test. Per feature, each period's IC is weighted by its trades (its variance is about
   1 / trades: a week with few trades says less), aligned to the sign of the trade-weighted mean IC
   over all periods (so "weaker" means toward zero or past it), and regressed on an intercept and a
   dummy of the recent periods by weighted least squares: the dummy's coefficient is the change of
   the trade-weighted mean IC, recent minus before (`ic_change`), tested with the corrected
   Newey-West error of core/evidence.py (same lag rule, the holding periods or 1.3 sqrt(T)), its
   autocovariances pooled over the whole series (`hac_coefficient(pooled=True)`: the sandwich would
   rest on the few recent residuals), and Satterthwaite degrees of freedom. `ic_change_p_value` is
   the one-sided p-value of a decline. This is the Chow test of a break at a known date; its null
   is a constant mean IC, so a slow decline is also flagged once enough weeks show it.

2. Which features. Among the features with at least `recent_periods` earlier periods and half as
   many recent ones, `monitored` are the `top_k` by `monitor_score` = |trade-weighted mean IC over
   all periods| x sqrt(its trades) (the evidence of an IC if trades were independent), and every
   feature whose mean IC is significant (`ic_q_value` < `evidence_level`, 5%). The union is what
   keeps a feature that breaks among many strong ones monitored: its overall mean falls a little with
   the break, enough to drop it from a top k of equals (so it was, in simulation, when the top k
   alone was monitored), but years of IC keep it significant. The score is computed without
   residuals (a t-statistic's error grows with the break itself), and it is not `alpha_score`, which
   falls as soon as a feature weakens. Neither ranks on the earlier periods alone: the features that
   looked best before would look worse now by regression to the mean, a false alarm on noise. Under a
   constant IC with independent Gaussian period ICs of variance 1 / trades, the weighted overall
   mean is independent of the weighted change and of the residuals, so the selection and the sign
   leave the test's level alone; measured in benchmarks/alpha_monitor.py.

3. The alert. `ic_change_q_value` is the Benjamini-Hochberg q-value over the monitored features;
   `broken_down` = a monitored feature with q < `level` (1% by default). When no monitored feature
   changed, the chance that one run raises any alert is at most about `level`; nightly runs re-test
   nearly the same periods, so over a year of runs false alarms add up (benchmarks/alpha_monitor.py
   gives the share of simulated years with one).

4. Its power. `ic_change_mde` is the smallest decline of the recent IC the test detects with 80%
   probability at `level` on this series ((t_(1 - level) + t_0.8) x its standard error, the
   evidence's `detectable`). `monitor_verdict`: 'broken down'; 'holding' when the data rule out a
   fall of the IC all the way to zero (an equivalence test: the one-sided 95% upper bound of the
   fall is below |ic_before|); 'cannot tell' otherwise; None for a feature not monitored. At a few
   trades a week the recent periods' IC is too noisy for any verdict but 'cannot tell'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from persistence_pipeline.core.evidence import (
    CANNOT_TELL,
    PeriodIC,
    benjamini_hochberg,
    detectable,
    hac_coefficient,
    newey_west_lag,
)


@dataclass(frozen=True)
class MonitorParams:
    recent_periods: int = 8
    level: float = 0.01
    top_k: int = 5
    evidence_level: float = 0.05  # also monitored: every feature whose mean IC has q below it

    def __post_init__(self) -> None:
        if self.recent_periods < 2:
            raise ValueError(f"recent_periods must be at least 2, not {self.recent_periods}")
        if not 0 < self.level < 1:
            raise ValueError(f"the monitor's level must be in (0, 1), not {self.level}")
        if self.top_k < 1:
            raise ValueError(f"the monitor needs top_k of at least 1, not {self.top_k}")

    @property
    def min_recent(self) -> int:
        """The fewest recent periods with an IC a feature needs to be monitored."""
        return math.ceil(self.recent_periods / 2)


MONITOR_COLUMNS = [
    "n_recent_periods",
    "ic_recent",
    "ic_before",
    "ic_change",
    "ic_change_t",
    "ic_change_p_value",
    "monitor_score",
    "monitored",
    "ic_change_q_value",
    "broken_down",
    "ic_change_mde",
    "monitor_verdict",
]


def recent_periods(index: pd.DatetimeIndex, params: MonitorParams, period_days: int) -> np.ndarray:
    """Which periods of the series are recent: those starting in the last `recent_periods` periods
    of the calendar up to the series' last period (a week without trades still counts as a week)."""
    if len(index) == 0:
        return np.zeros(0, dtype=bool)
    first_recent = index.max() - pd.Timedelta(days=period_days * (params.recent_periods - 1))
    return np.asarray(index >= first_recent)


def ic_change(
    ic: pd.Series, n_trades: pd.Series, recent: np.ndarray, holding: int, level: float
) -> dict[str, float | None]:
    """The test of one feature's IC series (periods without an IC dropped), each period weighted by
    its trades (module docstring, 1): trade-weighted means before and recent, the HAC test of the
    change of the aligned IC, and the selection score."""
    kept = (ic.notna() & (n_trades > 0)).to_numpy()
    values = ic.to_numpy(dtype="float64")[kept]
    n = n_trades.to_numpy(dtype="float64")[kept]
    dummy = recent[kept].astype("float64")
    overall = float(n @ values / n.sum())
    sign = 1.0 if overall >= 0 else -1.0
    root = np.sqrt(n)
    X = np.column_stack([root, root * dummy])
    test = hac_coefficient(values * sign * root, X, 1, newey_west_lag(len(values), holding), pooled=True)
    t_stat = test.t_stat
    recent_n, before_n = n * dummy, n * (1 - dummy)
    return {
        "ic_recent": float(recent_n @ values / recent_n.sum()),
        "ic_before": float(before_n @ values / before_n.sum()),
        "ic_change": test.estimate,
        "ic_change_t": t_stat,
        "ic_change_p_value": float(stats.t.cdf(t_stat, df=test.df)) if np.isfinite(t_stat) else 1.0,
        "monitor_score": abs(overall) * float(np.sqrt(n.sum())),
        "ic_change_mde": detectable(test.se, test.df, level),
        "largest_fall": -(test.estimate - float(stats.t.ppf(0.95, test.df)) * test.se)
        if np.isfinite(test.df)
        else np.inf,
    }


def alpha_monitor(series: PeriodIC, ic_q_value: pd.Series, params: MonitorParams) -> pd.DataFrame:
    """One row per feature of the IC series: feature and MONITOR_COLUMNS (module docstring); the
    change figures are None for a feature with too few recent or earlier periods. `ic_q_value`: the
    q-value of each feature's mean IC (core/evidence.py), by feature."""
    recent = recent_periods(pd.DatetimeIndex(series.ic.index), params, series.period_days)
    rows = []
    for feature in series.ic.columns:
        ic = series.ic[feature]
        n_recent = int(ic[recent].notna().sum())
        row: dict[str, object] = {"feature": feature, "n_recent_periods": n_recent}
        if n_recent >= params.min_recent and int(ic[~recent].notna().sum()) >= params.recent_periods:
            row.update(ic_change(ic, series.n_trades[feature], recent, series.holding_lag, params.level))
        rows.append(row)
    table = pd.DataFrame(
        rows, columns=["feature", *MONITOR_COLUMNS[:6], "monitor_score", "ic_change_mde", "largest_fall"]
    )
    ranked = table.dropna(subset=["monitor_score"]).sort_values(
        ["monitor_score", "feature"], ascending=[False, True], kind="stable"
    )
    significant = table["feature"].map(ic_q_value).astype("float64") < params.evidence_level
    monitored = table["feature"].isin(ranked["feature"].head(params.top_k)) | (
        significant & table["monitor_score"].notna()
    )
    table["monitored"] = monitored
    table["ic_change_q_value"] = benjamini_hochberg(
        table["ic_change_p_value"].astype("float64").where(monitored)
    )
    table["broken_down"] = monitored & (table["ic_change_q_value"] < params.level)
    table["monitor_verdict"] = monitor_verdicts(table)
    return table[["feature", *MONITOR_COLUMNS]]


def monitor_verdicts(table: pd.DataFrame) -> pd.Series:
    """'broken down', 'holding' or 'cannot tell' per monitored feature (module docstring, 4)."""
    seen = table["largest_fall"].astype("float64") < table["ic_before"].astype("float64").abs()
    verdict = np.where(table["broken_down"], "broken down", np.where(seen, "holding", CANNOT_TELL))
    return pd.Series(verdict, index=table.index, dtype="object").where(table["monitored"], None)


def alerts(table: pd.DataFrame) -> str:
    """The broken-down features in words, or 'none'."""
    broken = table[table["broken_down"].fillna(False).astype(bool)]
    return (
        "; ".join(
            f"{row.feature}: IC {row.ic_before:+.3f} before, {row.ic_recent:+.3f} in the last "
            f"{row.n_recent_periods} periods (q = {row.ic_change_q_value:.2g})"
            for row in broken.itertuples()
        )
        or "none"
    )


def monitor_summary(table: pd.DataFrame) -> str:
    """The monitor's verdict on one alpha table (an as-of run's feature_alpha rows) in one line."""
    if "monitored" not in table or (len(table) and table["monitored"].isna().all()):
        return "not computed for this run (stored before the alpha monitor)"
    monitored = table["monitored"].fillna(False).astype(bool)
    if not monitored.any():
        return "no feature has enough weeks to be monitored yet"
    if table["broken_down"].fillna(False).astype(bool).any():
        return f"alpha broken down: {alerts(table)}"
    line = f"none of the {int(monitored.sum())} monitored features has broken down in its last periods"
    if "monitor_verdict" not in table:  # stored before the monitor stated its power
        return line
    blind = table[monitored & (table["monitor_verdict"] == CANNOT_TELL)]
    if blind.empty:
        return f"{line}; each would have shown a fall of its IC to zero"
    smallest = blind["ic_change_mde"].astype("float64")
    return (
        f"{line}, but for {len(blind)} of them the data cannot tell: their last periods hold too few "
        f"trades to show a fall of the IC to zero (the smallest fall they would show: "
        f"{smallest.min():.2f} to {smallest.max():.2f})"
    )
