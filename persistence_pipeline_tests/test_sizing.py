"""Alpha-based sizing with costs (core/sizing.py): the rule by hand, no look-ahead, every figure
against a brute-force loop, costs in the labels, and the books judged on simulated markets: the sized
book earns more per unit of risk than the strategies on planted signal, and no more on noise."""

import math

import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.core.dataset import TrainingSet
from persistence_pipeline.core.model import ModelParams, train_and_evaluate
from persistence_pipeline.core.sizing import (
    SizingParams,
    book_performance,
    cumulative_pnl,
    fold_positions,
    sizing_line,
    walk_forward_books,
)
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades

pytestmark = pytest.mark.core


def test_positions_by_hand():
    train_prediction = np.array([0.02, -0.01, 0.005, 0.0])
    train_label = np.array([0.03, -0.02, 0.01, -0.01])
    test_prediction = np.array([0.01, -0.02, 0.2])
    sd = np.std(train_label)
    scale = np.mean(np.abs(train_prediction / sd))
    position, predicted_sd = fold_positions(train_prediction, train_label, test_prediction, None, None, 3.0)
    assert predicted_sd == pytest.approx([sd] * 3)
    assert position == pytest.approx([0.01 / sd / scale, 0.0, 3.0])  # negative: 0; beyond the cap: 3
    # with the volatility feature: each trade's sd is scaled by its volatility over the training median
    train_vol, test_vol = np.array([1.0, 2.0, 3.0, 4.0]), np.array([5.0, 2.5, np.nan])
    position, predicted_sd = fold_positions(
        train_prediction, train_label, test_prediction, train_vol, test_vol, 3.0
    )
    relative_train = train_vol / 2.5
    scale = np.mean(np.abs(train_prediction / (sd * relative_train)))
    assert predicted_sd == pytest.approx([sd * 2.0, sd * 1.0, sd * 1.0])  # a missing value: the median's
    assert position[0] == pytest.approx(0.01 / (2 * sd) / scale)
    # nothing to size on: constant training labels
    position, _ = fold_positions(train_prediction, np.zeros(4), test_prediction, None, None, 3.0)
    assert (position == 0).all()


def test_sizing_params_are_checked():
    with pytest.raises(ValueError, match="cost_bps"):
        SizingParams(cost_bps=-1)
    with pytest.raises(ValueError, match="max_position"):
        SizingParams(max_position=0)
    assert SizingParams(cost_bps=5).round_trip_cost == pytest.approx(0.001)


MARKET = SimulatedMarket(
    start="2021-01-01", end="2021-12-31", per_day=40, n_symbols=30, n_noise=10, planted={"signal": (0.1, 0.1)}
)
NULL_MARKET = SimulatedMarket(start="2021-01-01", end="2021-12-31", per_day=40, n_symbols=30, n_noise=10)
SIZING = SizingParams(cost_bps=5)


def simulated_books(market: SimulatedMarket, seed: int, changed_after: float | None = None) -> pd.DataFrame:
    """A run's OOS trades on a simulated market with predictions and positions, as profit_model makes
    them (labels net of costs, ridge, purged walk-forward, the volatility feature scaling the sd).
    `changed_after`: the trades entered after that share of the run get other features, another
    volatility and other outcomes."""
    trades = simulated_trades(market, seed)
    trades["volatility_20"] = np.exp(np.random.default_rng(seed).normal(size=len(trades)))
    if changed_after is not None:
        later = trades.index >= int(len(trades) * changed_after)
        rng = np.random.default_rng(99)
        for column in [*market.features, "volatility_20"]:
            trades.loc[later, column] = rng.permutation(trades.loc[later, column].to_numpy())
        trades.loc[later, "return"] = -3 * trades.loc[later, "return"]
    X = trades[market.features].to_numpy()
    y = trades["return"].to_numpy() - SIZING.round_trip_cost
    fitted = train_and_evaluate(
        X, y, trades["entry_time"].to_numpy(), trades["exit_time"].to_numpy(), market.features, ModelParams()
    )
    return walk_forward_books(fitted, trades, X, y, trades["volatility_20"].to_numpy(), SIZING.max_position)


