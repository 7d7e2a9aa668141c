"""Simulated trade logs whose truth is known, to judge the cross-run statistics: false-positive rate
on features without signal and power on planted effects (tests and benchmarks/evidence.py), and
the continual-learning loop on them (`warm_against_cold`: tests and benchmarks/walk_forward.py), and
ensemble runs on them (`ensemble_windows`: tests and benchmarks/ensemble.py).

A leaky feature is the standardized realized return plus independent noise scaled so that its rank
IC with the return is the given value: a feature computed after the exit (for the leak guard).

The market: `n_symbols` stocks with a common market factor (daily sd 1%) and their own moves (daily
sd 1.5%). Each business day `per_day` trades enter at 14:30 UTC on a random symbol and side and are
held 1..`max_holding_days` business days; the trade's price return is its side times the symbol's
move over the holding. Trades of one day share the market move and overlapping holdings share
daily moves: the dependence real trades have.

Features are per-symbol AR(1) daily series (coefficient 0.95, unit variance) read at entry, so a
feature changes slowly and trades close in time on one symbol see close values. A planted feature
adds `ic(t) * sd * x` to the return, `sd` the sd of the price return, `ic(t)` moving linearly from
its start to its end value over the simulated span: for small values `ic` is close to the
feature's correlation with the return. A broken feature's `ic(t)` steps from one value to another
on a date (a breakdown, for the alpha monitor). A stepped feature's `ic` is constant within each
calendar quarter and takes the next value of its sequence in the next quarter (the last value holds
after the sequence ends): effects that random-walk or flip between runs. A U-shaped feature adds
`ic * sd * u(x)`, u the standardized |x| (a linear model cannot see it, trees can: for the
ensemble). Features without a planted effect are pure noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats

from persistence_pipeline.core.ensemble import fold_scales, member_metrics, rank_agreement
from persistence_pipeline.core.importance import (
    ImportanceParams,
    importance_ranks,
    importance_table,
    mean_abs_shap,
)
from persistence_pipeline.core.leakage import LeakScreen, LeakScreenParams, TradeKeys
from persistence_pipeline.core.metrics import OutOfSampleMetrics, out_of_sample_metrics
from persistence_pipeline.core.model import (
    FittedModel,
    ModelParams,
    fit_model,
    neutralized,
    screens_of,
    train_and_evaluate,
)
from persistence_pipeline.core.priors import PriorParams, empirical_bayes_priors, ridge_prior

MARKET_DAILY_SD = 0.01
OWN_DAILY_SD = 0.015
FEATURE_PERSISTENCE = 0.95


@dataclass(frozen=True)
class SimulatedMarket:
    start: str = "2021-01-01"
    end: str = "2022-12-31"
    per_day: int = 40
    n_symbols: int = 8
    max_holding_days: int = 10
    n_noise: int = 20
    # planted feature -> (IC at the start, IC at the end), linear in between
    planted: dict[str, tuple[float, float]] = field(default_factory=dict)
    # broken feature -> (IC before the date, IC from the date on, the date)
    breaks: dict[str, tuple[float, float, str]] = field(default_factory=dict)
    # stepped feature -> its IC in each calendar quarter from the start's (the last one holds after)
    stepped: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # U-shaped feature -> its IC with the return through |x|
    u_shaped: dict[str, float] = field(default_factory=dict)
    # leaky feature -> its rank IC with the realized return: a noisy copy of the return, as a feature
    # computed after the exit would be (1.0: the return itself)
    leaks: dict[str, float] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        noise = [f"noise_{i:02d}" for i in range(self.n_noise)]
        return [*self.planted, *self.breaks, *self.u_shaped, *self.stepped, *noise]

    @property
    def columns(self) -> list[str]:
        """Every feature column of the trades: the entry-time features, then the leaks."""
        return [*self.features, *self.leaks]


def quarter_index(when: pd.DatetimeIndex | pd.Series, start: str) -> np.ndarray:
    """Calendar quarters from the quarter of `start` (0 for that quarter)."""
    first = pd.Timestamp(start)
    dates = pd.DatetimeIndex(when)
    return np.asarray((dates.year - first.year) * 4 + dates.quarter - first.quarter, dtype="int64")


def stepped_ic(values: tuple[float, ...], quarter: np.ndarray) -> np.ndarray:
    """A stepped feature's IC in each given quarter (quarter_index): the last value after the sequence."""
    return np.asarray(values, dtype="float64")[np.clip(quarter, 0, len(values) - 1)]


