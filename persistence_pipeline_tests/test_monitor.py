"""The alpha monitor (core/monitor.py): its test against brute-force computations, and judged on
simulated markets: false alarms without signal and on stable signal, with overlapping and
non-overlapping recent windows, and power on a planted breakdown."""

import functools
import re

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.core.evidence import (
    EvidenceParams,
    PeriodIC,
    feature_evidence,
    hac_coefficient,
    period_ic,
)
from persistence_pipeline.core.monitor import (
    MonitorParams,
    alerts,
    alpha_monitor,
    monitor_summary,
    recent_periods,
)
from persistence_pipeline.resources import ModelSettings, TradeSource
from persistence_pipeline_tests.conftest import Project, check_evaluation
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades, trade_log

PARAMS = EvidenceParams(period_days=7)
MONITOR = MonitorParams()
FAR_FUTURE = pd.Timestamp("2100-01-01", tz="UTC")


@pytest.mark.core
def test_the_pooled_newey_west_variance_by_brute_force():
    """raw_se^2 of the pooled test = sum over t, s of g_t g_s w(|t-s|) gamma(|t-s|), with gamma the
    residuals' autocovariances over the whole series, by explicit loops."""
    rng = np.random.default_rng(3)
    n, lag = 30, 4
    X = np.column_stack([np.ones(n), (np.arange(n) >= n - 8).astype(float)])
    y = rng.normal(size=n) + 0.5 * X[:, 1]
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    e = y - X @ beta
    g = X @ np.linalg.inv(X.T @ X)[:, 1]
    gamma = [sum(e[t] * e[t - j] for t in range(j, n)) / n for j in range(n)]
    bartlett = [max(0.0, 1 - j / (lag + 1)) for j in range(n)]
    variance = sum(g[t] * g[s] * bartlett[abs(t - s)] * gamma[abs(t - s)] for t in range(n) for s in range(n))
    test = hac_coefficient(y, X, 1, lag, pooled=True)
    assert test.estimate == pytest.approx(beta[1])
    assert test.raw_se**2 == pytest.approx(variance, rel=1e-10)


@pytest.mark.core
def test_the_pooled_variance_is_unbiased_and_its_degrees_of_freedom_match_its_spread():
    """Under independent errors of unit variance: mean of se^2 = g'g (the coefficient's true
    variance) and Var(se^2) = 2 (g'g)^2 / df, over 4000 series; and far more degrees of freedom than
    the sandwich estimator, which rests on the few recent residuals."""
    rng = np.random.default_rng(5)
    n, lag = 60, 11
    X = np.column_stack([np.ones(n), (np.arange(n) >= n - 8).astype(float)])
    g = X @ np.linalg.inv(X.T @ X)[:, 1]
    draws = rng.normal(size=(4000, n))
    variances = np.array([hac_coefficient(d, X, 1, lag, pooled=True).se ** 2 for d in draws])
    pooled = hac_coefficient(draws[0], X, 1, lag, pooled=True)
    assert variances.mean() == pytest.approx(g @ g, rel=0.04)
    assert variances.var() == pytest.approx(2 * (g @ g) ** 2 / pooled.df, rel=0.15)
    assert pooled.df > 15 > 6 > hac_coefficient(draws[0], X, 1, lag).df


def series(values: dict[str, list[float]], trades: dict[str, list[int]]) -> PeriodIC:
    n = len(next(iter(values.values())))
    index = pd.date_range("2024-01-01", periods=n, freq="7D", tz="UTC", name="period_start")
    ic = pd.DataFrame(values, index=index)
    counts = pd.DataFrame({f: trades.get(f, [50] * n) for f in values}, index=index)
    counts = counts.where(ic.notna(), 0).astype("int64")
    return PeriodIC(ic, counts, holding_lag=1, pooled=ic, period_days=7, neutral=False)