@pytest.mark.parametrize("changed_after", [0.3, 0.45, 0.75])
def test_a_position_depends_on_nothing_after_its_trade_entered(changed_after):
    """Every trade entered after a cut gets other features, another volatility and other outcomes:
    each position of a trade entered before the cut stays as it was, whichever fold (and whichever
    place in its fold's test block) the cut falls in; the positions after it do change. A scale or a
    volatility median taken from a test block, or a model that saw a test outcome, fails this."""
    books = simulated_books(MARKET, 0)
    changed = simulated_books(MARKET, 0, changed_after)
    before = books.index < int(len(simulated_trades(MARKET, 0)) * changed_after)
    assert before.sum() > 100 and (~before).sum() > 100
    pd.testing.assert_series_equal(books.loc[before, "position"], changed.loc[before, "position"])
    pd.testing.assert_series_equal(books.loc[before, "prediction"], changed.loc[before, "prediction"])
    assert not np.allclose(books.loc[~before, "position"], changed.loc[~before, "position"])


def brute_force(books: pd.DataFrame, position: np.ndarray, cost: float) -> dict[str, float]:
    """The book's figures by explicit loops over trades and days."""
    pnl_by_day: dict[pd.Timestamp, float] = {}
    day = pd.Timestamp(books["exit_time"].min()).tz_convert("UTC").normalize()
    last = pd.Timestamp(books["exit_time"].max()).tz_convert("UTC").normalize()
    while day <= last:
        if day.weekday() < 5:
            pnl_by_day[day] = 0.0
        day += pd.Timedelta(days=1)
    total, wins, traded = 0.0, 0, 0
    for p, r, exit_time in zip(position, books["gross_return"], books["exit_time"], strict=True):
        pnl = p * (r - cost)
        exit_day = pd.Timestamp(exit_time).tz_convert("UTC").normalize()
        pnl_by_day[exit_day] = pnl_by_day.get(exit_day, 0.0) + pnl
        total += pnl
        if p > 0:
            traded += 1
            wins += pnl > 0
    daily = [pnl_by_day[d] for d in sorted(pnl_by_day)]
    mean = sum(daily) / len(daily)
    sd = math.sqrt(sum((v - mean) ** 2 for v in daily) / (len(daily) - 1))
    peak, cumulative, drawdown = 0.0, 0.0, 0.0
    for v in daily:
        cumulative += v
        peak = max(peak, cumulative)
        drawdown = max(drawdown, peak - cumulative)
    exposure = float(sum(position))
    return {
        "n_trades": traded,
        "exposure": exposure,
        "total_return": total,
        "mean_return": total / exposure,
        "hit_rate": wins / traded,
        "sharpe": mean / sd * math.sqrt(261),
        "max_drawdown": drawdown,
        "turnover": 2 * exposure / len(daily),
    }


def test_every_figure_by_brute_force_gross_and_net():
    books = simulated_books(MARKET, 1)
    table = book_performance(books, SIZING).set_index(["book", "costs"])
    assert table.index.tolist() == [(b, c) for b in ("sized", "equal", "actual") for c in ("gross", "net")]
    positions = {
        "sized": books["position"].to_numpy(),
        "equal": (books["prediction"] > 0).to_numpy(dtype="float64"),
        "actual": np.ones(len(books)),
    }
    for book, position in positions.items():
        for costs, cost in (("gross", 0.0), ("net", SIZING.round_trip_cost)):
            expected = brute_force(books, position, cost)
            for column, value in expected.items():
                assert table.loc[(book, costs), column] == pytest.approx(value, rel=1e-9), (
                    book,
                    costs,
                    column,
                )
        gross, net = table.loc[(book, "gross")], table.loc[(book, "net")]
        assert net["total_return"] == pytest.approx(
            gross["total_return"] - SIZING.round_trip_cost * gross["exposure"]
        )
    curve = cumulative_pnl(books, SIZING)
    assert curve.columns.tolist() == ["sized", "equal", "actual"]
    assert curve.iloc[-1].to_numpy() == pytest.approx(
        table.xs("net", level="costs")["total_return"].to_numpy()
    )
    line = sizing_line(table.reset_index().assign(cost_bps=SIZING.cost_bps))
    net = table.xs("net", level="costs")
    books = ("sized", "equal", "actual")
    assert line == (
        "OOS net of 5 bps per side, per unit of notional: "
        + ", ".join(
            f"{b} {net.loc[b, 'mean_return'] * 1e4:+.1f} bps on {net.loc[b, 'exposure']:.0f}" for b in books
        )
        + " trade notionals; Sharpe "
        + ", ".join(f"{b} {net.loc[b, 'sharpe']:+.2f}" for b in books)
    )
    assert sizing_line(table.reset_index().iloc[:0]).startswith("OOS sizing: not computed")


