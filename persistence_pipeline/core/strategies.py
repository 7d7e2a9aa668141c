"""Built-in point-in-time strategies that turn daily bars into trades.

Both strategies decide at the close of day t from the features of day t (see features.py), enter
at the open of day t + 1 and exit at a close. A signal is taken on every day it fires, so trades of
one symbol can overlap in time (this is why model evaluation purges overlapping trades).

- mean_reversion: long when zscore_20 < -z_entry and RSI < 50, short when zscore_20 > z_entry and
  RSI > 50; exits at the first close where the z-score has crossed back through zero, or after
  `max_hold` days.
- momentum_breakout: long when the close breaks above the prior 20-day high with positive 20-day
  momentum, short on the mirror image; exits at the first close beyond a stop of `stop_atr` ATRs
  against the trade, or after `max_hold` days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from persistence_pipeline.core.features import BAR_FEATURES, WARMUP_BARS, bar_features
from persistence_pipeline.core.schema import realized_return

STRATEGY_FEATURES = ["signal_strength", "strategy_confidence"]
FEATURES = [*BAR_FEATURES, *STRATEGY_FEATURES]
STRATEGIES = ("mean_reversion", "momentum_breakout")
NEW_YORK_OPEN = pd.Timedelta(hours=9, minutes=30)
NEW_YORK_CLOSE = pd.Timedelta(hours=16)


@dataclass(frozen=True)
class StrategyParams:
    z_entry: float = 1.0
    breakout_window: int = 20
    stop_atr: float = 2.0
    max_hold: int = 10


def _session_time(dates: pd.Series, offset: pd.Timedelta) -> pd.Series:
    """A bar date plus a New York wall-clock time, as a UTC timestamp."""
    local = dates.dt.tz_localize(None) + offset
    return local.dt.tz_localize("America/New_York").dt.tz_convert("UTC").dt.as_unit("us")


def _signals(name: str, bars: pd.DataFrame, features: pd.DataFrame, params: StrategyParams) -> pd.DataFrame:
    """Rows (index of `bars`) where the strategy fires, with side, strength and confidence."""
    z, rsi = features["zscore_20"], features["rsi_14"]
    if name == "mean_reversion":
        side = np.where(
            (z < -params.z_entry) & (rsi < 50), 1, np.where((z > params.z_entry) & (rsi > 50), -1, 0)
        )
        strength = z.abs()
        confidence = ((rsi - 50).abs() / 50).clip(0, 1)
    else:
        grouped = bars.groupby("symbol", sort=False)["close"]
        prior_high = grouped.transform(lambda c: c.shift().rolling(params.breakout_window).max())
        prior_low = grouped.transform(lambda c: c.shift().rolling(params.breakout_window).min())
        atr = features["atr_14_pct"] * bars["close"]
        momentum = features["momentum_20"]
        long_ = (bars["close"] > prior_high) & (momentum > 0)
        short = (bars["close"] < prior_low) & (momentum < 0)
        side = np.where(long_, 1, np.where(short, -1, 0))
        distance = np.where(side > 0, bars["close"] - prior_high, prior_low - bars["close"])
        strength = pd.Series(distance, index=bars.index) / atr
        confidence = (features["trend_slope_20"].abs() / features["volatility_20"] * np.sqrt(20)).clip(0, 1)
    out = pd.DataFrame(
        {"side": side, "signal_strength": strength, "strategy_confidence": confidence}, index=bars.index
    )
    return out[out["side"] != 0]


def _exits(
    name: str, bars: pd.DataFrame, features: pd.DataFrame, entries: pd.DataFrame, params: StrategyParams
) -> np.ndarray:
    """Positional index of the exit bar of each signal (decided at t, entered at t + 1)."""
    position = entries["position"].to_numpy()
    side = entries["side"].to_numpy()
    last = entries["last_position"].to_numpy()
    horizon = np.arange(1, params.max_hold + 1)
    candidates = np.minimum(position[:, None] + horizon[None, :], last[:, None])
    if name == "mean_reversion":
        z = features["zscore_20"].to_numpy()
        hit = (z[candidates] * side[:, None] >= 0) & ~np.isnan(z[candidates])
    else:
        close = bars["close"].to_numpy()
        entry_price = bars["open"].to_numpy()[position + 1]
        stop = entry_price - side * params.stop_atr * (features["atr_14_pct"].to_numpy() * close)[position]
        hit = (close[candidates] - stop[:, None]) * side[:, None] <= 0
    hit[:, -1] = True
    return candidates[np.arange(len(candidates)), hit.argmax(axis=1)]


def generate_trades(bars: pd.DataFrame, params: StrategyParams = StrategyParams()) -> pd.DataFrame:
    """Every trade the built-in strategies take on `bars` (sorted by symbol, date), in the trade schema.

    A signal on a symbol's last bar has no next open and is not taken; a trade still open at the
    symbol's last bar exits at that bar's close.
    """
    bars = bars.reset_index(drop=True)
    features = bar_features(bars)
    symbols = bars["symbol"].to_numpy()
    last_position = bars.groupby("symbol", sort=False).cumcount(ascending=False).to_numpy() + np.arange(
        len(bars)
    )
    warm = bars.groupby("symbol", sort=False).cumcount().to_numpy() >= WARMUP_BARS
    parts = []
    for name in STRATEGIES:
        signals = _signals(name, bars, features, params)
        position = signals.index.to_numpy()
        keep = (position < last_position[position]) & warm[position]
        keep &= (
            features.loc[signals.index].notna().all(axis=1).to_numpy()
            & np.isfinite(signals[STRATEGY_FEATURES]).all(axis=1).to_numpy()
        )
        signals = signals[keep]
        position = signals.index.to_numpy()
        entries = pd.DataFrame(
            {
                "position": position,
                "side": signals["side"].to_numpy(),
                "last_position": last_position[position],
            }
        )
        exit_position = _exits(name, bars, features, entries, params)
        entry_dates = bars["date"].iloc[position + 1].reset_index(drop=True)
        trades = pd.DataFrame(
            {
                "trade_id": [
                    f"{name}:{s}:{d:%Y-%m-%d}" for s, d in zip(symbols[position], entry_dates, strict=True)
                ],
                "symbol": symbols[position],
                "strategy": name,
                "entry_time": _session_time(entry_dates, NEW_YORK_OPEN),
                "exit_time": _session_time(
                    bars["date"].iloc[exit_position].reset_index(drop=True), NEW_YORK_CLOSE
                ),
                "entry_price": bars["open"].to_numpy()[position + 1],
                "exit_price": bars["close"].to_numpy()[exit_position],
                "side": signals["side"].to_numpy().astype("int8"),
            }
        )
        for column in BAR_FEATURES:
            trades[column] = features[column].to_numpy()[position]
        for column in STRATEGY_FEATURES:
            trades[column] = signals[column].to_numpy()
        parts.append(trades)
    trades = pd.concat(parts, ignore_index=True)
    trades.insert(
        8,
        "return",
        realized_return(
            trades["side"].to_numpy(), trades["entry_price"].to_numpy(), trades["exit_price"].to_numpy()
        ),
    )
    return trades.sort_values(["entry_time", "trade_id"], kind="stable").reset_index(drop=True)