@pytest.mark.core
def test_the_change_is_the_difference_of_trade_weighted_aligned_means_and_the_strongest_are_monitored():
    rng = np.random.default_rng(0)
    n = 30
    values = {
        "strong_negative": list(-0.3 + 0.05 * rng.normal(size=n)),  # aligned by its negative mean
        "weakened": list(np.r_[0.2 + 0.05 * rng.normal(size=n - 8), 0.05 * rng.normal(size=8)]),
        "weakened_negative": list(np.r_[-0.25 + 0.05 * rng.normal(size=n - 8), 0.05 * rng.normal(size=8)]),
        "noise": list(0.05 * rng.normal(size=n)),
        "short": [np.nan] * (n - 3) + [0.1, 0.2, 0.3],  # too few periods before: not tested
    }
    values["weakened"][-1] = np.nan  # a recent week without an IC
    trades = {"weakened": list(rng.integers(10, 200, n)), "noise": list(rng.integers(10, 200, n))}
    s = series(values, trades)
    no_evidence = pd.Series(1.0, index=list(values))  # only the top 3 by score are monitored
    table = alpha_monitor(s, no_evidence, MonitorParams(top_k=3)).set_index("feature")
    recent = recent_periods(pd.DatetimeIndex(s.ic.index), MONITOR, 7)
    assert recent.sum() == 8 and recent[-8:].all()
    for feature in ["strong_negative", "weakened", "weakened_negative", "noise"]:
        ic, counts = s.ic[feature], s.n_trades[feature].astype(float)
        weighted = {  # trade-weighted means by a loop
            part: sum(ic.iloc[i] * counts.iloc[i] for i in range(n) if mask[i] and pd.notna(ic.iloc[i]))
            / sum(counts.iloc[i] for i in range(n) if mask[i] and pd.notna(ic.iloc[i]))
            for part, mask in (("before", ~recent), ("recent", recent), ("all", np.ones(n, dtype=bool)))
        }
        sign = 1 if weighted["all"] >= 0 else -1
        assert table.loc[feature, "ic_before"] == pytest.approx(weighted["before"])
        assert table.loc[feature, "ic_recent"] == pytest.approx(weighted["recent"])
        assert table.loc[feature, "ic_change"] == pytest.approx(
            sign * (weighted["recent"] - weighted["before"])
        )
        total = counts[ic.notna()].sum()
        assert table.loc[feature, "monitor_score"] == pytest.approx(abs(weighted["all"]) * np.sqrt(total))
    assert table.loc["weakened", "n_recent_periods"] == 7
    assert pd.isna(table.loc["short", "ic_change_p_value"]) and not table.loc["short", "monitored"]
    # the three with the largest score are monitored; q only over them
    assert table["monitored"].tolist() == [True, True, True, False, False]
    assert pd.isna(table.loc["noise", "ic_change_q_value"])
    assert table.loc[["weakened", "weakened_negative"], "broken_down"].all()
    assert not table.loc["strong_negative", "broken_down"]
    assert table.loc["weakened_negative", "ic_change"] < -0.2  # weaker: toward zero from below
    assert alerts(table.reset_index()).startswith("weakened: IC +0.2")
    assert alerts(table.reset_index().assign(broken_down=False)) == "none"


@pytest.mark.core
def test_monitor_params_are_checked():
    with pytest.raises(ValueError, match="recent_periods"):
        MonitorParams(recent_periods=1)
    with pytest.raises(ValueError, match="level"):
        MonitorParams(level=0.0)
    with pytest.raises(ValueError, match="top_k"):
        MonitorParams(top_k=0)


# --- judged on simulated markets ------------------------------------------------------------------

BREAK = "2022-09-05"
MARKET = SimulatedMarket(
    start="2021-01-01",
    end="2022-12-31",
    per_day=100,
    n_symbols=30,
    n_noise=20,
    planted={"stable": (0.1, 0.1)},
    breaks={"broken": (0.1, 0.0, BREAK)},
)
NULL_MARKET = SimulatedMarket(start="2021-01-01", end="2022-12-31", per_day=20, n_symbols=30, n_noise=40)


MARKETS = {"planted": (MARKET, 0), "null": (NULL_MARKET, 11)}


