"""The per-period IC evidence (core/evidence.py): each statistic against an independent computation
(scipy, statsmodels, brute-force loops), and the whole judged on simulated markets whose truth is
known: false positives without signal under every retraining cadence, power on planted effects."""

import functools

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.api as sm

from persistence_pipeline.core.alpha import alpha_table
from persistence_pipeline.core.design import DesignParams, model_design
from persistence_pipeline.core.evidence import (
    EvidenceParams,
    benjamini_hochberg,
    complete_periods,
    detectable,
    feature_evidence,
    hac_coefficient,
    ic_verdict,
    newey_west_lag,
    period_ic,
    period_starts,
    persistence_posterior,
    redundant_aliases,
    series_evidence,
)
from persistence_pipeline.core.strategies import FEATURES, generate_trades
from persistence_pipeline.source_files import load_embedded_bars
from persistence_pipeline_tests.simulation import SimulatedMarket, planted_ic, simulated_trades

pytestmark = pytest.mark.core

WEEK = 7
PARAMS = EvidenceParams(period_days=WEEK)
UTC = "UTC"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def small_trades(seed: int = 0, weeks: int = 6, per_week: int = 14) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    entry = ts("2024-01-01 09:00") + pd.to_timedelta(rng.uniform(0, 7 * weeks, weeks * per_week), unit="D")
    trades = pd.DataFrame(
        {
            "trade_id": [f"t{i}" for i in range(len(entry))],
            "entry_time": entry,
            "exit_time": entry + pd.to_timedelta(rng.uniform(0.1, 2.0, len(entry)), unit="D"),
            "return": rng.normal(size=len(entry)),
            "a": rng.normal(size=len(entry)),
            "b": rng.integers(0, 3, len(entry)).astype("float64"),  # ties
        }
    )
    trades.loc[rng.choice(len(trades), 5, replace=False), "a"] = np.nan
    return trades.sort_values("entry_time", ignore_index=True)


# --- the IC series ------------------------------------------------------------------------------


def test_periods_are_weeks_starting_on_monday():
    starts = period_starts(pd.Series([ts("2024-01-01 00:00"), ts("2024-01-07 23:59"), ts("2024-01-08")]), 7)
    assert starts.tolist() == [ts("2024-01-01"), ts("2024-01-01"), ts("2024-01-08")]
    assert all(s.day_name() == "Monday" for s in starts)


def test_period_ic_is_spearman_per_week_by_brute_force():
    trades = small_trades()
    as_of = ts("2024-03-01")
    series = period_ic(trades, ["a", "b"], PARAMS, as_of)
    week = (trades["entry_time"] - ts("2024-01-01")).dt.days // 7
    for w, rows in trades.groupby(week):
        start = ts("2024-01-01") + pd.Timedelta(days=7 * int(w))
        for feature in ["a", "b"]:
            kept = rows[rows[feature].notna()]
            expected = scipy.stats.spearmanr(kept[feature], kept["return"]).statistic
            if len(kept) < PARAMS.min_trades_per_period:
                assert np.isnan(series.ic.loc[start, feature])
            else:
                assert series.ic.loc[start, feature] == pytest.approx(expected, abs=1e-12)
            # a cell (here: the whole week, these trades have no side) of fewer than 3 trades carries nothing
            assert series.n_trades.loc[start, feature] == (len(kept) if len(kept) >= 3 else 0)
    long = series.long()
    assert set(long.columns) == {"feature", "period_start", "n_trades", "ic", "pooled_ic"}
    assert long["ic"].notna().all() and len(long) == int(series.ic.notna().sum().sum())
    np.testing.assert_allclose(long["ic"], long["pooled_ic"], atol=1e-12)  # one cell: neutral is pooled


def test_a_period_counts_only_when_it_has_ended_and_all_its_trades_have_exited():
    trades = small_trades()
    # as of Wednesday of week 3: weeks 1 and 2 are over; week 2 ends Sunday but one of its trades
    # exits on Tuesday of week 3 after the cut, so only week 1 counts
    late = trades.index[
        (trades["entry_time"] >= ts("2024-01-08")) & (trades["entry_time"] < ts("2024-01-15"))
    ][-1]
    trades.loc[late, "exit_time"] = ts("2024-01-17 12:00")
    as_of = ts("2024-01-17")
    mask = complete_periods(trades, as_of, 7)
    assert set(period_starts(trades.loc[mask, "entry_time"], 7)) == {ts("2024-01-01")}
    assert period_ic(trades, ["a"], PARAMS, as_of).ic.index.tolist() == [ts("2024-01-01")]
    # a day later the trade has exited and week 2 counts; week 3 has not ended
    assert period_ic(trades, ["a"], PARAMS, ts("2024-01-18")).ic.index.tolist() == [
        ts("2024-01-01"),
        ts("2024-01-08"),
    ]
    # a trade without a return keeps its period open
    trades.loc[late, "return"] = np.nan
    assert period_ic(trades, ["a"], PARAMS, ts("2024-03-01")).ic.index[1] != ts("2024-01-08")


