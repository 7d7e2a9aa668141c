"""Alpha-based position sizing against the strategies' actual PnL, with transaction costs.

Costs. `cost_bps` is the cost of one side of a trade in basis points of its notional (commission,
half-spread, impact), so a round trip costs 2 * cost_bps / 10^4 of the notional: the model's label
is the trade's return net of it (core/dataset.py), and every return figure here comes gross and net.

Three books over the same walk-forward out-of-sample trades of a run, each trade held as the
strategy held it (its side, entry and exit); only the notional differs:

    actual   every trade at notional 1: the strategies' trades as they traded them, at unit size
             (a trade log's own quantities are not in the contract)
    equal    notional 1 on the trades the model expects to pay after costs (prediction > 0), 0 else
    sized    notional proportional to the predicted return over the predicted volatility, capped:
             position = clip((prediction / predicted_sd) / scale, 0, max_position)

Sizing, with only what was known at entry. A test trade of walk-forward fold k gets its prediction
from fold k's model, trained on trades that exited before the fold's first entry (core/model.py).
Its predicted volatility is the standard deviation of the labels of fold k's training trades, times
the trade's `volatility_feature` at entry over that feature's median on the training trades (the
trade's own risk relative to the past's; without the feature, the training sd alone). `scale` is the
mean |prediction / predicted_sd| of fold k's model over its own training trades, so a trade the
model rates as strongly as it rated the past on average gets notional 1. Those are in-sample
predictions, larger than out-of-sample ones (trees: 0.66-0.88 of them), so the mean OOS position is
below 1 and the cap binds rarely; only the relative sizes carry the model's view. Positions are never
negative: the sized book takes less or more of a strategy's trade, never the other side of it
(fading a strategy is another strategy, with its own costs). The cap keeps one trade from carrying
the book. Nothing in a position depends on a test trade's outcome, or on any later trade.

Per book, gross and net of costs (`costs`):
    n_trades        trades with a position > 0
    exposure        the sum of positions (notional traded, in units of one trade)
    total_return    sum of position * return: the PnL in units of one trade's notional
    mean_return     total_return / exposure: the return per unit of notional
    hit_rate        share of the traded trades whose PnL is > 0 (sized and equal trade the same
                    trades, a position is > 0 exactly when the prediction is, so theirs agree)
    sharpe          mean / sd of the daily PnL * sqrt(261); a day's PnL is the PnL of the trades
                    that exited that (UTC) day, on every weekday from the first exit to the last
                    (a weekday without exits, holidays included, is a 0: 261 weekdays a year)
    max_drawdown    the largest fall of the cumulative daily PnL from its running peak (>= 0)
    turnover        2 * exposure / days: the notional traded per day (entry and exit)

PnL is booked when a trade exits, not marked to market while it is held, so the Sharpe and the
drawdown miss the swings inside a holding. Exposure, total return, drawdown and turnover are in
units of one trade's notional: books that trade different amounts differ in them by their size
alone, and so does the Sharpe (with a negative edge a book that trades less has a less negative
Sharpe). Compare the books by `mean_return`, the return per unit of notional, first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from persistence_pipeline.core.model import FittedModel

BOOKS = ("sized", "equal", "actual")
WEEKDAYS_PER_YEAR = 261  # the daily PnL's calendar: every weekday, a holiday's PnL is 0
PERFORMANCE_COLUMNS = [
    "book",
    "costs",
    "n_trades",
    "exposure",
    "total_return",
    "mean_return",
    "hit_rate",
    "sharpe",
    "max_drawdown",
    "turnover",
]


@dataclass(frozen=True)
class SizingParams:
    cost_bps: float = 5.0
    max_position: float = 3.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cost_bps) and self.cost_bps >= 0):
            raise ValueError(f"cost_bps must be a finite number >= 0, not {self.cost_bps}")
        if not (math.isfinite(self.max_position) and self.max_position > 0):
            raise ValueError(f"max_position must be a finite number > 0, not {self.max_position}")

    @property
    def round_trip_cost(self) -> float:
        """What a round trip costs, as a return on the notional."""
        return round_trip_cost(self.cost_bps)


def round_trip_cost(cost_bps: float) -> float:
    return 2.0 * cost_bps / 10_000


def label_cost(cost_bps: float | None) -> float:
    """The round-trip cost a run's labels are net of, from its run_metrics.cost_bps (NULL: a run
    from before costs, whose labels are gross)."""
    return 0.0 if cost_bps is None or pd.isna(cost_bps) else round_trip_cost(float(cost_bps))


def relative_volatility(train: np.ndarray | None, test: np.ndarray | None) -> np.ndarray | None:
    """The test trades' volatility feature over its median on the training trades (None without
    a usable feature: missing, or a median that is not positive)."""
    if train is None or test is None:
        return None
    median = float(np.nanmedian(train)) if len(train) else float("nan")
    if not (np.isfinite(median) and median > 0):
        return None
    ratio = np.asarray(test, dtype="float64") / median
    return np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)


def fold_positions(
    train_prediction: np.ndarray,
    train_label: np.ndarray,
    test_prediction: np.ndarray,
    train_volatility: np.ndarray | None,
    test_volatility: np.ndarray | None,
    max_position: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(positions, predicted sd) of one fold's test trades, from the fold model's predictions on its
    training and test trades, the training labels and the volatility feature (module docstring)."""
    base_sd = float(np.std(train_label))
    if not base_sd > 0:
        return np.zeros(len(test_prediction)), np.full(len(test_prediction), np.nan)
    train_sd = base_sd * _or_ones(relative_volatility(train_volatility, train_volatility), len(train_label))
    test_sd = base_sd * _or_ones(relative_volatility(train_volatility, test_volatility), len(test_prediction))
    scale = float(np.mean(np.abs(train_prediction / train_sd)))
    if not scale > 0:
        return np.zeros(len(test_prediction)), test_sd
    return np.clip(test_prediction / test_sd / scale, 0.0, max_position), test_sd


