"""Features are point-in-time, strategies trade only on what they could know, data is the real set."""

import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.core.features import BAR_FEATURES, bar_features
from persistence_pipeline.core.market_data import load_bars_dir, load_embedded_bars
from persistence_pipeline.core.strategies import FEATURES, generate_trades

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