# --- Newey-West -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lag", [0, 2, 5])
def test_newey_west_matches_statsmodels_and_the_correction_is_unbiased(lag):
    rng = np.random.default_rng(lag)
    n = 30
    X = np.column_stack([np.ones(n), np.arange(n) / 52])
    y = rng.normal(size=n)
    fit = sm.OLS(y, X).fit(cov_type="HAC", cov_kwds={"maxlags": lag, "use_correction": False})
    for j in (0, 1):
        test = hac_coefficient(y, X, j, lag)
        assert test.estimate == pytest.approx(fit.params[j])
        assert test.raw_se == pytest.approx(fit.bse[j], rel=1e-10)
    # under independent errors the corrected variance is unbiased for the true one, s^2 g'g, and
    # the Satterthwaite df match its spread (Var = 2 E^2 / df): a Monte Carlo over 4000 series
    g = X @ np.linalg.inv(X.T @ X)[:, 1]
    draws = rng.normal(size=(4000, n))
    variances = np.array([hac_coefficient(d, X, 1, lag).se ** 2 for d in draws])
    df = hac_coefficient(draws[0], X, 1, lag).df
    assert variances.mean() == pytest.approx(g @ g, rel=0.04)
    assert variances.var() == pytest.approx(2 * (g @ g) ** 2 / df, rel=0.15)


def test_lag_covers_the_holding_periods():
    assert newey_west_lag(100, 0) == 13  # ceil(1.3 * sqrt(100))
    assert newey_west_lag(100, 20) == 20  # trades held 20 periods
    assert newey_west_lag(5, 0) == 3  # at most T - 2
    trades = small_trades()
    trades["exit_time"] = trades["entry_time"] + pd.Timedelta(days=20)
    assert period_ic(trades, ["a"], PARAMS, ts("2024-06-01")).holding_lag == 3  # 20 days: 3 weeks


def brute_benjamini_hochberg(p_values):
    """q_i = min over j with p_j >= p_i of p_j * n / rank_j (capped at 1)."""
    n = len(p_values)
    order = sorted(range(n), key=lambda i: p_values[i])
    rank = {i: r + 1 for r, i in enumerate(order)}
    return [
        min(1.0, min(p_values[j] * n / rank[j] for j in range(n) if p_values[j] >= p_values[i]))
        for i in range(n)
    ]


def test_benjamini_hochberg_by_brute_force():
    p = pd.Series([0.01, 0.04, np.nan, 0.03, 0.5, 0.002])
    q = benjamini_hochberg(p)
    tested = p.dropna()
    np.testing.assert_allclose(q.dropna().to_numpy(), brute_benjamini_hochberg(tested.tolist()))
    assert np.isnan(q[2])


# --- one feature's evidence -----------------------------------------------------------------------


def weekly(values) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=len(values), freq="7D", tz=UTC))


def test_series_evidence_by_hand():
    rng = np.random.default_rng(3)
    values = 0.08 + rng.normal(scale=0.05, size=40)
    row = series_evidence(weekly(values), holding=1, params=PARAMS)
    lag = newey_west_lag(40, 1)
    test = hac_coefficient(values, np.ones((40, 1)), 0, lag)
    assert row["n_periods"] == 40 and row["hac_lag"] == lag
    assert row["ic_mean"] == pytest.approx(values.mean())
    assert row["ic_hac_se"] == pytest.approx(test.se)
    assert row["ic_t_stat"] == pytest.approx(values.mean() / test.se)
    assert row["ic_p_value"] == pytest.approx(2 * scipy.stats.t.sf(abs(values.mean() / test.se), test.df))
    half = scipy.stats.t.ppf(0.975, test.df) * test.se
    assert (row["ic_ci_low"], row["ic_ci_high"]) == pytest.approx(
        (values.mean() - half, values.mean() + half)
    )
    assert row["ic_sign_consistency"] == pytest.approx(np.mean(values > 0))
    years = np.arange(40) * 7 / 365.25
    slope, _ = np.polyfit(years, values, 1)
    assert row["ic_slope"] == pytest.approx(slope)
    trend = hac_coefficient(values, np.column_stack([np.ones(40), years]), 1, lag)
    assert row["ic_slope_p_value"] == pytest.approx(scipy.stats.t.cdf(slope / trend.se, trend.df))
    assert row["decaying"] is False and row["half_life_days"] is None


def test_short_series_give_none_not_made_up_numbers():
    two = series_evidence(weekly([0.1, 0.2]), 0, PARAMS)
    assert two["ic_t_stat"] is None and two["persistence"] == 0.5 and two["decay_verdict"] == "cannot tell"
    three = series_evidence(weekly([0.1, 0.2, 0.15]), 0, PARAMS)
    assert three["ic_t_stat"] is not None and three["ic_slope"] is None and three["persistence"] == 0.5
    assert series_evidence(weekly([]), 0, PARAMS)["ic_mean"] is None