def _or_ones(values: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n) if values is None else values


def book_positions(prediction: np.ndarray, position: np.ndarray) -> dict[str, np.ndarray]:
    """Each book's notional per OOS trade."""
    return {
        "sized": np.asarray(position, dtype="float64"),
        "equal": (np.asarray(prediction) > 0).astype("float64"),
        "actual": np.ones(len(prediction)),
    }


def daily_pnl(pnl: np.ndarray, exit_time: pd.Series) -> pd.Series:
    """The PnL summed by UTC exit day, on every weekday from the first exit's day to the last's."""
    days = pd.to_datetime(exit_time, utc=True).dt.tz_convert("UTC").dt.normalize()
    by_day = pd.Series(pnl, index=days.to_numpy()).groupby(level=0).sum()
    calendar = pd.bdate_range(days.min(), days.max(), tz="UTC") if len(days) else []
    return by_day.reindex(by_day.index.union(calendar), fill_value=0.0)


def max_drawdown(daily: pd.Series) -> float:
    """The largest fall of the cumulative PnL from its running peak (the peak starts at 0)."""
    cumulative = daily.cumsum().to_numpy()
    if len(cumulative) == 0:
        return 0.0
    peak = np.maximum.accumulate(np.maximum(cumulative, 0.0))
    return float((peak - cumulative).max())


def book_figures(position: np.ndarray, returns: np.ndarray, daily: pd.Series) -> dict[str, float | int]:
    traded = position > 0
    pnl = position * returns
    exposure = float(position.sum())
    sd = float(daily.std(ddof=1)) if len(daily) > 1 else float("nan")
    return {
        "n_trades": int(traded.sum()),
        "exposure": exposure,
        "total_return": float(pnl.sum()),
        "mean_return": float(pnl.sum() / exposure) if exposure > 0 else float("nan"),
        "hit_rate": float((pnl[traded] > 0).mean()) if traded.any() else float("nan"),
        "sharpe": float(daily.mean() / sd * math.sqrt(WEEKDAYS_PER_YEAR)) if sd > 0 else float("nan"),
        "max_drawdown": max_drawdown(daily),
        "turnover": 2 * exposure / len(daily) if len(daily) else float("nan"),
    }


def book_performance(oos: pd.DataFrame, params: SizingParams) -> pd.DataFrame:
    """Per book and costs (gross, net) the figures of the module docstring, from the OOS trades:
    prediction, position, gross_return (the trade's return before costs), entry_time, exit_time."""
    returns = {"gross": oos["gross_return"].to_numpy(dtype="float64")}
    returns["net"] = returns["gross"] - params.round_trip_cost
    rows = []
    for book, position in book_positions(oos["prediction"].to_numpy(), oos["position"].to_numpy()).items():
        for costs, r in returns.items():
            daily = daily_pnl(position * r, oos["exit_time"])
            rows.append({"book": book, "costs": costs, **book_figures(position, r, daily)})
    return pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS)


