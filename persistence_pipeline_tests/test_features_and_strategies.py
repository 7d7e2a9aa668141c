"""Features are point-in-time, strategies trade only on what they could know, data is the real set."""

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.stats

from persistence_pipeline.core.dataset import training_set
from persistence_pipeline.core.design import DesignParams, model_design
from persistence_pipeline.core.features import BAR_FEATURES, bar_features
from persistence_pipeline.core.market_data import (
    DEFAULT_MAX_GAP_DAYS,
    MARKET_MOVE_LIMIT,
    SPLIT_TOLERANCE,
    split_like,
)
from persistence_pipeline.core.model import ModelParams, train_and_evaluate
from persistence_pipeline.core.strategies import FEATURES, generate_trades
from persistence_pipeline.errors import InputDataError
from persistence_pipeline.source_files import load_bars_dir, load_embedded_bars

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def bars():
    return load_embedded_bars()


@pytest.fixture(scope="module")
def all_trades(bars):
    return generate_trades(bars)


def test_embedded_data_is_the_real_set(bars):
    assert sorted(bars["symbol"].unique()) == ["AAPL", "AMZN", "GOOG", "META", "NFLX", "NVDA"]
    assert len(bars) == 16194
    assert bars["date"].min() == pd.Timestamp("2013-01-02", tz="UTC")
    assert bars["date"].max() == pd.Timestamp("2023-09-21", tz="UTC")
    aapl = bars[(bars["symbol"] == "AAPL") & (bars["date"] == pd.Timestamp("2014-06-09", tz="UTC"))]
    assert aapl["close"].iloc[0] == pytest.approx(23.424999237060547)  # split-adjusted close of the source


def test_features_use_no_future_bars(bars):
    """Features of every day up to a cut are identical whether or not later bars exist."""
    cut = pd.Timestamp("2019-06-28", tz="UTC")
    full = bar_features(bars)
    early = bars[bars["date"] <= cut]
    truncated = bar_features(early)
    pd.testing.assert_frame_equal(full.loc[early.index], truncated, check_exact=False, rtol=1e-12)


def test_zscore_and_rsi_by_hand(bars):
    one = bars[bars["symbol"] == "NVDA"].reset_index(drop=True)
    features = bar_features(one)
    t = 300
    window = one["close"].iloc[t - 19 : t + 1]
    assert features["zscore_20"].iloc[t] == pytest.approx(
        (window.iloc[-1] - window.mean()) / window.std(ddof=1)
    )
    change = one["close"].diff().to_numpy()
    gain = loss = None
    for i in range(1, t + 1):  # Wilder's smoothing, brute force
        g, l_ = max(change[i], 0.0), max(-change[i], 0.0)
        if i < 14:
            continue
        if gain is None:
            gain, loss = np.mean(np.clip(change[1:15], 0, None)), np.mean(np.clip(-change[1:15], 0, None))
            continue
        gain, loss = gain + (g - gain) / 14, loss + (l_ - loss) / 14
    assert gain is not None and loss is not None
    assert features["rsi_14"].iloc[t] == pytest.approx(100 - 100 / (1 + gain / loss), rel=1e-6)


def test_trades_enter_after_the_decision_and_carry_every_feature(bars, all_trades):
    assert list(all_trades.columns[9:]) == FEATURES
    assert len(FEATURES) == 19
    assert set(all_trades["strategy"]) == {"mean_reversion", "momentum_breakout"}
    assert (all_trades["exit_time"] >= all_trades["entry_time"]).all()
    assert np.isfinite(all_trades[FEATURES].to_numpy()).all()
    assert all_trades["trade_id"].is_unique
    ret = all_trades["side"] * (all_trades["exit_price"] / all_trades["entry_price"] - 1)
    np.testing.assert_allclose(all_trades["return"], ret)
    # the entry price is the next day's open: the decision-day features cannot contain it
    sample = all_trades.iloc[::250]
    for _, trade in sample.iterrows():
        sym = bars[bars["symbol"] == trade["symbol"]].reset_index(drop=True)
        entry_day = trade["entry_time"].tz_convert("America/New_York").normalize().tz_localize(None)
        position = int(np.flatnonzero(sym["date"].dt.tz_localize(None) == entry_day)[0])
        assert trade["entry_price"] == sym["open"].iloc[position]
        features = bar_features(sym.iloc[:position])  # bars up to the decision day only
        np.testing.assert_allclose(
            trade[BAR_FEATURES[:14]].to_numpy(float), features[BAR_FEATURES[:14]].iloc[-1], rtol=1e-9
        )