@functools.cache
def full_series(name: str) -> PeriodIC:
    """The IC series of every complete period of a simulated market: the series as of any run end
    is its first periods (test_evidence.py: the evidence as of a date is that of its complete periods)."""
    market, seed = MARKETS[name]
    return period_ic(simulated_trades(market, seed), market.features, PARAMS, FAR_FUTURE)


def monitor_as_of(full: PeriodIC, n_periods: int) -> pd.DataFrame:
    """The monitor after a run whose range ends when the first `n_periods` periods are complete."""
    s = full.head(n_periods)
    return alpha_monitor(s, feature_evidence(s, PARAMS).set_index("feature")["ic_q_value"], MONITOR)


@pytest.mark.core
@pytest.mark.parametrize("step", [1, MONITOR.recent_periods])
def test_without_signal_the_change_test_holds_its_level_and_no_run_alerts(step):
    """Runs after every week (overlapping recent windows: each shares 7 of its 8 weeks with the
    last) and every 8 weeks (non-overlapping), over a second simulated year without signal."""
    full = full_series("null")
    tables = [monitor_as_of(full, n) for n in range(52, len(full.ic) + 1, step)]
    rows = pd.concat(tables)
    assert len(tables) >= 6
    assert not rows["broken_down"].any()
    # calibrated, not merely conservative: the per-feature one-sided test near its nominal 5%
    assert 0.02 <= (rows["ic_change_p_value"] < 0.05).mean() <= 0.08
    assert all(t["monitored"].sum() == MONITOR.top_k for t in tables)


@pytest.mark.core
def test_a_breakdown_is_flagged_within_its_recent_window_and_a_stable_signal_is_not():
    full = full_series("planted")
    at_break = full.ic.index.get_loc(pd.Timestamp(BREAK, tz="UTC"))
    tables = {weeks: monitor_as_of(full, at_break + weeks).set_index("feature") for weeks in range(-8, 11)}
    flagged = [weeks for weeks, table in tables.items() if table.loc["broken", "broken_down"]]
    assert flagged and min(flagged) <= MONITOR.recent_periods and min(flagged) > 0
    for table in tables.values():
        assert table.loc[["stable", "broken"], "monitored"].all()
        assert not table.drop(index="broken")["broken_down"].any()
    late = tables[min(flagged)].loc["broken"]
    assert late["ic_before"] > 0.06 and abs(late["ic_recent"]) < 0.06 and late["ic_change"] < -0.05


MANY_STRONG = SimulatedMarket(
    start="2021-01-01",
    end="2022-06-30",
    per_day=100,
    n_symbols=100,
    n_noise=4,
    planted={f"stable_{i}": (0.1, 0.1) for i in range(7)},
    breaks={"broken": (0.1, 0.0, "2022-03-07")},
)
MARKETS["many_strong"] = (MANY_STRONG, 3)


@pytest.mark.core
def test_a_feature_that_breaks_among_more_strong_features_than_top_k_stays_monitored_and_is_flagged():
    """Eight features with the same IC and top_k 5: the one that breaks must stay among the
    monitored (ranked on a t-statistic, whose error grows with the break, it fell out and was never
    flagged) and be flagged within 8 weeks, while none of the seven that hold is."""
    full = full_series("many_strong")
    at_break = full.ic.index.get_loc(pd.Timestamp("2022-03-07", tz="UTC"))
    tables = {weeks: monitor_as_of(full, at_break + weeks).set_index("feature") for weeks in range(1, 11)}
    assert all(table.loc["broken", "monitored"] for table in tables.values())
    flagged = [weeks for weeks, table in tables.items() if table.loc["broken", "broken_down"]]
    assert flagged and min(flagged) <= MONITOR.recent_periods
    assert not any(table.drop(index="broken")["broken_down"].any() for table in tables.values())


THIN_MARKET = SimulatedMarket(  # about the embedded data's density: 5 trades a day on 6 symbols
    start="2021-01-01",
    end="2022-12-31",
    per_day=5,
    n_symbols=6,
    n_noise=4,
    planted={"stable": (0.1, 0.1)},
    breaks={"broken": (0.1, 0.0, BREAK)},
)
MARKETS["thin"] = (THIN_MARKET, 5)