def cumulative_pnl(oos: pd.DataFrame, params: SizingParams) -> pd.DataFrame:
    """The cumulative daily PnL net of costs of each book (columns), by exit day (index)."""
    net = oos["gross_return"].to_numpy(dtype="float64") - params.round_trip_cost
    books = book_positions(oos["prediction"].to_numpy(), oos["position"].to_numpy())
    return pd.DataFrame(
        {book: daily_pnl(position * net, oos["exit_time"]).cumsum() for book, position in books.items()}
    )


def books_cost_bps(performance: pd.DataFrame) -> float | None:
    """The cost per side a run's sizing_performance rows were computed with (None without rows: a
    run stored before sizing existed)."""
    costs = performance["cost_bps"].dropna() if "cost_bps" in performance else pd.Series(dtype="float64")
    return float(costs.iloc[0]) if len(costs) else None


def sizing_line(performance: pd.DataFrame) -> str:
    """The summary's and the report's line, from a run's sizing_performance rows (with cost_bps):
    each book's net return per unit of notional and its exposure first, then its net Sharpe."""
    cost = books_cost_bps(performance)
    if cost is None:
        return "OOS sizing: not computed for this run (stored before sizing existed)"
    net = performance[performance["costs"] == "net"].set_index("book")
    books = [book for book in BOOKS if book in net.index]
    per_unit = ", ".join(
        f"{book} {net.loc[book, 'mean_return'] * 10_000:+.1f} bps on {net.loc[book, 'exposure']:.0f}"
        for book in books
    )
    sharpe = ", ".join(f"{book} {net.loc[book, 'sharpe']:+.2f}" for book in books)
    return (
        f"OOS net of {cost:g} bps per side, per unit of notional: {per_unit} trade notionals; Sharpe {sharpe}"
    )


def walk_forward_positions(
    fitted: FittedModel, X: np.ndarray, label: np.ndarray, volatility: np.ndarray | None, max_position: float
) -> tuple[np.ndarray, np.ndarray]:
    """(positions, predicted sd) of every OOS trade of `fitted`, in the order of its folds' test
    trades (that of its oos_prediction): each fold's from its own model and training trades
    (`fold_positions`). `volatility` is the volatility feature per trade (None without one)."""
    positions, sds = [], []
    start = 0
    for model, fold in zip(fitted.fold_models, fitted.folds, strict=True):
        test_prediction = fitted.oos_prediction[start : start + fold.test.size]
        start += fold.test.size
        position, sd = fold_positions(
            model.predict(X[fold.train]),
            label[fold.train],
            test_prediction,
            None if volatility is None else volatility[fold.train],
            None if volatility is None else volatility[fold.test],
            max_position,
        )
        positions.append(position)
        sds.append(sd)
    return np.concatenate(positions), np.concatenate(sds)


def walk_forward_books(
    fitted: FittedModel,
    trades: pd.DataFrame,
    X: np.ndarray,
    label: np.ndarray,
    volatility: np.ndarray | None,
    max_position: float,
) -> pd.DataFrame:
    """Every OOS trade of `fitted` as the books take it, indexed by its position in `trades` (the
    model's trades, aligned with X and label): trade_id, fold, prediction, realized (the label),
    position, predicted_sd, gross_return (the trade's `return`), entry_time, exit_time."""
    position, predicted_sd = walk_forward_positions(fitted, X, label, volatility, max_position)
    chosen = trades.iloc[fitted.oos_positions]
    return pd.DataFrame(
        {
            "trade_id": chosen["trade_id"].to_numpy(),
            "fold": np.concatenate([np.full(fold.test.size, i) for i, fold in enumerate(fitted.folds)]),
            "prediction": fitted.oos_prediction,
            "realized": label[fitted.oos_positions],
            "position": position,
            "predicted_sd": predicted_sd,
            "gross_return": chosen["return"].to_numpy(),
            "entry_time": chosen["entry_time"].to_numpy(),
            "exit_time": chosen["exit_time"].to_numpy(),
        },
        index=fitted.oos_positions,
    )