def _feature_paths(rng: np.random.Generator, n_days: int, n_symbols: int) -> np.ndarray:
    """An AR(1) path of unit variance per symbol: days x symbols."""
    shocks = rng.normal(size=(n_days, n_symbols)) * np.sqrt(1 - FEATURE_PERSISTENCE**2)
    paths = np.empty_like(shocks)
    paths[0] = rng.normal(size=n_symbols)
    for day in range(1, n_days):
        paths[day] = FEATURE_PERSISTENCE * paths[day - 1] + shocks[day]
    return paths


def simulated_trades(market: SimulatedMarket, seed: int) -> pd.DataFrame:
    """Realized trades (trade_id, symbol, strategy, entry_time, exit_time, side, return and one
    column per feature), in entry order."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(market.start, market.end, tz="UTC")
    n_days, horizon = len(days), len(days) + market.max_holding_days
    moves = rng.normal(scale=MARKET_DAILY_SD, size=(horizon, 1)) + rng.normal(
        scale=OWN_DAILY_SD, size=(horizon, market.n_symbols)
    )
    cumulative = np.vstack([np.zeros((1, market.n_symbols)), np.cumsum(moves, axis=0)])
    day = np.repeat(np.arange(n_days), market.per_day)
    n = len(day)
    symbol = rng.integers(0, market.n_symbols, n)
    side = rng.choice([-1, 1], n)
    held = rng.integers(1, market.max_holding_days + 1, n)
    price_return = side * (cumulative[day + held + 1, symbol] - cumulative[day + 1, symbol])
    sd = float(price_return.std())
    progress = day / max(n_days - 1, 1)
    values = {name: _feature_paths(rng, n_days, market.n_symbols)[day, symbol] for name in market.features}
    realized = price_return.copy()
    for name, (first, last) in market.planted.items():
        realized += (first + (last - first) * progress) * sd * values[name]
    for name, ic in market.u_shaped.items():
        magnitude = np.abs(values[name])
        realized += ic * sd * (magnitude - magnitude.mean()) / magnitude.std()
    for name, (before, after, date) in market.breaks.items():
        realized += np.where(days[day] < pd.Timestamp(date, tz="UTC"), before, after) * sd * values[name]
    day_quarter = quarter_index(days, market.start)[day]
    for name, sequence in market.stepped.items():
        realized += stepped_ic(sequence, day_quarter) * sd * values[name]
    scores = stats.norm.ppf(stats.rankdata(realized) / (n + 1))  # the return's normal scores
    for name, ic in market.leaks.items():
        pearson = 2.0 * np.sin(np.pi * ic / 6.0)  # the normal correlation whose rank correlation is ic
        spread = np.sqrt(max(1.0 / pearson**2 - 1.0, 0.0))
        values[name] = scores + spread * rng.normal(size=n)
    entry = days[day] + pd.Timedelta(hours=14, minutes=30)
    exit_days = pd.bdate_range(days[0], periods=horizon + 1, tz="UTC")
    trades = pd.DataFrame(
        {
            "trade_id": [f"S{i:07d}" for i in range(n)],
            "symbol": [f"SYM{s}" for s in symbol],
            "strategy": "simulated",
            "entry_time": entry,
            "exit_time": exit_days[day + held] + pd.Timedelta(hours=14, minutes=30),
            "side": side.astype("int8"),
            "return": realized,
            **values,
        }
    )
    return trades


def planted_ic(market: SimulatedMarket, feature: str, when: pd.Timestamp) -> float:
    """The planted IC of a feature at a date (0 for a noise feature)."""
    if feature in market.breaks:
        before, after, date = market.breaks[feature]
        return before if when < pd.Timestamp(date, tz="UTC") else after
    if feature in market.stepped:
        quarter = quarter_index(pd.DatetimeIndex([when]), market.start)
        return float(stepped_ic(market.stepped[feature], quarter)[0])
    first, last = market.planted.get(feature, (0.0, 0.0))
    start, end = pd.Timestamp(market.start, tz="UTC"), pd.Timestamp(market.end, tz="UTC")
    progress = min(max((when - start) / (end - start), 0.0), 1.0)
    return first + (last - first) * progress


def trade_log(trades: pd.DataFrame) -> pd.DataFrame:
    """The trades as a trade log the pipeline reads (README, "Bring your own trades"): prices at
    100 whose side-signed change is the return."""
    log = trades.drop(columns=["return"]).copy()
    log.insert(4, "entry_price", 100.0)
    log.insert(5, "exit_price", 100.0 * (1 + trades["side"] * trades["return"]))
    return log


LEAK = "leak"  # the column warm_against_cold plants a one-run leak in
EW_HALF_LIFE_QUARTERS = 2.0  # the weighted history arm: a trade's weight halves every 2 quarters


@dataclass(frozen=True)
class PastQuarter:
    """A quarter's trades as the history arms see them (its index among the quarters)."""

    index: int
    X: np.ndarray
    y: np.ndarray
    exit_time: np.ndarray