def test_trades_are_deterministic(bars, all_trades):
    pd.testing.assert_frame_equal(generate_trades(bars), all_trades)


def test_user_ohlcv_directory_gives_the_same_trades(tmp_path, bars):
    subset = bars[bars["symbol"].isin(["AAPL", "NVDA"])]
    for symbol, group in subset.groupby("symbol"):
        frame = group.drop(columns="symbol").assign(date=group["date"].dt.strftime("%Y-%m-%d"))
        frame.to_csv(tmp_path / f"{symbol}.csv", index=False) if symbol == "AAPL" else frame.to_parquet(
            tmp_path / f"{symbol}.parquet"
        )
    loaded = load_bars_dir(tmp_path)
    pd.testing.assert_frame_equal(generate_trades(loaded), generate_trades(subset.reset_index(drop=True)))


def test_embedded_bars_pass_the_split_and_gap_checks_unchanged(tmp_path, bars):
    """The embedded bars (split-adjusted) read through the user's bar loader, every check on, are the
    embedded bars: no split-like jump and no gap longer than max_gap_days = 7."""
    for symbol, group in bars.groupby("symbol"):
        group.drop(columns="symbol").assign(date=group["date"].dt.strftime("%Y-%m-%d")).to_csv(
            tmp_path / f"{symbol}.csv", index=False
        )
    pd.testing.assert_frame_equal(load_bars_dir(tmp_path), bars, check_exact=True)
    same_symbol = bars["symbol"].eq(bars["symbol"].shift())
    overnight = (bars["open"] / bars["close"].shift())[same_symbol].to_numpy()
    assert np.isnan(split_like(overnight)).all()
    assert bars.groupby("symbol")["date"].diff().dt.days.max() <= DEFAULT_MAX_GAP_DAYS