def test_persistence_is_the_posterior_mean_under_a_uniform_prior_by_integration():
    """persistence_posterior against a numerical integral of p x likelihood over [0, 1]."""
    grid = np.linspace(0.0, 1.0, 200_001)
    # the last ones far in a tail: a cut to the nearest bound there was off by up to 0.16
    cases = [
        (0.3, 0.1),
        (1.2, 0.4),
        (-0.5, 0.3),
        (0.9, 5.0),
        (0.5, 1e-4),
        (3.15, 0.3),
        (10, 1.2),
        (-0.5, 0.07),
    ]
    for estimate, sd in cases:
        density = scipy.stats.norm.pdf(grid, estimate, sd)
        expected = np.trapezoid(grid * density, grid) / np.trapezoid(density, grid)
        assert persistence_posterior(estimate, sd) == pytest.approx(expected, abs=1e-6)
    assert persistence_posterior(0.4, 1e9) == pytest.approx(0.5, abs=1e-6)  # cannot tell: 0.5


def test_detectable_effect_has_the_stated_power_by_simulation():
    """A true effect of exactly `detectable(se, df, level)` is found 80% of the time by a one-sided
    t test at `level` (a brute-force simulation of the t statistic)."""
    rng = np.random.default_rng(8)
    df, se, level = 12.0, 0.02, 0.01
    effect = detectable(se, df, level)
    assert effect is not None
    estimates = effect + se * rng.standard_t(df, size=200_000)
    found = estimates / se > scipy.stats.t.ppf(1 - level, df)
    assert found.mean() == pytest.approx(0.8, abs=0.005)


def test_decay_half_life_and_persistence():
    rng = np.random.default_rng(4)
    fading = np.linspace(0.2, 0.0, 60) + rng.normal(scale=0.02, size=60)
    row = pd.Series(series_evidence(weekly(-fading), 1, PARAMS))  # a negative IC fading toward zero
    assert row["decaying"] is True and row["ic_slope"] < 0 and row["ic_now"] > -0.05
    years = np.arange(60) * 7 / 365.25
    slope, start = np.polyfit(years, fading, 1)
    assert row["half_life_days"] == pytest.approx(start / (2 * -slope) * 365.25)
    assert row["persistence"] < 0.15


def test_persistence_is_continuous_in_the_decline():
    """No cliff at a p threshold: as the decline grows, persistence falls smoothly from near 1 (the
    posterior mean under a uniform prior stays below 1 by the trend's uncertainty)."""
    noise = np.random.default_rng(5).normal(scale=0.03, size=52)
    declines = np.linspace(0.0, 0.1, 41)
    persistence = np.array(
        [
            series_evidence(weekly(0.1 - np.linspace(0, d, 52) + noise), 2, PARAMS)["persistence"]
            for d in declines
        ]
    )
    assert persistence[0] > 0.9 and persistence[-1] < 0.2
    assert np.all(np.diff(persistence) <= 1e-12)  # monotone
    assert np.abs(np.diff(persistence)).max() < 0.1  # no step of more than 0.1 for a 0.0025 change


# --- the whole table ----------------------------------------------------------------------------


def test_alpha_score_is_the_product_of_its_documented_components():
    market = SimulatedMarket(end="2021-12-31", per_day=30, n_noise=6, planted={"signal": (0.15, 0.15)})
    trades = simulated_trades(market, seed=1)
    table = feature_evidence(period_ic(trades, market.features, PARAMS, ts("2022-02-01")), PARAMS)
    q = benjamini_hochberg(table["ic_p_value"])
    np.testing.assert_allclose(table["significance"], 1 - q)
    supported = np.maximum(np.maximum(table["ic_ci_low"], -table["ic_ci_high"]), 0)
    np.testing.assert_allclose(table["effect"], 1 - np.exp(-supported / PARAMS.reference_ic))
    np.testing.assert_allclose(
        table["alpha_score"], table["significance"] * table["persistence"] * table["effect"]
    )
    assert table["alpha_score"].between(0, 1).all()
    best = table.sort_values("alpha_score", ascending=False).iloc[0]
    assert best["feature"] == "signal" and best["alpha_score"] > 0.6
    assert table.set_index("feature").drop("signal")["alpha_score"].max() < 0.1