def test_the_label_is_net_of_costs_and_a_ridge_only_moves_its_intercept():
    """Subtracting the round-trip cost from every label leaves a ridge's coefficients, its rank IC and
    its SHAP-relevant slopes alone and moves every prediction by the cost: what changes is which
    trades pay (prediction > 0), the hit rate and the mean returns."""
    trades = simulated_trades(MARKET, 2).assign(strategy="s")
    gross = TrainingSet(trades, MARKET.features, len(trades), 0)
    net = TrainingSet(trades, MARKET.features, len(trades), 0, cost=SIZING.round_trip_cost)
    assert net.y == pytest.approx(gross.y - 0.001)
    times = (trades["entry_time"].to_numpy(), trades["exit_time"].to_numpy())
    fit_gross = train_and_evaluate(gross.X, gross.y, *times, MARKET.features, ModelParams())
    fit_net = train_and_evaluate(net.X, net.y, *times, MARKET.features, ModelParams())
    assert fit_net.oos_prediction == pytest.approx(fit_gross.oos_prediction - 0.001, abs=1e-12)
    assert fit_net.metrics.rank_ic == pytest.approx(fit_gross.metrics.rank_ic)
    assert fit_net.metrics.n_taken < fit_gross.metrics.n_taken


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_planted_signal_the_sized_book_beats_the_strategies_and_on_noise_it_does_not(seed):
    """Net of 5 bps a side. Planted IC 0.1: the sized book's Sharpe and return per unit of notional
    beat the strategies' (which pay costs on every trade of a coin flip), and its return per unit
    beats the equal book's. Noise: the model learns that the average trade loses its costs
    and takes few trades; what it takes earns per unit of notional what the strategies' trades earn,
    within two standard errors, and loses money."""
    planted = (
        book_performance(simulated_books(MARKET, seed), SIZING).query("costs == 'net'").set_index("book")
    )
    assert planted.loc["sized", "sharpe"] > planted.loc["actual", "sharpe"] + 2
    assert planted.loc["sized", "mean_return"] > 0 > planted.loc["actual", "mean_return"]
    assert planted.loc["sized", "mean_return"] > planted.loc["equal", "mean_return"]
    books = simulated_books(NULL_MARKET, seed)
    null = book_performance(books, SIZING).query("costs == 'net'").set_index("book")
    assert null.loc["sized", "total_return"] < 0
    # per unit of notional, no edge over the strategies on noise: within 2 standard errors of theirs
    # (each clustered by exit day: trades that exit together share the market's move)
    net = books["gross_return"].to_numpy() - SIZING.round_trip_cost
    day = pd.to_datetime(books["exit_time"], utc=True).dt.normalize().to_numpy()

    def standard_error(position: np.ndarray) -> float:
        residual = position * (net - (position @ net) / position.sum())
        return float(np.sqrt(pd.Series(residual).groupby(day).sum().pow(2).sum()) / position.sum())

    se = np.hypot(standard_error(books["position"].to_numpy()), standard_error(np.ones(len(books))))
    assert abs(null.loc["sized", "mean_return"] - null.loc["actual", "mean_return"]) < 2 * se
    assert null.loc["sized", "exposure"] < 0.4 * null.loc["actual", "exposure"]