@pytest.mark.core
def test_the_monitor_states_its_power_and_says_cannot_tell_where_it_is_blind():
    """Dense (100 trades a day): the stable feature 'holding' (the test would have seen its IC fall
    to zero) and the broken one 'broken down' within its recent window. At the embedded data's
    density the same break is 'cannot tell', never 'holding': the smallest detectable fall is
    larger than the IC itself."""
    full = full_series("planted")
    at_break = full.ic.index.get_loc(pd.Timestamp(BREAK, tz="UTC"))
    dense = monitor_as_of(full, at_break + MONITOR.recent_periods).set_index("feature")
    assert dense.loc["stable", "monitor_verdict"] == "holding"
    assert dense.loc["stable", "ic_change_mde"] < dense.loc["stable", "ic_before"]
    assert dense.loc["broken", "monitor_verdict"] == "broken down"
    assert dense.loc[~dense["monitored"], "monitor_verdict"].isna().all()
    thin_full = full_series("thin")
    at_break = thin_full.ic.index.get_loc(pd.Timestamp(BREAK, tz="UTC"))
    thin = monitor_as_of(thin_full, at_break + MONITOR.recent_periods).set_index("feature")
    assert thin.loc["broken", "monitor_verdict"] == "cannot tell"
    assert thin.loc["broken", "ic_change_mde"] > 0.1
    assert (thin["monitor_verdict"] != "holding").all()
    line = monitor_summary(thin.reset_index())
    assert line.startswith("none of the ") and ", but for " in line and " the data cannot tell: " in line


# --- through the pipeline --------------------------------------------------------------------------

PIPELINE_MARKET = SimulatedMarket(
    start="2021-01-01",
    end="2021-08-31",
    per_day=100,
    n_symbols=30,
    n_noise=4,
    planted={"stable": (0.12, 0.12)},
    breaks={"broken": (0.2, 0.0, "2021-06-14")},
)


@pytest.mark.e2e
def test_a_run_after_a_breakdown_warns_in_its_check_and_its_metadata(tmp_path):
    """Eight months of simulated trades whose `broken` feature loses its IC on 2021-06-14, as one
    run of the history code location: the WARN check names it with its IC before and now, the
    materialization's metadata carries the alert, and the published feature_alpha rows say which
    features were monitored and which broke down."""
    (tmp_path / "log").mkdir()
    trade_log(simulated_trades(PIPELINE_MARKET, seed=2)).to_parquet(tmp_path / "log" / "trades.parquet")
    project = Project(
        tmp_path, TradeSource(kind="trade_log_dir", path=str(tmp_path / "log")), ModelSettings()
    )
    result = project.materialize("2021-01-01", "2021-08-01", without=("persistence_dashboard",), monthly=True)
    evaluation = check_evaluation(result, "alpha_has_not_broken_down")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert re.fullmatch(
        r"alpha broken down: broken: IC \+0\.1\d\d before, [+-]0\.0\d\d in the last 8 periods \(q = .+\)",
        str(evaluation.description),
    )
    assert evaluation.metadata["broken_down"].value == "broken"
    alpha = project.table("feature_alpha").set_index("feature")
    assert alpha["monitored"].sum() == MONITOR.top_k and alpha.loc[["stable", "broken"], "monitored"].all()
    assert alpha.index[alpha["broken_down"]].tolist() == ["broken"]
    broken = alpha.loc["broken"]
    assert (
        broken["ic_before"] > 0.1 and abs(broken["ic_recent"]) < 0.05 and broken["ic_change_q_value"] < 0.01
    )
    metadata = next(
        event.materialization.metadata
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey(["history", "feature_alpha"])
        and "alpha_alerts" in event.materialization.metadata
    )
    assert str(metadata["alpha_alerts"].value) == str(evaluation.description).removeprefix(
        "alpha broken down: "
    )
