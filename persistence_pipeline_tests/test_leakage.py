"""The leak guard (core/leakage.py): its statistic against independent computations, and its
false-positive rate and power where users run it: 90-day windows, the embedded data's density and
dense simulated trade logs (benchmarks/leak_guard.py measures the same at scale)."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from persistence_pipeline.core.alpha import with_leak_flags
from persistence_pipeline.core.dataset import training_set
from persistence_pipeline.core.design import DesignParams
from persistence_pipeline.core.importance import ImportanceParams
from persistence_pipeline.core.leakage import (
    LeakScreen,
    LeakScreenParams,
    TradeKeys,
    clustered_rank_ic,
    implausible_performance,
    leak_suspicion,
    screen_features,
    screen_reach,
    suspect_run_line,
)
from persistence_pipeline.core.metrics import judge_oos
from persistence_pipeline.core.model import ModelParams, standardized_coefficients, train_and_evaluate
from persistence_pipeline.core.priors import PriorParams, empirical_bayes_prior, empirical_bayes_priors
from persistence_pipeline.core.strategies import generate_trades
from persistence_pipeline.source_files import load_embedded_bars
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades, warm_against_cold

pytestmark = pytest.mark.core

PARAMS = LeakScreenParams()


def keys(n: int, per_day: int, n_symbols: int = 8, strategy: str = "s", seed: int = 0) -> TradeKeys:
    rng = np.random.default_rng(seed)
    entry = np.datetime64("2021-01-04T14:30", "us") + (np.arange(n) // per_day) * np.timedelta64(1, "D")
    return TradeKeys(
        np.full(n, strategy),
        rng.choice(["1", "-1"], n),
        rng.integers(0, n_symbols, n).astype(str),
        entry,
        entry + np.timedelta64(20, "h"),
    )


def flagged(trades: pd.DataFrame, columns: list[str]) -> list[str]:
    found = screen_features(
        trades[columns].to_numpy(dtype="float64"),
        trades["return"].to_numpy(dtype="float64"),
        columns,
        PARAMS,
        TradeKeys.of(trades),
    )
    return found["feature"].tolist()


def test_the_ic_is_the_cell_weighted_spearman():
    rng = np.random.default_rng(3)
    n = 300
    cell = rng.choice(["a", "b", "c"], n)
    y = rng.normal(size=n) + (cell == "a") * 3.0
    X = np.column_stack(
        [y + rng.normal(size=n), np.round(rng.normal(size=n)), np.where(cell == "c", 1.0, 0.0)]
    )
    day = np.datetime64("2021-01-04") + np.arange(n) // 5
    ic = clustered_rank_ic(X, y, cell, day).ic
    for j in range(2):
        expected = (
            sum(
                (cell == c).sum() * scipy.stats.spearmanr(X[cell == c, j], y[cell == c]).statistic
                for c in "abc"
            )
            / n
        )
        assert ic[j] == pytest.approx(expected)
    # an indicator of cell c is constant within every cell: it carries nothing, its IC is NaN
    assert np.isnan(ic[2])


def test_the_standard_error_matches_a_bootstrap_over_entry_days():
    """Same-day trades share the feature and a day shock, as trades entered on one bar do."""
    rng = np.random.default_rng(1)
    n_days, per_day = 60, 6
    day_of = np.repeat(np.arange(n_days), per_day)
    feature = rng.normal(size=n_days)[day_of]
    y = 0.5 * feature + 0.7 * rng.normal(size=n_days)[day_of] + rng.normal(size=n_days * per_day)
    side = rng.choice([1, -1], n_days * per_day)
    day = np.datetime64("2021-01-04") + day_of
    se = clustered_rank_ic(feature[:, None], y, side, day).se[0]
    draws = []
    for _ in range(1000):
        rows = np.concatenate([np.flatnonzero(day_of == d) for d in rng.choice(n_days, n_days)])
        draws.append(
            sum(
                (side[rows] == s).sum()
                * scipy.stats.spearmanr(feature[rows][side[rows] == s], y[rows][side[rows] == s]).statistic
                for s in (1, -1)
            )
            / len(rows)
        )
    assert se == pytest.approx(np.std(draws), rel=0.12)


def test_same_day_copies_count_once_and_independent_trades_count_each():
    rng = np.random.default_rng(4)
    n = 400
    x, y = rng.normal(size=n), rng.normal(size=n)
    one_a_day = np.datetime64("2021-01-04") + np.arange(n)
    base = clustered_rank_ic(x[:, None], y, np.zeros(n), one_a_day).se[0]
    copies = clustered_rank_ic(
        np.repeat(x, 4)[:, None], np.repeat(y, 4), np.zeros(4 * n), np.repeat(one_a_day, 4)
    ).se[0]
    assert copies == pytest.approx(base, rel=0.01)  # four copies of a trade on its day: one trade
    x4, y4 = rng.normal(size=4 * n), rng.normal(size=4 * n)
    independent = clustered_rank_ic(x4[:, None], y4, np.zeros(4 * n), np.repeat(one_a_day, 4)).se[0]
    assert independent == pytest.approx(base / 2, rel=0.15)  # four independent trades a day: four


def test_the_variance_at_the_ceiling_stays_positive_where_the_ic_is_one():
    y = np.arange(12.0)
    day = np.datetime64("2021-01-04") + np.arange(12)
    at_estimate = clustered_rank_ic(y[:, None], y, np.zeros(12), day)
    at_ceiling = clustered_rank_ic(y[:, None], y, np.zeros(12), day, at=0.15)
    assert at_estimate.ic[0] == pytest.approx(1.0) and at_estimate.se[0] == pytest.approx(0.0, abs=1e-12)
    assert at_ceiling.se[0] > 0.1


def test_a_noisy_leak_is_caught_in_a_90_day_window_at_24_trades_a_day():
    """The quarterly runs of the measured case: 24 trades a day on 8 symbols; the earlier threshold
    max(0.3, 5 / sqrt(entry days)) was 0.63 in a quarter and never caught a leak of IC 0.5."""
    market = SimulatedMarket(
        start="2021-01-01", end="2021-03-31", per_day=24, max_holding_days=1, n_noise=3, leaks={"leak": 0.5}
    )
    trades = simulated_trades(market, 0)
    assert 0.45 < scipy.stats.spearmanr(trades["leak"], trades["return"]).statistic < 0.63
    assert flagged(trades, market.columns) == ["leak"]


@pytest.mark.parametrize("holding", [1, 10])
def test_power_and_false_positives_in_90_day_windows(holding):
    """Five seeds at 25 trades a day on 8 symbols, the default window: honest features with IC up
    to 0.15 and noise are never flagged; leaks of IC 0.5 and 1.0 always; IC 0.3 in most runs where
    trades are independent (held a day). With holdings of up to 10 days the ceiling rises with the
    fewer independent stretches and IC 0.3 is out of sight (documented)."""
    market = SimulatedMarket(
        start="2021-01-01",
        end="2021-03-31",
        per_day=25,
        max_holding_days=holding,
        n_noise=4,
        planted={"honest_10": (0.1, 0.1), "honest_15": (0.15, 0.15)},
        leaks={"leak_30": 0.3, "leak_50": 0.5, "leak_100": 1.0},
    )
    found = [set(flagged(simulated_trades(market, seed), market.columns)) for seed in range(5)]
    assert all({"leak_50", "leak_100"} <= f for f in found)
    assert all(f <= {"leak_30", "leak_50", "leak_100"} for f in found)
    if holding == 1:
        assert sum("leak_30" in f for f in found) >= 4


def test_the_side_a_feature_carries_is_not_a_leak():
    """A one-signed feature times the side (as side alignment makes rsi_14) follows the side, and
    longs earn more: pooled its IC is far above the ceiling, within each side it is noise."""
    rng = np.random.default_rng(7)
    n = 1500
    trade_keys = keys(n, per_day=25)
    side = trade_keys.side.astype(int)
    y = 0.02 * side + rng.normal(scale=0.01, size=n)
    aligned = side * rng.uniform(10, 90, n)
    assert scipy.stats.spearmanr(aligned, y).statistic > 0.5
    assert screen_features(aligned[:, None], y, ["rsi_14"], PARAMS, trade_keys).empty


def test_a_leak_in_one_strategy_is_found_in_that_strategy():
    rng = np.random.default_rng(5)
    n = 3000
    a, b = keys(n // 2, 25, strategy="momentum", seed=1), keys(n // 2, 25, strategy="reversion", seed=2)
    trade_keys = TradeKeys(
        *(
            np.concatenate([getattr(a, f), getattr(b, f)])
            for f in ("strategy", "side", "symbol", "entry_time", "exit_time")
        )
    )
    y = rng.normal(size=n)
    leak = np.where(trade_keys.strategy == "momentum", y + rng.normal(scale=0.5, size=n), rng.normal(size=n))
    found = screen_features(
        np.column_stack([leak, rng.normal(size=n)]), y, ["leak", "noise"], PARAMS, trade_keys
    )
    assert found["feature"].tolist() == ["leak"] and found["screen_group"].iloc[0] == "momentum"
    assert "strategy 'momentum'" in found["reason"].iloc[0]


def test_too_few_independent_stretches_cannot_tell_but_a_copy_of_the_label_is_caught():
    """One symbol, 40 trades over 40 days held 15 days: 3 stretches. On such data honest slow
    features reach |IC| 0.94 (the embedded stocks, one at a time), so a partial leak of IC 0.9 is
    not flagged; the return itself (IC 1) is, as a copy of the label."""
    n = 40
    entry = np.datetime64("2021-01-04T14:30", "us") + np.arange(n) * np.timedelta64(1, "D")
    trade_keys = TradeKeys(
        np.full(n, "s"), np.full(n, "1"), np.full(n, "AAA"), entry, entry + np.timedelta64(15, "D")
    )
    rng = np.random.default_rng(0)
    y = rng.normal(size=n)
    partial = y + 0.2 * rng.normal(size=n)
    assert 0.85 < scipy.stats.spearmanr(partial, y).statistic < 0.97
    found = screen_features(np.column_stack([y, partial]), y, ["copy", "partial"], PARAMS, trade_keys)
    assert found["feature"].tolist() == ["copy"] and "a copy of the label" in found["reason"].iloc[0]
    reach = screen_reach(PARAMS, trade_keys).iloc[0]
    assert reach["independent_stretches"] == 3 and not reach["decides"]


def test_an_unsigned_leak_and_a_leak_in_one_side_are_caught():
    """The raw price move (the label without the side) has IC +1 among longs and -1 among shorts:
    averaged over the sides it cancels, so each side is also judged alone; likewise a leak that
    only the long trades carry."""
    rng = np.random.default_rng(9)
    n = 1600
    trade_keys = keys(n, per_day=25, n_symbols=200)
    side = trade_keys.side.astype(int)
    y = rng.normal(size=n)
    raw_move = y * side
    long_only = np.where(side == 1, y + 0.5 * rng.normal(size=n), rng.normal(size=n))
    assert abs(clustered_rank_ic(raw_move[:, None], y, trade_keys.side, trade_keys.entry_day).ic[0]) < 0.05
    found = screen_features(
        np.column_stack([raw_move, long_only, rng.normal(size=n)]),
        y,
        ["raw_move", "long_only", "noise"],
        PARAMS,
        trade_keys,
    )
    assert sorted(found["feature"]) == ["long_only", "raw_move"]
    assert found.set_index("feature").loc["long_only", "screen_group"] == "s, side 1"


def test_the_variance_is_at_least_the_one_clustered_by_symbol():
    """A slow feature read on few symbols: trades of one symbol share its level for weeks, which
    neither the day clusters nor the holding-period HAC see; the variance is then the symbol
    clusters' (brute force: the sum of each symbol's influence, squared)."""
    rng = np.random.default_rng(2)
    n, n_symbols = 2000, 5
    symbol = rng.integers(0, n_symbols, n)
    x = rng.normal(size=n_symbols)[symbol] + 0.1 * rng.normal(size=n)
    y = 0.3 * rng.normal(size=n_symbols)[symbol] + rng.normal(size=n)
    day = np.datetime64("2021-01-04") + np.arange(n) // 20
    cell = np.zeros(n)
    by_day = clustered_rank_ic(x[:, None], y, cell, day, at=0.15)
    both = clustered_rank_ic(x[:, None], y, cell, day, at=0.15, symbol=symbol.astype(str))
    assert both.se[0] > 2 * by_day.se[0]
    u = (scipy.stats.rankdata(x) - (n + 1) / 2) / np.std(scipy.stats.rankdata(x))
    v = (scipy.stats.rankdata(y) - (n + 1) / 2) / np.std(scipy.stats.rankdata(y))
    ic = np.mean(u * v)
    reference = 0.15 * np.sign(ic)
    influence = u * v - reference / 2 * (u**2 + v**2) - (ic - reference)
    sums = np.array([influence[symbol == k].sum() for k in range(n_symbols)])
    assert both.se[0] == pytest.approx(np.sqrt(n_symbols / (n_symbols - 1) * (sums**2).sum()) / n)


def test_the_bound_at_the_ceiling_is_calibrated_on_independent_trades():
    """Honest features exactly AT the ceiling (rank IC 0.15), 1,000 independent trades, level 5%,
    400 draws: one test (trades of one side) flags at the nominal rate (95% of such rates fall in
    3-7%); with both sides the feature faces three tests (the sides together, each alone) and is
    flagged at most three times as often (Bonferroni), measured about twice."""
    rng = np.random.default_rng(12)
    n = 1000
    both_sides = keys(n, per_day=20, n_symbols=1000)
    one_side = TradeKeys(
        both_sides.strategy, np.full(n, "1"), both_sides.symbol, both_sides.entry_time, both_sides.exit_time
    )
    pearson = 2 * np.sin(np.pi * 0.15 / 6)
    flags = {"one": 0, "both": 0}
    for _ in range(400):
        y = rng.normal(size=n)
        x = pearson * y + np.sqrt(1 - pearson**2) * rng.normal(size=n)
        for name, trade_keys in [("one", one_side), ("both", both_sides)]:
            found = screen_features(x[:, None], y, ["x"], LeakScreenParams(level=0.05), trade_keys)
            flags[name] += not found.empty
    assert 0.025 < flags["one"] / 400 < 0.075
    assert flags["one"] < flags["both"] and flags["both"] / 400 < 0.15


def test_on_the_embedded_data_no_honest_feature_is_quarantined():
    """Every model column, in every quarter of 2013-2023 and in three-year windows, on the six
    stocks together and on each alone (the earlier screen quarantined rsi_14 and bollinger_pctb_50
    of one stock's three years)."""
    trades = generate_trades(load_embedded_bars())
    windows = [
        (a, a + pd.Timedelta(days=90)) for a in pd.date_range("2013-01-01", "2023-06-01", freq="QS", tz="UTC")
    ]
    windows += [
        (a, a + pd.DateOffset(years=3))
        for a in pd.date_range("2013-01-01", "2020-01-01", freq="3YS", tz="UTC")
    ]
    flags = {}
    for symbol in [None, *sorted(trades["symbol"].unique())]:
        source = trades if symbol is None else trades[trades["symbol"] == symbol]
        for start, end in windows:
            data = training_set(
                source[(source["entry_time"] >= start) & (source["entry_time"] < end)], end, DesignParams()
            )
            if len(data.y) < 50:
                continue
            found = screen_features(data.X, data.y, data.features, PARAMS, TradeKeys.of(data.trades))
            if not found.empty:
                flags[(symbol, start.date())] = found["feature"].tolist()
    assert not flags


def test_every_model_of_the_run_holds_out_what_any_screen_flags():
    """`late_leak` is noise in the first half of the trades and the return in the second: the one
    fold trains on the first half, whose screen cannot see it, yet its model holds it out because
    the screen over all trades flags it; `early_leak`, the other way round, is held out of the final
    model because the fold's screen flags it."""
    rng = np.random.default_rng(8)
    n = 1600
    trade_keys = keys(n, per_day=20)
    y = rng.normal(size=n)
    half = np.arange(n) < n // 2
    late = np.where(half, rng.normal(size=n), y + rng.normal(scale=0.1, size=n))
    early = np.where(half, y + rng.normal(scale=0.1, size=n), rng.normal(size=n))
    X = np.column_stack([late, early, rng.normal(size=n)])
    features = ["late_leak", "early_leak", "noise"]
    fitted = train_and_evaluate(
        X,
        y,
        trade_keys.entry_time,
        trade_keys.exit_time,
        features,
        ModelParams(n_folds=1, min_train_trades=20),
        screen=LeakScreen(X, y, features, PARAMS, trade_keys),
    )
    assert [m.tolist() for m in fitted.screen_flags] == [[False, True, False], [True, True, False]]
    assert fitted.screened is not None and fitted.screened.tolist() == [True, True, False]
    for model in [*fitted.fold_models, fitted.model]:
        assert standardized_coefficients(model)[:2].tolist() == [0.0, 0.0]  # type: ignore[index]


def test_suspicion_marks_the_quarantined_and_the_features_a_failed_check_names():
    importance = pd.DataFrame(
        {
            "feature": ["a", "b", "c", "d", "e"],
            "quarantined": [True, False, False, False, False],
            "perm_importance": [0.0, 3.0, 2.0, 1.0, 0.5],
        }
    )
    plausible = leak_suspicion(importance, None)
    assert plausible["suspect"].tolist() == [True, False, False, False, False]
    metrics = {"oos_rank_ic": 0.7, "oos_hit_rate": 0.6, "n_oos": 500, "oos_n_taken": 250}
    problem = implausible_performance(metrics, importance, 0.5, 0.8)
    assert problem is not None
    failed = leak_suspicion(importance, problem).set_index("feature")
    assert failed["suspect"].tolist() == [True, True, True, True, False]
    assert failed.loc["a", "suspect_reason"] == "quarantined by the leak screen"
    assert failed.loc["b", "suspect_reason"] == f"named by the out-of-sample check: {problem}"


def test_the_suspect_line_names_the_run_and_its_features():
    key = "2021-01-01..2021-03-31/ridge"
    history = pd.DataFrame(
        {
            "run_key": [key, key, "other"],
            "feature": ["b", "c", "b"],
            "suspect": [True, False, True],
            "suspect_reason": [
                "named by the out-of-sample check: OOS rank IC 0.700 > 0.5: more than ...",
                None,
                "x",
            ],
        }
    )
    quarantined = pd.DataFrame({"run_key": [key, "other"], "feature": ["leak", "z"]})
    assert suspect_run_line(key, history.iloc[0:0], quarantined.iloc[0:0]) is None
    assert suspect_run_line(key, history, quarantined) == (
        f"SUSPECT RUN {key}: possible leaks quarantined (held out of every model): leak; the out-of-sample "
        "check failed (OOS rank IC 0.700 > 0.5): suspected b; its suspected features feed no prior and get "
        "no alpha score"
    )
    # a warehouse written before suspicion was stored: no column, only the quarantined speak
    assert suspect_run_line(key, history.drop(columns=["suspect"]), quarantined.iloc[0:0]) is None


def test_a_suspected_leak_gets_no_alpha_score_and_sorts_last():
    table = pd.DataFrame({"feature": ["leak", "honest", "weak"], "alpha_score": [1.0, 0.4, 0.1]})
    history = pd.DataFrame(
        {
            "run_key": ["r1", "r2", "r1", "r2"],
            "feature": ["leak", "leak", "honest", "honest"],
            "quarantined": [True, False, False, False],
            "suspect": [True, True, False, pd.NA],
        }
    )
    flagged = with_leak_flags(table, history)
    assert flagged["feature"].tolist() == ["honest", "weak", "leak"]
    assert flagged["leak_runs"].tolist() == [0, 0, 2] and flagged["suspected_leak"].tolist() == [
        False,
        False,
        True,
    ]
    assert np.isnan(flagged["alpha_score"].iloc[-1])


def test_a_suspect_runs_suspected_features_feed_no_prior():
    """Brute force: the prior of a feature over three runs equals the prior over the two runs left
    when the third run names it suspect; the other features keep all three runs."""
    rows = pd.DataFrame(
        {
            "run_key": ["r1", "r2", "r3"] * 2,
            "feature": ["x"] * 3 + ["y"] * 3,
            "own_coef_raw": [0.1, 0.12, 0.9, 0.2, 0.25, 0.22],
            "own_coef_raw_std": [0.05, 0.05, 0.05, 0.1, 0.1, 0.1],
            "suspect": [False, False, True, False, False, False],
        }
    )
    priors = empirical_bayes_priors(rows, PriorParams()).set_index("feature")
    kept = empirical_bayes_priors(rows.drop(index=2).drop(columns=["suspect"]), PriorParams()).set_index(
        "feature"
    )
    # the suspect run still counts in the ages of the others (it is a run that happened)
    expected_mean, _, _ = empirical_bayes_prior(
        np.array([0.1, 0.12]), np.array([0.05, 0.05]), PriorParams().decay, np.array([2.0, 1.0])
    )
    assert (
        priors.loc["x", "prior_coef_raw"] == pytest.approx(expected_mean) and priors.loc["x", "n_runs"] == 2
    )
    assert priors.loc["y", "n_runs"] == 3 and kept.loc["y", "prior_coef_raw"] == pytest.approx(
        priors.loc["y", "prior_coef_raw"]
    )


def test_a_leak_in_one_run_is_flagged_and_hands_no_prior_to_the_next():
    """The continual-learning loop over eight quarters with a near copy of the return in the fourth
    (benchmarks/walk_forward.py, part 3): with the guard the quarter is suspect, its OOS figures
    stay honest and the next quarter's prior for the leak is noise; without it the leak quarter's
    OOS IC is about 0.95 and the leak reaches the next quarter as a prior over a standard error."""
    market = SimulatedMarket(
        start="2021-01-01", end="2022-12-31", per_day=20, planted={"a": (0.05, 0.05), "b": (-0.04, -0.04)}
    )
    runs = {
        guard: warm_against_cold(market, 0, PriorParams(), ImportanceParams(perm_repeats=1), 3, guard)
        for guard in (True, False)
    }
    guarded, open_ = (runs[g].set_index("run") for g in (True, False))
    assert guarded["suspect"].tolist() == [run == 3 for run in guarded.index]
    assert guarded.loc[3, "cold_ic"] < 0.3 and open_.loc[3, "cold_ic"] > 0.8
    assert guarded.loc[4, "leak_prior_z"] < 1.0 < open_.loc[4, "leak_prior_z"]
    assert not open_["suspect"].any()


# --- the OOS sanity judgement (core/metrics.judge_oos) -------------------------------------------


def test_the_oos_judgement_fails_only_a_model_significantly_worse_than_chance():
    """One trade a day: the day-clustered standard error is the Spearman one, sqrt(1.06 / (n - 3))
    under no signal (Fieller, Hartley and Pearson), within 15%; a model that ranks trades backwards
    is below zero, a useless one is not; thin samples and cut folds are stated."""
    rng = np.random.default_rng(5)
    n = 400
    entry = pd.Series(pd.date_range("2022-01-03", periods=n, freq="D", tz="UTC"))
    exit_ = entry + pd.Timedelta(hours=6)  # held within the day: no overlap between days
    symbol = np.array([f"S{i}" for i in range(n)])  # one trade per symbol: no symbol clusters
    realized = rng.normal(size=n)
    useless = judge_oos(rng.normal(size=n), realized, entry, exit_, symbol, 5, 5)
    assert useless.se == pytest.approx(np.sqrt(1.06 / (n - 3)), rel=0.15)
    assert not useless.below_zero and useless.caveat == ""
    backwards = judge_oos(-realized + 2 * rng.normal(size=n), realized, entry, exit_, symbol, 5, 5)
    assert backwards.rank_ic < -0.3 and backwards.below_zero
    thin = judge_oos(realized[:85], realized[:85], entry[:85], exit_[:85], symbol[:85], 2, 5)
    assert thin.caveat == "only 85 OOS trades; 2 of 5 folds, entered 2022-01-03..2022-03-28"
