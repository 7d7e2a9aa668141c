"""Point-in-time features of daily bars.

Every feature on row t uses only bars up to and including day t (its close): rolling windows look
back, never forward, and cross-sectional market features use the other symbols' bars of the same
day or earlier. A strategy decides at the close of day t and enters at the open of day t + 1, so
no feature can see the entry price or anything after it. The raw price level is deliberately not
a feature: split-adjusted levels encode future splits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The 16 bar features; the strategies add `signal_strength` and `strategy_confidence`.
BAR_FEATURES = [
    "price_position_252",
    "zscore_20",
    "rsi_14",
    "volatility_20",
    "atr_14_pct",
    "momentum_5",
    "momentum_20",
    "momentum_60",
    "volume_ratio_20",
    "trend_slope_20",
    "macd_hist_pct",
    "bollinger_pctb_50",
    "gap",
    "drawdown_from_high_252",
    "market_return_5",
    "market_volatility_20",
    "day_of_week",
]
# Bars a feature needs before it is defined; trades are only taken once every feature is.
WARMUP_BARS = 60


def _rsi(close: pd.Series, window: int) -> pd.Series:
    """Wilder's RSI (exponential smoothing with alpha = 1 / window)."""
    change = close.diff()
    gain = change.clip(lower=0).ewm(alpha=1 / window, adjust=False, min_periods=window).mean()
    loss = (-change.clip(upper=0)).ewm(alpha=1 / window, adjust=False, min_periods=window).mean()
    return 100.0 - 100.0 / (1.0 + gain / loss.replace(0.0, np.nan))


def _rolling_slope(values: pd.Series, window: int) -> pd.Series:
    """Least-squares slope of `values` on 0..window-1 over each trailing window."""
    x = np.arange(window, dtype="float64")
    x_centered = x - x.mean()
    weights = x_centered / (x_centered**2).sum()
    return values.rolling(window).apply(lambda w: float(np.dot(weights, w)), raw=True)


def _symbol_features(bars: pd.DataFrame) -> pd.DataFrame:
    close, high, low, volume = bars["close"], bars["high"], bars["low"], bars["volume"]
    log_ret = np.log(close).diff()
    sma20, std20 = close.rolling(20).mean(), close.rolling(20).std()
    sma50, std50 = close.rolling(50).mean(), close.rolling(50).std()
    high252 = close.rolling(252, min_periods=WARMUP_BARS).max()
    low252 = close.rolling(252, min_periods=WARMUP_BARS).min()
    true_range = pd.concat(
        [high - low, (high - close.shift()).abs(), (low - close.shift()).abs()], axis=1
    ).max(axis=1)
    ema12 = close.ewm(span=12, adjust=False, min_periods=26).mean()
    ema26 = close.ewm(span=26, adjust=False, min_periods=26).mean()
    macd = ema12 - ema26
    out = pd.DataFrame(index=bars.index)
    out["price_position_252"] = (close - low252) / (high252 - low252).replace(0.0, np.nan)
    out["zscore_20"] = (close - sma20) / std20.replace(0.0, np.nan)
    out["rsi_14"] = _rsi(close, 14)
    out["volatility_20"] = log_ret.rolling(20).std()
    out["atr_14_pct"] = true_range.rolling(14).mean() / close
    out["momentum_5"] = close / close.shift(5) - 1.0
    out["momentum_20"] = close / close.shift(20) - 1.0
    out["momentum_60"] = close / close.shift(60) - 1.0
    out["volume_ratio_20"] = volume / volume.rolling(20).mean().replace(0.0, np.nan)
    out["trend_slope_20"] = _rolling_slope(np.log(close), 20)
    out["macd_hist_pct"] = (macd - macd.ewm(span=9, adjust=False, min_periods=9).mean()) / close
    out["bollinger_pctb_50"] = (close - (sma50 - 2 * std50)) / (4 * std50).replace(0.0, np.nan)
    out["gap"] = bars["open"] / close.shift() - 1.0
    out["drawdown_from_high_252"] = close / high252 - 1.0
    out["log_return"] = log_ret
    return out


def bar_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Per (symbol, date) row of `bars` (sorted by symbol, date), the point-in-time bar features."""
    parts = [_symbol_features(group) for _, group in bars.groupby("symbol", sort=False)]
    features = pd.concat(parts).loc[bars.index]
    daily = pd.DataFrame({"date": bars["date"], "log_return": features["log_return"]})
    market = daily.groupby("date")["log_return"].mean().sort_index()
    market_return_5 = np.exp(market.rolling(5).sum()) - 1.0
    market_volatility_20 = market.rolling(20).std()
    features["market_return_5"] = bars["date"].map(market_return_5).to_numpy()
    features["market_volatility_20"] = bars["date"].map(market_volatility_20).to_numpy()
    features["day_of_week"] = bars["date"].dt.dayofweek.astype("float64")
    return features[BAR_FEATURES]