def history_arm(
    past: list[PastQuarter],
    current: int,
    X: np.ndarray,
    y: np.ndarray,
    entry_time: np.ndarray,
    fitted: FittedModel,
    params: ModelParams,
    half_life: float | None,
) -> OutOfSampleMetrics:
    """A plain ridge (params' alpha, no prior) per fold of `fitted` trained on the earlier quarters'
    trades plus the fold's training trades and scored on the fold's test block: the same folds, test
    trades and held-out features as `fitted`. An earlier trade is purged as a fold's own trades are,
    when it exits within the embargo before the test block. With `half_life` (quarters) a trade's
    sample weight is 0.5^(age / half_life), age the quarters since its quarter (0 for this quarter's);
    without, every trade weighs 1."""
    embargo = np.timedelta64(pd.Timedelta(days=params.embargo_days).to_timedelta64(), "us")
    entry = np.asarray(entry_time, dtype="datetime64[us]")
    predictions = []
    for fold in fitted.folds:
        cutoff = entry[fold.test].min() - embargo
        kept = [(q, np.asarray(q.exit_time, dtype="datetime64[us]") < cutoff) for q in past]
        X_train = np.vstack([*(q.X[mask] for q, mask in kept), X[fold.train]])
        y_train = np.concatenate([*(q.y[mask] for q, mask in kept), y[fold.train]])
        weights = None
        if half_life is not None:
            ages = [np.full(int(mask.sum()), current - q.index) for q, mask in kept]
            age = np.concatenate([*ages, np.zeros(fold.train.size)])
            weights = 0.5 ** (age / half_life)
        X_train, _ = neutralized(X_train, None, fitted.screened)
        predictions.append(fit_model(X_train, y_train, params, None, weights).predict(X[fold.test]))
    return out_of_sample_metrics(np.concatenate(predictions), y[fitted.oos_positions])