def _synthetic_bars(seed: int, n: int = 120) -> pd.DataFrame:
    """Daily bars opening exactly at the previous close (overnight ratio 1)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame(
        {
            "date": pd.bdate_range("2021-01-04", periods=n).strftime("%Y-%m-%d"),
            "open": open_,
            "high": np.maximum(open_, close) * 1.01,
            "low": np.minimum(open_, close) * 0.99,
            "close": close,
            "volume": rng.integers(1_000, 2_000, n),
        }
    )


def _jump(bars: pd.DataFrame, at: int, factor: float) -> pd.DataFrame:
    """Every price from bar `at` on times `factor`: bar `at` opens at `factor` x the previous close."""
    prices = ["open", "high", "low", "close"]
    scaled = bars.copy()
    scaled.loc[at:, prices] = scaled.loc[at:, prices] * factor
    return scaled


@pytest.mark.parametrize(
    ("factor", "looks_like"),
    [
        (0.5, "2:1 split"),
        (1 / 3, "3:1 split"),
        (0.25 * 1.04, "4:1 split"),
        (2 / 3, "3:2 split"),
        (2.0, "1:2 reverse split"),
        (1.5 * 0.96, "2:3 reverse split"),
    ],
)
def test_a_split_like_jump_of_one_symbol_is_refused(tmp_path, factor, looks_like):
    _jump(_synthetic_bars(0), 50, factor).to_csv(tmp_path / "AAA.csv", index=False)
    _synthetic_bars(1).to_csv(tmp_path / "BBB.csv", index=False)
    with pytest.raises(InputDataError) as error:
        load_bars_dir(tmp_path)
    day = _synthetic_bars(0)["date"].iloc[50]
    assert str(error.value) == (
        f"file {tmp_path / 'AAA.csv'}, column 'open', row 51: AAA {day} opens at {factor:.2f}x the previous "
        f"close, like an unadjusted {looks_like}: use split-adjusted bars (or set "
        "trade_source.split_check to false if the move is real)"
    )


def test_a_real_move_that_looks_like_a_split_passes_with_the_check_off(tmp_path):
    _jump(_synthetic_bars(0), 50, 0.5).to_csv(tmp_path / "AAA.csv", index=False)
    assert len(load_bars_dir(tmp_path, split_check=False)) == 120


def test_a_symbol_alone_is_judged_by_its_own_jump(tmp_path):
    _jump(_synthetic_bars(0), 50, 0.5).to_csv(tmp_path / "AAA.csv", index=False)
    with pytest.raises(
        InputDataError, match=r"AAA.csv, column 'open', row 51: .* like an unadjusted 2:1 split"
    ):
        load_bars_dir(tmp_path)


@pytest.mark.parametrize("factor", [0.5 * 1.06, 0.5 * 0.94, 0.8, 1.3, 2.0 * 1.06])
def test_a_jump_that_is_not_split_like_passes(tmp_path, factor):
    _jump(_synthetic_bars(0), 50, factor).to_csv(tmp_path / "AAA.csv", index=False)
    _synthetic_bars(1).to_csv(tmp_path / "BBB.csv", index=False)
    assert len(load_bars_dir(tmp_path)) == 240


def test_a_split_like_jump_of_the_whole_market_passes(tmp_path):
    """Every symbol halving overnight is the market (more than MARKET_MOVE_LIMIT), not a split."""
    assert MARKET_MOVE_LIMIT == 0.15 and SPLIT_TOLERANCE == 0.05
    _jump(_synthetic_bars(0), 50, 0.5).to_csv(tmp_path / "AAA.csv", index=False)
    _jump(_synthetic_bars(1), 50, 0.8).to_csv(tmp_path / "BBB.csv", index=False)  # down 20%
    _jump(_synthetic_bars(2), 50, 0.5).to_csv(tmp_path / "CCC.csv", index=False)
    assert len(load_bars_dir(tmp_path)) == 360
    # one of three symbols halving while the others move 10% is a split
    _jump(_synthetic_bars(1), 50, 0.9).to_csv(tmp_path / "BBB.csv", index=False)
    _synthetic_bars(2).to_csv(tmp_path / "CCC.csv", index=False)
    with pytest.raises(InputDataError, match=r"AAA.csv, column 'open', row 51: .* unadjusted 2:1 split"):
        load_bars_dir(tmp_path)


def test_a_single_symbol_source_drops_the_market_twins_of_its_own_features():
    """Issue 12: on one symbol the market features are the symbol's own (to 4e-16): the design
    keeps the earlier of each pair and says which it dropped; a near-twin is kept."""
    bars = load_embedded_bars()
    trades = generate_trades(bars[bars["symbol"] == "AAPL"].reset_index(drop=True))
    gap = (trades["market_return_5"] - trades["momentum_5"]).abs().max()
    assert 0 <= gap < 1e-12
    design = model_design(trades, FEATURES, DesignParams())
    assert design.duplicates == {"market_return_5": "momentum_5", "market_volatility_20": "volatility_20"}
    assert "market_return_5" not in design.features and "momentum_5" in design.features
    nudged = trades.assign(market_return_5=trades["momentum_5"] + 1e-6)
    assert "market_return_5" not in model_design(nudged, FEATURES, DesignParams()).duplicates
    assert model_design(generate_trades(bars), FEATURES, DesignParams()).duplicates == {}


def mirrored_pairs(n_days: int = 300, seed: int = 3) -> pd.DataFrame:
    """Each day a long and a short trade on the same bar (same features), whose returns are exact
    mirrors: the price moves 1% per unit of `momentum_5` plus noise; `volatility_20` is noise."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2021-01-04", periods=n_days, tz="UTC") + pd.Timedelta(hours=14, minutes=30)
    momentum, volatility = rng.normal(size=n_days), rng.normal(size=n_days)
    move = 0.01 * momentum + rng.normal(scale=0.02, size=n_days)
    strategy = np.where(np.arange(n_days) % 2 == 0, "mean_reversion", "momentum_breakout")
    signal = rng.uniform(0, 2, n_days)
    frames = []
    for side in (1, -1):
        frames.append(
            pd.DataFrame(
                {
                    "trade_id": [f"{side:+d}{i:04d}" for i in range(n_days)],
                    "strategy": strategy
                    if side == 1
                    else np.where(strategy == "mean_reversion", "momentum_breakout", "mean_reversion"),
                    "entry_time": days,
                    "exit_time": days + pd.Timedelta(hours=20),
                    "side": side,
                    "return": side * move,
                    "momentum_5": momentum,
                    "volatility_20": volatility,
                    "signal_strength": signal,
                }
            )
        )
    return pd.concat(frames).sort_values(["entry_time", "trade_id"]).reset_index(drop=True)