def test_run_figures_beside_the_evidence():
    market = SimulatedMarket(end="2021-06-30", per_day=20, n_noise=2)
    trades = simulated_trades(market, seed=2)
    evidence = feature_evidence(period_ic(trades, market.features, PARAMS, ts("2021-08-01")), PARAMS)
    ranges = pd.DataFrame(
        {
            "run_key": ["r0", "r1", "r2"],
            "range_start": pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-03"]).date,
            "range_end": pd.to_datetime(["2021-03-31", "2021-04-01", "2021-04-02"]).date,
        }
    )
    history = pd.DataFrame(
        {
            "run_key": ["r0", "r0", "r1", "r1", "r2"],
            "feature": ["noise_00", "noise_01", "noise_00", "noise_01", "noise_00"],
            "shap_mean_abs": [3.0, 1.0, 1.0, 1.0, 2.0],
        }
    )
    performance = pd.Series([0.1, 0.2, 0.3], index=["r0", "r1", "r2"])
    table = alpha_table(evidence, history, ranges, performance, pd.Series({"noise_00": 1.0})).set_index(
        "feature"
    )
    assert table.loc["noise_00", "n_runs"] == 3 and table.loc["noise_01", "n_runs"] == 2
    assert table.loc["noise_00", "importance_share"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert table.loc["noise_01", "importance_share"] == pytest.approx((0.25 + 0.5) / 3)  # absent: 0
    assert table.loc["noise_00", "perf_corr"] == pytest.approx(
        scipy.stats.spearmanr([0.75, 0.5, 1.0], [0.1, 0.2, 0.3]).statistic
    )
    assert table.loc["noise_00", "n_effective_runs"] == pytest.approx(92 / 90)  # three nights of one window
    assert table.loc["noise_00", "stability"] == 1.0 and np.isnan(table.loc["noise_01", "stability"])
    # the evidence does not depend on the runs
    pd.testing.assert_series_equal(
        table.loc["noise_00", evidence.columns.drop("feature")],
        evidence.set_index("feature").loc["noise_00"],
        check_names=False,
    )


# --- judged on simulated markets ------------------------------------------------------------------

NULL_MARKET = SimulatedMarket(start="2021-01-01", end="2021-12-31", per_day=20, n_symbols=30, n_noise=40)
WINDOW_DAYS = 90


@functools.cache
def null_trades() -> pd.DataFrame:
    return simulated_trades(NULL_MARKET, seed=11)


@functools.cache
def null_periods() -> tuple[pd.Series, pd.DataFrame]:
    """The weekly period start of each null trade, and per period its end and its last exit."""
    trades = null_trades()
    start = period_starts(trades["entry_time"], WEEK)
    grouped = trades.groupby(start.to_numpy())
    ends = pd.DataFrame(
        {"end": grouped["entry_time"].first().index + pd.Timedelta(days=WEEK)},
        index=grouped.size().index,
    ).assign(last_exit=grouped["exit_time"].max())
    return start, ends


def null_evidence_as_of(as_of: pd.Timestamp) -> pd.DataFrame:
    """The evidence as of a date. It depends only on the trades of the periods complete by then
    (ended, every trade exited), so dates with the same complete periods share one table (the
    cache)."""
    _, periods = null_periods()
    complete = (periods["end"] <= as_of) & (periods["last_exit"] < as_of)
    return _null_evidence(tuple(complete.to_numpy()))


@functools.cache
def _null_evidence(complete: tuple[bool, ...]) -> pd.DataFrame:
    start, periods = null_periods()
    kept = start.isin(periods.index[list(complete)]).to_numpy()
    far_future = ts("2100-01-01")  # every kept period is complete; the others are not passed
    return feature_evidence(period_ic(null_trades()[kept], NULL_MARKET.features, PARAMS, far_future), PARAMS)


def run_ends(step_days: int) -> list[pd.Timestamp]:
    """The exclusive ends of 90-day retraining windows stepping `step_days` over the simulated year."""
    first = ts(NULL_MARKET.start) + pd.Timedelta(days=WINDOW_DAYS)
    return list(pd.date_range(first, ts(NULL_MARKET.end) + pd.Timedelta(days=1), freq=f"{step_days}D"))


@pytest.mark.parametrize("step_days", [1, 7, 30, WINDOW_DAYS])
def test_without_signal_few_features_are_significant_or_decaying_whatever_the_cadence(step_days):
    """90-day windows stepping 1, 7, 30 days and non-overlapping (90): over every run's alpha table,
    at most 5% of noise features have q < 0.05 and at most 2% are flagged decaying. The evidence as
    of a date does not depend on how runs overlap: a table is computed from the complete weeks of
    distinct trades, the same whichever runs stored them."""
    tables = [null_evidence_as_of(end.normalize()) for end in run_ends(step_days)]
    rows = pd.concat(tables)
    assert len(tables) >= 3
    assert (rows["ic_q_value"] < 0.05).mean() <= 0.05
    assert rows["decaying"].mean() <= 0.02
    # calibrated, not merely conservative: the per-feature test rejects near its nominal 5%
    assert 0.01 <= (rows["ic_p_value"] < 0.05).mean() <= 0.08
    assert rows["alpha_score"].quantile(0.95) < 0.1


def test_the_evidence_as_of_a_date_is_that_of_its_complete_periods():
    """What makes every cadence agree: the table as of a date is computed from the complete weeks
    of the distinct trades entered before it, whichever runs stored them."""
    trades = null_trades()
    for as_of in [ts("2021-10-01"), ts("2021-10-04")]:
        before = trades[trades["entry_time"] < as_of]
        direct = feature_evidence(period_ic(before, NULL_MARKET.features, PARAMS, as_of), PARAMS)
        pd.testing.assert_frame_equal(direct, null_evidence_as_of(as_of))


PLANTED_MARKET = SimulatedMarket(
    start="2021-01-01",
    end="2022-12-31",
    per_day=100,
    n_symbols=100,
    n_noise=10,
    planted={"persistent_a": (0.08, 0.08), "persistent_b": (0.06, 0.06), "fading": (0.2, 0.0)},
)


def test_persistent_effects_lead_and_a_fading_one_is_flagged_before_it_halves():
    trades = simulated_trades(PLANTED_MARKET, seed=0)

    def evidence_as_of(as_of: pd.Timestamp) -> pd.DataFrame:
        entered = trades[trades["entry_time"] < as_of]
        return feature_evidence(period_ic(entered, PLANTED_MARKET.features, PARAMS, as_of), PARAMS).set_index(
            "feature"
        )

    # monthly run ends until the first flag (it must come in the first year), then the last one
    first_flag = next(
        (
            as_of
            for as_of in pd.date_range("2021-04-01", "2022-01-01", freq="MS", tz=UTC)
            if evidence_as_of(as_of).loc["fading", "decaying"]
        ),
        None,
    )
    assert first_flag is not None, "not flagged in the first year, while more than half of it was left"
    table = evidence_as_of(ts("2023-01-01"))
    left = planted_ic(PLANTED_MARKET, "fading", first_flag) / 0.2
    assert left > 0.5, f"flagged on {first_flag.date()} with {left:.0%} of the effect left"
    ranked = table.sort_values("alpha_score", ascending=False)
    assert set(ranked.index[:2]) == {"persistent_a", "persistent_b"}
    assert not ranked.loc[["persistent_a", "persistent_b"], "decaying"].any()
    assert ranked.loc["fading", "decaying"] and ranked.loc["fading", "persistence"] < 0.3
    noise = ranked.index.str.startswith("noise")
    assert (
        ranked.loc[~noise & (ranked.index != "fading"), "alpha_score"].min()
        > ranked.loc[noise, "alpha_score"].max() + 0.3
    )


def test_redundant_features_are_one_hypothesis():
    """Exact duplicates, negations and near duplicates (|correlation| >= 0.95) are aliases of the
    earliest feature of their group; only representatives enter the Benjamini-Hochberg step (the
    q-values equal scipy's over the representatives alone) and get an alpha score."""
    rng = np.random.default_rng(3)
    n = 2000
    a = rng.normal(size=n)
    near = a + 0.2 * rng.normal(size=n)  # correlation about 0.98
    far = a + 0.6 * rng.normal(size=n)  # about 0.86: its own hypothesis
    X = np.column_stack([a, -a, a.copy(), near, far, rng.normal(size=n), np.ones(n)])
    names = ["a", "minus_a", "copy_a", "near_a", "far_a", "other", "constant"]
    aliases = redundant_aliases(X, names)
    assert aliases == {"minus_a": "a", "copy_a": "a", "near_a": "a"}
    market = SimulatedMarket(
        start="2021-01-01", end="2021-12-31", per_day=20, n_noise=3, planted={"p": (0.1, 0.1)}
    )
    trades = simulated_trades(market, 4)
    trades["p_twin"] = -trades["p"]
    names = [*market.features, "p_twin"]
    series = period_ic(trades, names, PARAMS, ts("2022-02-01"))
    table = feature_evidence(series, PARAMS, redundant_aliases(trades[names].to_numpy(), names)).set_index(
        "feature"
    )
    assert table.loc["p_twin", "alias_of"] == "p" and table.loc["p", "aliases"] == "p_twin"
    assert np.isnan(table.loc["p_twin", "ic_q_value"]) and np.isnan(table.loc["p_twin", "alpha_score"])
    assert table.loc["p_twin", "ic_mean"] == pytest.approx(-table.loc["p", "ic_mean"])
    representatives = table[table["alias_of"].isna()]
    expected = scipy.stats.false_discovery_control(representatives["ic_p_value"].astype(float), method="bh")
    np.testing.assert_allclose(representatives["ic_q_value"].astype(float), expected)


def test_on_the_embedded_data_the_strategy_indicators_are_one_hypothesis():
    """strategy@mean_reversion is exactly minus strategy@momentum_breakout (their ICs +-0.0404 with
    the same p counted twice in the Benjamini-Hochberg step)."""
    trades = generate_trades(load_embedded_bars())
    design = model_design(trades, list(FEATURES), DesignParams())
    aliases = redundant_aliases(design.trades[design.features].to_numpy(), design.features)
    assert aliases == {"strategy@momentum_breakout": "strategy@mean_reversion"}


# --- neutral to side and strategy ---------------------------------------------------------------


def sided_trades(seed: int = 0, weeks: int = 5, per_week: int = 40) -> pd.DataFrame:
    trades = small_trades(seed, weeks, per_week)
    rng = np.random.default_rng(seed + 100)
    trades["side"] = rng.choice([-1, 1], len(trades))
    trades["strategy"] = rng.choice(["mr", "mb"], len(trades), p=[0.7, 0.3])
    return trades


def test_the_neutral_ic_is_the_trade_weighted_spearman_within_side_strategy_cells_by_brute_force():
    trades = sided_trades()
    series = period_ic(trades, ["a", "b"], PARAMS, ts("2024-03-01"))
    week = (trades["entry_time"] - ts("2024-01-01")).dt.days // 7
    checked = 0
    for w, rows in trades.groupby(week):
        start = ts("2024-01-01") + pd.Timedelta(days=7 * int(w))
        for feature in ["a", "b"]:
            total = weighted = 0.0
            for _, cell in rows[rows[feature].notna()].groupby(["side", "strategy"]):
                if len(cell) >= 3 and cell[feature].nunique() > 1:
                    total += len(cell)
                    weighted += len(cell) * scipy.stats.spearmanr(cell[feature], cell["return"]).statistic
            kept = rows[rows[feature].notna()]
            pooled = scipy.stats.spearmanr(kept[feature], kept["return"]).statistic
            assert series.n_trades.loc[start, feature] == total
            if total >= PARAMS.min_trades_per_period:
                assert series.ic.loc[start, feature] == pytest.approx(weighted / total, abs=1e-12)
                checked += 1
            else:
                assert np.isnan(series.ic.loc[start, feature])
            if len(kept) >= PARAMS.min_trades_per_period:
                assert series.pooled.loc[start, feature] == pytest.approx(pooled, abs=1e-12)
    assert checked >= 8 and series.neutral


def side_only_market_trades(seed: int) -> tuple[pd.DataFrame, list[str]]:
    """Simulated trades where only the side and the strategy carry return (longs earn more, one
    strategy earns more), with features that know the side or the strategy: one-signed
    `rsi_like` (an oscillator of 10 to 90 the design turns to the side, uncentred as before),
    `vol_like` (higher on longs) and `picky` (higher on strategy b): the model's columns."""
    market = SimulatedMarket(start="2021-01-01", end="2021-12-31", per_day=20, n_symbols=30, n_noise=6)
    trades = simulated_trades(market, seed)
    rng = np.random.default_rng(seed)
    side = trades["side"].to_numpy(dtype="float64")
    strategy = rng.choice(["a", "b"], len(trades))
    sd = trades["return"].std()
    trades["return"] += 0.6 * sd * side + 0.6 * sd * (strategy == "b")
    trades["strategy"] = strategy
    trades["rsi_like"] = 50 + 20 * side + 10 * rng.normal(size=len(trades))
    trades["vol_like"] = 1 + 0.5 * side + rng.normal(size=len(trades))
    trades["picky"] = (strategy == "b") + rng.normal(size=len(trades))
    stored = [*market.features, "rsi_like", "vol_like", "picky"]
    design = model_design(trades, stored, DesignParams(directional=("rsi_like",), centred=False))
    return design.trades, design.features


@pytest.mark.parametrize("seed", [0, 1])
def test_when_only_the_side_and_strategy_carry_return_no_feature_is_significant(seed):
    """Pooled over sides and strategies (the earlier evidence), the features that know the side or
    the strategy are 'significant' alpha; neutral, none is, and the side and strategy indicators
    are reported apart with their pooled evidence (the side's bias is there), unscored."""
    trades, features = side_only_market_trades(seed)
    as_of = ts("2022-03-01")
    pooled_params = EvidenceParams(period_days=7, neutral=False)
    pooled = feature_evidence(period_ic(trades, features, pooled_params, as_of), pooled_params)
    pooled = pooled.set_index("feature")
    assert (pooled.loc[["rsi_like", "vol_like", "picky"], "ic_q_value"] < 0.05).all()
    neutral = feature_evidence(period_ic(trades, features, PARAMS, as_of), PARAMS).set_index("feature")
    scored = neutral[~neutral["indicator"]]
    assert (scored["ic_q_value"] >= 0.05).all(), scored["ic_q_value"].sort_values().head()
    assert scored["alpha_score"].max() < 0.1
    indicators = neutral[neutral["indicator"]]
    assert sorted(indicators.index) == ["direction", "strategy@a", "strategy@b"]
    assert indicators["alpha_score"].isna().all() and indicators["ic_q_value"].isna().all()
    assert indicators["ic_mean"].isna().all() and indicators["ic_verdict"].isna().all()
    assert (
        neutral.loc["direction", "pooled_ic_mean"] > 0.1
        and neutral.loc["direction", "pooled_ic_p_value"] < 1e-3
    )
    # the pooled columns are the pooled evidence
    assert neutral.loc["vol_like", "pooled_ic_mean"] == pytest.approx(pooled.loc["vol_like", "ic_mean"])


@functools.cache
def embedded_trades() -> pd.DataFrame:
    trades = generate_trades(load_embedded_bars())
    return trades[trades["entry_time"] >= ts("2014-01-01")].reset_index(drop=True)


def embedded_evidence(params: EvidenceParams, centred: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    design = model_design(embedded_trades(), list(FEATURES), DesignParams(centred=centred))
    series = period_ic(design.trades, design.features, params, ts("2024-03-01"))
    aliases = redundant_aliases(design.trades[design.features].to_numpy(), design.features)
    table = feature_evidence(series, params, aliases).sort_values("alpha_score", ascending=False)
    return table, design.trades


def test_on_the_embedded_data_no_top_five_alpha_feature_is_the_side():
    """Embedded trades 2014-2023: the earlier evidence (pooled, uncentred) ranked features that are
    the side among the top five (drawdown_from_high_252 and rsi_14 among them); the neutral
    evidence on the centred design ranks none with |correlation with direction| above 0.5, the
    indicators are not ranked, and within the sides rsi_14 is the mean-reversion signal it is
    (negative), not the +0.06 pooled."""

    def side_correlation(table: pd.DataFrame, trades: pd.DataFrame) -> pd.Series:
        top = table.dropna(subset=["alpha_score"]).head(5)["feature"]
        return pd.Series({f: abs(np.corrcoef(trades[f], trades["direction"])[0, 1]) for f in top})

    before, trades = embedded_evidence(EvidenceParams(neutral=False), centred=False)
    assert side_correlation(before, trades).max() > 0.5
    assert before.set_index("feature").loc["rsi_14", "ic_mean"] > 0.03
    table, trades = embedded_evidence(PARAMS, centred=True)
    assert side_correlation(table, trades).max() <= 0.5
    assert table.dropna(subset=["alpha_score"])["indicator"].sum() == 0
    assert table.set_index("feature").loc["rsi_14", "ic_mean"] < -0.03


def test_a_single_instrument_log_gets_a_usable_series():
    """One stock's trades over three and a half years (about 570): weekly periods hold too few trades for any
    IC (the earlier evidence used 3 weeks and reported [-1.56, +1.56]); the adaptive period gives
    a series with a finite interval for every feature. A dense log keeps weeks, and a set period is
    kept."""
    bars = load_embedded_bars()
    trades = generate_trades(bars[bars["symbol"] == "AAPL"].reset_index(drop=True))
    trades = trades[(trades["entry_time"] >= ts("2013-01-01")) & (trades["entry_time"] < ts("2016-07-01"))]
    assert len(trades) >= 500
    design = model_design(trades, list(FEATURES), DesignParams())
    as_of = ts("2016-09-01")
    weekly = period_ic(design.trades, design.features, PARAMS, as_of)
    assert weekly.period_days == 7 and weekly.ic.notna().sum().max() <= 3
    adaptive = EvidenceParams()
    series = period_ic(design.trades, design.features, adaptive, as_of)
    assert series.period_days in (28, 56)
    table = feature_evidence(series, adaptive).set_index("feature")
    table = table[~table["indicator"]]
    every_trade = table[~table.index.str.contains("@")]  # per-strategy features vary in one strategy
    assert (every_trade["n_periods"] >= 12).all()
    width = every_trade["ic_ci_high"] - every_trade["ic_ci_low"]
    assert width.notna().all() and width.median() < 0.6
    thin = table[table["n_periods"] < 12]  # the rare strategy's own features: few periods, no claim
    assert (thin["ic_verdict"] == "cannot tell").all() and (thin["decay_verdict"] == "cannot tell").all()
    assert period_ic(embedded_trades(), ["rsi_14"], adaptive, as_of).period_days == 7
    assert period_ic(design.trades, design.features, EvidenceParams(period_days=14), as_of).period_days == 14


# --- every verdict states its power -------------------------------------------------------------


def ar1(rng: np.random.Generator, n: int, sd: float, rho: float) -> np.ndarray:
    """A stationary AR(1) series of sd `sd`."""
    shocks = rng.normal(scale=sd * np.sqrt(1 - rho**2), size=n)
    out = np.empty(n)
    out[0] = rng.normal(scale=sd)
    for i in range(1, n):
        out[i] = rho * out[i - 1] + shocks[i]
    return out


def test_at_the_embedded_noise_a_faded_feature_is_not_called_persistent():
    """Weekly IC sd 0.49 with lag-1 autocorrelation 0.35 (the embedded data's directional
    features), two years of a linear fade from 0.1 to 0: the earlier persistence kept a median of
    0.94; now the data cannot tell, and say so: median persistence near 0.5, decay 'cannot tell'
    (its detectable fade larger than the IC), rarely flagged decaying."""
    rng = np.random.default_rng(12)
    rows = [
        pd.Series(series_evidence(weekly(np.linspace(0.1, 0.0, 104) + ar1(rng, 104, 0.49, 0.35)), 2, PARAMS))
        for _ in range(200)
    ]
    table = pd.DataFrame(rows)
    assert 0.35 < table["persistence"].median() < 0.65
    assert (table["decay_verdict"] == "cannot tell").mean() > 0.95
    assert table["decaying"].mean() <= 0.05
    assert (table["decay_mde"] > 0.1).all()


def test_decay_is_judged_only_where_the_ic_is_distinguishable_from_zero():
    """A short noisy series whose trend falls but whose mean interval holds zero (macd_hist_pct
    after one half-year run: IC -0.080 [-0.651, +0.490], 'decaying, half-life 42 days')."""
    rng = np.random.default_rng(2)
    values = np.linspace(0.5, -0.2, 26) + rng.normal(scale=0.3, size=26)
    row = pd.Series(series_evidence(weekly(values), 1, PARAMS))
    assert row["ic_ci_low"] < 0 < row["ic_ci_high"] and row["ic_slope_p_value"] < PARAMS.decay_level
    assert row["decaying"] is False and row["half_life_days"] is None
    assert row["decay_verdict"] == "cannot tell"


def test_a_precise_steady_ic_is_not_decaying_and_says_so():
    rng = np.random.default_rng(3)
    row = pd.Series(series_evidence(weekly(0.1 + rng.normal(scale=0.03, size=104)), 1, PARAMS))
    assert row["decay_verdict"] == "not decaying" and row["decay_mde"] < 0.1
    assert row["persistence"] > 0.85


def fade_market(per_day: int, n_symbols: int) -> SimulatedMarket:
    return SimulatedMarket(
        start="2021-01-01",
        end="2022-12-31",
        per_day=per_day,
        n_symbols=n_symbols,
        n_noise=10,
        planted={"fading": (0.2, 0.0), "steady": (0.1, 0.1)},
    )


def test_a_linear_fade_at_20_trades_a_day_is_flagged_or_undecided_before_half_of_it_is_gone():
    """20 trades a day on 8 symbols, a feature whose IC falls linearly from 0.2 to 0 over two years,
    read after one year (half of it gone): flagged decaying in some seeds (45% over 20 seeds in
    benchmarks/detection.py), and where it is not, the verdict is 'cannot tell' (the smallest fade
    the test sees, about 0.2, is twice what has happened), never 'not decaying'. A steady feature and
    noise are flagged at about the nominal 5% at most."""
    market = fade_market(20, 8)
    half = ts("2022-01-01")
    tables = []
    for seed in range(8):
        trades = simulated_trades(market, seed)
        entered = trades[trades["entry_time"] < half]
        tables.append(feature_evidence(period_ic(entered, market.features, PARAMS, half), PARAMS))
    rows = pd.concat(tables).set_index("feature")
    fading = rows.loc["fading"]
    assert fading["decaying"].sum() >= 2
    assert set(fading.loc[~fading["decaying"], "decay_verdict"]) == {"cannot tell"}
    assert (fading.loc[~fading["decaying"], "decay_mde"] > 0.1).all()
    assert rows.loc["steady", "decaying"].sum() <= 1
    assert rows[rows.index.str.startswith("noise")]["decaying"].mean() <= 0.05


def test_no_complete_period_gives_an_empty_series_not_a_crash():
    """A range of a few days: every period is still open (zip of unequal lengths raised)."""
    trades = small_trades(weeks=1)
    series = period_ic(trades, ["a", "b"], PARAMS, ts("2024-01-03"))
    assert series.ic.empty and series.long().empty
    table = feature_evidence(series, PARAMS)
    assert table["n_periods"].tolist() == [0, 0] and table["alpha_score"].isna().all()
    assert (table["ic_verdict"] == "cannot tell").all()


def test_small_is_an_equivalence_verdict_and_an_alias_has_none():
    """'small' needs the whole 95% interval within +-reference_ic: an IC of 0.05 whose interval is
    [+0.015, +0.085] (not significant after BH among many) is 'cannot tell', not 'small' (which the
    power alone would have said); an alias is its representative's hypothesis and has no verdict."""
    table = pd.DataFrame(
        {
            "ic_q_value": [0.12, 0.5, 0.01, np.nan, np.nan],
            "ic_ci_low": [0.015, -0.02, 0.03, -0.02, 0.0],
            "ic_ci_high": [0.085, 0.03, 0.09, 0.03, 0.1],
            "indicator": [False, False, False, False, True],
            "alias_of": [None, None, None, "b", None],
        }
    )
    assert ic_verdict(table, 0.05, 0.05).tolist() == ["cannot tell", "small", "nonzero", None, None]