def warm_against_cold(
    market: SimulatedMarket,
    seed: int,
    prior: PriorParams,
    importance: ImportanceParams,
    leak_run: int | None = None,
    guard: bool = True,
    half_life: float = EW_HALF_LIFE_QUARTERS,
) -> pd.DataFrame:
    """The continual-learning loop on a simulated market, quarter by quarter: each quarter's ridge
    warm-started from the empirical-Bayes priors of the earlier quarters (their own coefficients,
    as importance_table stores them, a suspect run's suspected features left out as
    feature_priors leaves them out) against the same quarter fit cold, same alpha, folds and leak
    screen (with `guard`, core/leakage.py's defaults, as profit_model screens), and against two cold
    ridges on the history (history_arm, same alpha, folds and test trades): `all-history` on every
    earlier quarter's trades plus the quarter's training trades, `EW` the same with sample weights
    halving every `half_life` quarters of a trade's age. A suspect quarter's trades are left out of
    the later history arms, as its suspected features are left out of the later priors.

    With `leak_run` (a quarter's index), a column `leak` is a near copy of the return in that
    quarter (rank IC about 0.9: a feature computed after the exit, as a data error that lasted one
    quarter) and noise in every other.

    Per quarter after the first: ic_gain and edge_gain (warm - cold OOS rank IC and hit rate; the
    base rate is the same trades'), cold_ic, warm_ic, history_ic and ew_ic (OOS rank IC of each
    arm), history_edge and ew_edge (hit rate - warm's), cold_edge (hit rate - base rate),
    prior_weight, tau_share_signal and tau_share_noise (the mean, over the features with a planted
    effect and over the others, of tau_between^2 / prior sd^2: the share of the prior's variance that
    is between-run movement, 0 when the earlier quarters agree within their errors, near 1 when
    the effect moves far more than it is uncertain), suspect (the leak screen quarantined a
    feature: a contaminated run, which the benchmark leaves out of the gains) and leak_prior_z
    (|mean| / sd of the prior the warm model took for `leak`, 0 without one)."""
    trades = simulated_trades(market, seed)
    features = [*market.features, *([LEAK] if leak_run is not None else [])]
    if leak_run is not None:
        rng = np.random.default_rng([seed, 1])
        trades[LEAK] = rng.normal(size=len(trades))
    quarter = trades["entry_time"].dt.year * 10 + trades["entry_time"].dt.quarter
    signal = [*market.planted, *market.breaks, *market.u_shaped, *market.stepped]
    params = ModelParams()
    history: list[pd.DataFrame] = []
    past: list[PastQuarter] = []
    rows = []
    for i, key in enumerate(sorted(quarter.unique())):
        run = trades[quarter == key].copy()
        if i == leak_run:
            scores = stats.norm.ppf(stats.rankdata(run["return"]) / (len(run) + 1))
            run[LEAK] = scores + 0.3 * rng.normal(size=len(run))
        X, y = run[features].to_numpy(), run["return"].to_numpy()
        times = (run["entry_time"].to_numpy(), run["exit_time"].to_numpy())
        naive = {name: run[name].dt.tz_convert(None).to_numpy() for name in ("entry_time", "exit_time")}
        screen = LeakScreen(X, y, features, LeakScreenParams(), TradeKeys.of(run)) if guard else None
        warm_prior, moved = None, pd.Series(0.0, index=features)
        if history:
            priors = empirical_bayes_priors(pd.concat(history), prior).set_index("feature")
            warm_prior = ridge_prior(priors.reset_index(), features)
            moved = (priors["tau_between"] / priors["prior_sd_raw"]).pow(2).reindex(features, fill_value=0.0)
        warm = train_and_evaluate(X, y, *times, features, params, warm_prior, screen=screen)
        table, _ = importance_table(
            warm.model,
            warm.fold_models,
            warm.folds,
            X,
            y,
            features,
            importance,
            warm_prior,
            quarantined=warm.screened,
        )
        history.append(table.assign(run_key=str(key), suspect=table["quarantined"]))
        suspect = bool(warm.screened is not None and warm.screened.any())
        if i:  # the cold model held to the features the warm one's screens flagged, without screening again
            cold = train_and_evaluate(X, y, *times, features, params, screen=screens_of(warm))
            every = history_arm(past, i, X, y, naive["entry_time"], warm, params, None)
            weighted = history_arm(past, i, X, y, naive["entry_time"], warm, params, half_life)
            leak_z = 0.0
            if leak_run is not None and warm_prior is not None and np.isfinite(warm_prior.mean_raw[-1]):
                leak_z = float(abs(warm_prior.mean_raw[-1]) / warm_prior.sd_raw[-1])
            rows.append(
                {
                    "run": i,
                    "ic_gain": warm.metrics.rank_ic - cold.metrics.rank_ic,
                    "edge_gain": warm.metrics.hit_rate - cold.metrics.hit_rate,
                    "cold_ic": cold.metrics.rank_ic,
                    "warm_ic": warm.metrics.rank_ic,
                    "history_ic": every.rank_ic,
                    "ew_ic": weighted.rank_ic,
                    "history_edge": every.hit_rate - warm.metrics.hit_rate,
                    "ew_edge": weighted.hit_rate - warm.metrics.hit_rate,
                    "cold_edge": cold.metrics.hit_rate - cold.metrics.base_rate,
                    "prior_weight": warm.prior_weight,
                    "tau_share_signal": float(moved[signal].mean()) if signal else np.nan,
                    "tau_share_noise": float(moved.drop(signal).mean()),
                    "suspect": suspect,
                    "leak_prior_z": leak_z,
                }
            )
        if not suspect:
            past.append(PastQuarter(i, X, y, naive["exit_time"]))
    return pd.DataFrame(rows)


