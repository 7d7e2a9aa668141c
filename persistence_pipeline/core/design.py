"""The model's view of a trade: its features turned to the trade's direction and strategy.

The label is the trade's return, side * (exit / entry - 1), but the bar features describe the bar,
not the trade. On real bars most trades come in same-day pairs on OPPOSITE sides (a mean-reversion
and a breakout trade: 61% of MSFT 2010-2015 trades, 237 pairs with the same entry and exit, whose
returns are exact mirrors with identical features), so a raw bar feature's importance is largely
a proxy for the side the strategy took (`trend_slope_20`: IC -0.30 against side, -0.10 within
longs, 0.01 within shorts). The design:

- Directional features (a price move's direction: momentum, trend, z-score, RSI, position in the
  range, MACD, gap, drawdown, market return) are multiplied by the side (+1 long, -1 short) and
  keep their name: `momentum_20` is then "the 20-day momentum in the trade's direction", which a
  return in the trade's direction can follow. Features of size, not direction (volatility, ATR,
  volume, the day, the strategies' signal strength and confidence) are left as they are.
- A directional feature is centred before it is multiplied by the side, at the level c at which
  side * (x - c) is uncorrelated with the side over the trades the design is built on (a run's
  trades for its model; the trades read for the evidence): c = (E[x] - E[s x] E[s]) / (1 - E[s]^2),
  s the side, which is the trades' mean of x when the sides balance (no centring when every trade
  has one side). Uncentred, a feature of one sign IS the side: `rsi_14 * side` (RSI 9 to 92)
  correlated with the side at +0.97 over the embedded trades 2014-2023 (`price_position_252`
  +0.92, `bollinger_pctb_50` +0.86, `drawdown_from_high_252` -0.62), so its importance and IC
  were the side's; and in a trending window a signed one is too (`momentum_60 * side`: +0.65 in
  2015). With `direction` among the columns, centring is a reparametrization a linear model
  absorbs (side * (x - c) = side * x - c * direction): it moves to `direction` what belongs to
  the side, and leaves the predictions (up to the ridge penalty). The centres are in the run's
  metadata (`centred_features`).
- `direction` (+1 long, -1 short) carries a bias of one side (a rising market pays longs), when a
  range has both sides.
- Per-strategy features (`signal_strength` is |z| for mean reversion and breakout distance / ATR
  for momentum; `strategy_confidence` has two definitions) are split by strategy,
  `signal_strength@mean_reversion` and `signal_strength@momentum_breakout` (0 on the other
  strategy's trades), and `strategy@<name>` indicators when a range has
  more than one (collinear with the intercept: the ridge penalty splits a difference of the
  strategies' mean returns between them, so read their importances together). A trade log's own
  `strategy` column is treated the same way.
- Exact duplicates among the stored features (on a single-symbol source `market_return_5` equals
  `momentum_5` to 4e-16) are dropped before any of this, the later column in favour of the
  earlier, and reported (`feature_coverage.duplicate_of`), instead of splitting the credit
  between two names everywhere.

Which features are directional and which are per strategy is a setting (`model_settings`), with
the built-in features as the default; a trade log's other features are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DIRECTIONAL_FEATURES = (
    "price_position_252",
    "zscore_20",
    "rsi_14",
    "momentum_5",
    "momentum_20",
    "momentum_60",
    "trend_slope_20",
    "macd_hist_pct",
    "bollinger_pctb_50",
    "gap",
    "drawdown_from_high_252",
    "market_return_5",
)
PER_STRATEGY_FEATURES = ("signal_strength", "strategy_confidence")
DIRECTION = "direction"
STRATEGY_PREFIX = "strategy@"
DUPLICATE_TOLERANCE = 1e-12  # relative to the column's largest |value|


@dataclass(frozen=True)
class DesignParams:
    directional: tuple[str, ...] = DIRECTIONAL_FEATURES
    per_strategy: tuple[str, ...] = PER_STRATEGY_FEATURES
    centred: bool = True  # centre directional features so that they carry nothing of the side


@dataclass(frozen=True)
class Design:
    trades: pd.DataFrame  # the trades with the model's columns (directional ones side-aligned)
    features: list[str]  # the model's inputs, in order
    duplicates: dict[str, str]  # dropped stored feature -> the earlier one it duplicates
    centres: dict[str, float]  # directional feature -> the level it was centred at


def exact_duplicates(trades: pd.DataFrame, features: list[str]) -> dict[str, str]:
    """Stored features equal to an earlier one within DUPLICATE_TOLERANCE (same missing values):
    feature -> the earlier one. Only features whose means agree are compared, so hundreds of
    features cost a sort, not every pair."""
    values = trades[features].to_numpy(dtype="float64")
    scale = (
        np.maximum(np.nanmax(np.abs(values), axis=0, initial=0.0), 1.0)
        if len(values)
        else np.ones(len(features))
    )
    means = np.nan_to_num(np.nanmean(values, axis=0) if len(values) else np.zeros(len(features)))
    order = np.argsort(means, kind="stable")
    found: dict[str, str] = {}
    for a, i in enumerate(order):
        for j in order[a + 1 :]:
            tolerance = DUPLICATE_TOLERANCE * max(scale[i], scale[j])
            if means[j] - means[i] > tolerance:
                break
            first, later = (i, j) if i < j else (j, i)
            if features[later] in found or features[first] in found:
                continue
            same_missing = np.array_equal(np.isnan(values[:, i]), np.isnan(values[:, j]))
            if same_missing and np.nanmax(np.abs(values[:, i] - values[:, j]), initial=0.0) <= tolerance:
                found[features[later]] = features[first]
    return found


def side_neutral_centre(values: np.ndarray, side: np.ndarray) -> float:
    """The c at which side * (values - c) is uncorrelated with the side (module docstring); 0 when
    the trades have one side (or none)."""
    if len(values) == 0:
        return 0.0
    balance = float(side.mean())
    spread = 1.0 - balance**2
    if spread <= 1e-12:
        return 0.0
    return float((values.mean() - float((side * values).mean()) * balance) / spread)


def model_design(trades: pd.DataFrame, features: list[str], params: DesignParams) -> Design:
    """The model's columns for `trades` (which carry `side` and `strategy`), from its stored
    feature columns `features` (module docstring)."""
    taken = [f for f in features if f == DIRECTION or f.startswith(STRATEGY_PREFIX)]
    if taken:
        raise ValueError(f"a stored feature may not be named {taken[0]!r}: the model design uses that name")
    duplicates = exact_duplicates(trades, features)
    kept = [f for f in features if f not in duplicates]
    side = trades["side"].to_numpy(dtype="float64")
    strategy = trades["strategy"].astype(str).to_numpy()
    strategies = sorted(set(strategy))
    columns: dict[str, np.ndarray] = {}
    centres: dict[str, float] = {}
    for feature in kept:
        values = trades[feature].to_numpy(dtype="float64")
        if feature in params.directional:
            if params.centred:
                centres[feature] = side_neutral_centre(values, side)
            columns[feature] = (values - centres.get(feature, 0.0)) * side
        elif feature in params.per_strategy:
            for name in strategies:
                columns[f"{feature}@{name}"] = np.where(strategy == name, values, 0.0)
        else:
            columns[feature] = values
    if len(strategies) > 1:
        for name in strategies:
            columns[STRATEGY_PREFIX + name] = (strategy == name).astype("float64")
    if len(np.unique(side)) > 1:
        columns[DIRECTION] = side
    base = trades.drop(columns=features)
    design = pd.concat([base, pd.DataFrame(columns, index=trades.index)], axis=1)
    return Design(design, list(columns), duplicates, centres)


def is_indicator(name: str) -> bool:
    """Whether a model column is the side (`direction`) or a strategy indicator: constant within
    a side x strategy cell."""
    return name == DIRECTION or name.startswith(STRATEGY_PREFIX)


def stored_feature(name: str, params: DesignParams) -> str | None:
    """The stored feature a model column comes from (None for `direction` and strategy indicators)."""
    if name == DIRECTION or name.startswith(STRATEGY_PREFIX):
        return None
    split = [f for f in params.per_strategy if name.startswith(f + "@")]
    return split[0] if split else name