def test_the_model_sees_the_trades_direction_and_strategy():
    """Mirrored pairs (a long and a short on the same bar, returns +-r, identical features): the raw
    feature has no IC with the trade's return and no model of raw features can predict it; side-
    aligned, `momentum_5` predicts both trades of a pair (OOS rank IC about 0.4 against 0 raw)."""
    trades = mirrored_pairs()
    features = ["momentum_5", "volatility_20", "signal_strength"]
    design = model_design(trades, features, DesignParams())
    assert design.features == [
        "momentum_5",
        "volatility_20",
        "signal_strength@mean_reversion",
        "signal_strength@momentum_breakout",
        "strategy@mean_reversion",
        "strategy@momentum_breakout",
        "direction",
    ]
    modelled = design.trades
    # balanced sides: centred at the mean, so the aligned column carries nothing of the side
    momentum = trades["momentum_5"] - trades["momentum_5"].mean()
    np.testing.assert_allclose(modelled["momentum_5"], momentum * trades["side"], atol=1e-15)
    np.testing.assert_array_equal(modelled["volatility_20"], trades["volatility_20"])
    reversion = trades["strategy"] == "mean_reversion"
    np.testing.assert_array_equal(
        modelled["signal_strength@mean_reversion"], trades["signal_strength"].where(reversion, 0.0)
    )
    np.testing.assert_array_equal(modelled["direction"], trades["side"])
    raw_ic = scipy.stats.spearmanr(trades["momentum_5"], trades["return"]).statistic
    aligned_ic = scipy.stats.spearmanr(modelled["momentum_5"], trades["return"]).statistic
    assert abs(raw_ic) < 0.02 and aligned_ic > 0.3

    def oos_rank_ic(params: DesignParams) -> float:
        data = training_set(trades, pd.Timestamp("2030-01-01", tz="UTC"), params)
        fitted = train_and_evaluate(data.X, data.y, data.entry, data.exit, data.features, ModelParams())
        return fitted.metrics.rank_ic

    raw = oos_rank_ic(DesignParams(directional=(), per_strategy=()))
    assert abs(raw) < 0.1 and oos_rank_ic(DesignParams()) > 0.3
    with pytest.raises(ValueError, match="may not be named 'direction'"):
        model_design(trades.rename(columns={"volatility_20": "direction"}), ["direction"], DesignParams())


def test_a_directional_feature_is_centred_so_that_it_carries_nothing_of_the_side():
    pairs = mirrored_pairs()
    trades = pd.concat([pairs, pairs[pairs["side"] == 1].head(100)], ignore_index=True)  # more longs
    trades = trades.assign(rsi_14=np.linspace(10.0, 90.0, len(trades)))
    design = model_design(trades, ["rsi_14", "momentum_5"], DesignParams())
    side = trades["side"].to_numpy(dtype="float64")
    assert abs(side.mean()) > 0.01
    for feature in ["rsi_14", "momentum_5"]:
        x = trades[feature].to_numpy(dtype="float64")
        # brute force: the centre found by a root search of the covariance with the side
        centre = scipy.optimize.brentq(lambda c, x=x: np.cov((x - c) * side, side)[0, 1], -1e3, 1e3)
        assert design.centres[feature] == pytest.approx(centre, abs=1e-9)
        np.testing.assert_allclose(design.trades[feature], (x - centre) * side)
    uncentred = model_design(trades, ["rsi_14"], DesignParams(centred=False))
    assert uncentred.centres == {}
    np.testing.assert_array_equal(uncentred.trades["rsi_14"], trades["rsi_14"] * trades["side"])
    longs = trades[trades["side"] == 1]
    assert model_design(longs, ["rsi_14"], DesignParams()).centres == {"rsi_14": 0.0}  # one side: as it is


def test_no_directional_column_is_the_side_on_the_embedded_data(all_trades):
    """Multiplied by the side uncentred, rsi_14, price_position_252, bollinger_pctb_50 and
    drawdown_from_high_252 correlated with it at +0.97, +0.92, +0.86 and -0.62 over 2014-2023, and
    momentum_60 at +0.65 in 2015: the side, under another name. As a run's model sees them (the
    design built on the run's trades: here each year and the whole span), no directional column
    correlates with the side above 0.5."""
    trades = all_trades[all_trades["entry_time"] >= pd.Timestamp("2014-01-01", tz="UTC")]
    spans = [trades, *(year for _, year in trades.groupby(trades["entry_time"].dt.year))]
    for span in spans:
        design = model_design(span, list(FEATURES), DesignParams())
        side = span["side"].to_numpy(dtype="float64")
        for feature in DesignParams().directional:
            correlation = np.corrcoef(design.trades[feature].to_numpy(dtype="float64"), side)[0, 1]
            assert abs(correlation) < 0.5, (feature, span["entry_time"].dt.year.iloc[0], correlation)
    before = model_design(trades, list(FEATURES), DesignParams(centred=False))
    side = trades["side"].to_numpy(dtype="float64")
    assert np.corrcoef(before.trades["rsi_14"].to_numpy(dtype="float64"), side)[0, 1] > 0.9