def ensemble_windows(
    market: SimulatedMarket,
    seed: int,
    windows: list[tuple[str, str]],
    kinds: list[str],
    top_k: int,
    params: ModelParams,
    importance: ImportanceParams,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """An ensemble run on each window [first entry day, last entry day] of a simulated market, as
    the pipeline runs one (core/ensemble.py): each kind fit on the window's trades with the same
    folds, features ranked by mean |SHAP| as importance_table ranks them (no leak screen, priors
    or curriculum: the market has no leak and each window is fit cold). Returns the model_agreement
    rows and the ensemble_metrics rows of every window, and the windows as run ranges (run_key: the
    window's first day)."""
    trades = simulated_trades(market, seed)
    agreements, metrics = [], []
    for first, last in windows:
        day = trades["entry_time"].dt.tz_convert(None).dt.normalize()
        run = trades[(day >= pd.Timestamp(first)) & (day <= pd.Timestamp(last))]
        X, y = run[market.features].to_numpy(), run["return"].to_numpy()
        times = (
            run["entry_time"].dt.tz_convert(None).to_numpy(),
            run["exit_time"].dt.tz_convert(None).to_numpy(),
        )
        predictions, scales, ranks = {}, {}, []
        for kind in kinds:
            fitted = train_and_evaluate(X, y, *times, market.features, replace(params, kind=kind))
            predictions[kind], scales[kind] = fitted.oos_prediction, fold_scales(fitted, X)
            shap_mean, _, _ = mean_abs_shap(fitted.model, X, importance)
            ranks.append(
                pd.DataFrame(
                    {
                        "model_kind": kind,
                        "feature": market.features,
                        "rank": importance_ranks(shap_mean, market.features),
                        "shap_mean_abs": shap_mean,
                    }
                )
            )
            realized = y[fitted.oos_positions]
        agreements.append(rank_agreement(pd.concat(ranks), top_k).assign(run_key=first))
        metrics.append(member_metrics(predictions, scales, realized).assign(run_key=first))
    ranges = pd.DataFrame(
        {
            "run_key": [first for first, _ in windows],
            "range_start": [pd.Timestamp(first) for first, _ in windows],
            "range_end": [pd.Timestamp(last) for _, last in windows],
        }
    )
    return pd.concat(agreements, ignore_index=True), pd.concat(metrics, ignore_index=True), ranges
