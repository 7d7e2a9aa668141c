"""Daily OHLCV bars: the embedded real data set and the user's own bar files.

Bars must be split-adjusted and continuous. A user's bar files are refused (InputDataError, with the
file, the column and the row of the bar) when, for one symbol:

- consecutive bars are more than `max_gap_days` calendar days apart (default 7: a weekend and a
  holiday are at most 4), or
- a bar opens at a split-like multiple of the previous close: within SPLIT_TOLERANCE (5%) of one of
  SPLIT_RATIOS (1/2, 1/3, 1/4, 2/3 for a 2:1, 3:1, 4:1, 3:2 split; 2, 3, 4, 3/2 for the reverse splits),
  unless the other symbols of the files moved more than MARKET_MOVE_LIMIT (15%, the median of their
  |open / previous close - 1|) that day. A symbol alone in its files is judged by its own jump.

A symbol whose every bar has open = high = low = close is refused: the bars carry no intraday range
(close-only data copied into the price columns), so "entry at the next open" would be the next close.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from persistence_pipeline.core.schema import Frame, numeric_column, require_columns, timestamp_column
from persistence_pipeline.errors import InputDataError

BAR_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]
PRICE_COLUMNS = ["open", "high", "low", "close"]
MISSING_BAR_COLUMNS_HINT = (
    "the built-in strategies enter at the next open and use high/low/volume: supply OHLCV bars, "
    "or bring trade logs"
)
DEFAULT_MAX_GAP_DAYS = 7
# open / previous close of an unadjusted split, and the split it looks like
SPLIT_RATIOS = {
    1 / 2: "2:1 split",
    1 / 3: "3:1 split",
    1 / 4: "4:1 split",
    2 / 3: "3:2 split",
    2.0: "1:2 reverse split",
    3.0: "1:3 reverse split",
    4.0: "1:4 reverse split",
    3 / 2: "2:3 reverse split",
}
SPLIT_TOLERANCE = 0.05
MARKET_MOVE_LIMIT = 0.15


def combine_bar_files(
    files: list[Frame],
    directory: str,
    timestamp_format: str = "",
    max_gap_days: int = DEFAULT_MAX_GAP_DAYS,
    split_check: bool = True,
) -> pd.DataFrame:
    """The bars of every file of a directory (read by persistence_pipeline/source_files.py); a file
    without a `symbol` column takes its file name. Dates are ISO 8601 or `timestamp_format`
    (strptime); gaps longer than `max_gap_days` (0: no limit) and split-like jumps (unless
    `split_check` is off) are refused (module docstring)."""
    parts = []
    for file in files:
        data = file.data
        if "symbol" not in data.columns:
            data = data.copy()
            data.insert(0, "symbol", Path(file.source).stem)
        part = _checked_bars(Frame(file.source, data), timestamp_format)
        parts.append(part.assign(_file=file.source, _row=part.index.to_numpy() + 1))
    bars = pd.concat(parts, ignore_index=True)
    clash = bars.duplicated(["symbol", "date"])
    if clash.any():
        first = bars[clash].iloc[0]
        raise InputDataError(
            directory,
            "date",
            None,
            f"symbol {first['symbol']!r} has two bars on {first['date'].date()} across files",
        )
    bars = bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    refuse_gaps(bars, max_gap_days)
    if split_check:
        refuse_split_jumps(bars)
    return bars.drop(columns=["_file", "_row"])


def validate_bars(frame: Frame, timestamp_format: str = "") -> pd.DataFrame:
    """Check one bar file and return it sorted by symbol and date, dates as UTC midnights."""
    return _checked_bars(frame, timestamp_format).reset_index(drop=True)


def _checked_bars(frame: Frame, timestamp_format: str) -> pd.DataFrame:
    """One bar file checked, sorted by symbol and date; the index is the row's position in the file."""
    require_columns(frame, BAR_COLUMNS, MISSING_BAR_COLUMNS_HINT)
    out = pd.DataFrame({"symbol": frame.data["symbol"].astype(str)})
    out["date"] = timestamp_column(frame, "date", timestamp_format).dt.normalize()
    for column in PRICE_COLUMNS:
        out[column] = numeric_column(frame, column, positive=True)
    out["volume"] = numeric_column(frame, "volume")
    bad = np.flatnonzero(out["volume"].to_numpy() < 0)
    if bad.size:
        raise InputDataError(frame.source, "volume", frame.row_number(bad[0]), "volume is negative")
    inconsistent = (out["high"] < out[["open", "close", "low"]].max(axis=1)) | (
        out["low"] > out[["open", "close"]].min(axis=1)
    )
    bad = np.flatnonzero(inconsistent.to_numpy())
    if bad.size:
        raise InputDataError(
            frame.source, "high", frame.row_number(bad[0]), "high/low do not bracket open and close"
        )
    duplicated = np.flatnonzero(out.duplicated(["symbol", "date"]).to_numpy())
    if duplicated.size:
        raise InputDataError(
            frame.source, "date", frame.row_number(duplicated[0]), "second bar for the same symbol and date"
        )
    flat = (out["open"] == out["high"]) & (out["high"] == out["low"]) & (out["low"] == out["close"])
    all_flat = flat.groupby(out["symbol"], sort=True).all()
    if all_flat.any():
        symbol = all_flat.index[all_flat.to_numpy()][0]
        raise InputDataError(
            frame.source,
            "open",
            None,
            f"{symbol} has open = high = low = close in every bar: the bars carry no intraday range "
            "(closes copied into open, high and low?), so entering at the next open would really be "
            f"entering at the next close; {MISSING_BAR_COLUMNS_HINT}",
        )
    return out.sort_values(["symbol", "date"], kind="stable")


def refuse_gaps(bars: pd.DataFrame, max_gap_days: int) -> None:
    """Consecutive bars of one symbol more than `max_gap_days` calendar days apart (bars sorted by symbol,
    date, with the `_file` and `_row` of each bar)."""
    if max_gap_days <= 0:
        return
    same_symbol = bars["symbol"].eq(bars["symbol"].shift()).to_numpy()
    days = bars["date"].diff().dt.days.to_numpy()
    bad = np.flatnonzero(same_symbol & (days > max_gap_days))
    if bad.size:
        at = int(bad[0])
        bar, previous = bars.iloc[at], bars.iloc[at - 1]
        raise InputDataError(
            bar["_file"],
            "date",
            int(bar["_row"]),
            f"{bar['symbol']} has no bars between {previous['date']:%Y-%m-%d} and {bar['date']:%Y-%m-%d} "
            f"({int(days[at])} calendar days apart, more than max_gap_days = {max_gap_days}): supply the "
            "missing bars, or raise trade_source.max_gap_days if the market was closed",
        )


def split_like(ratio: np.ndarray) -> np.ndarray:
    """Per open / previous close ratio, the SPLIT_RATIOS key it is within SPLIT_TOLERANCE of (NaN: none)."""
    match = np.full(ratio.shape, np.nan)
    for split in SPLIT_RATIOS:
        match[np.abs(ratio / split - 1.0) <= SPLIT_TOLERANCE] = split
    return match


def refuse_split_jumps(bars: pd.DataFrame) -> None:
    """A bar opening at a split-like multiple of its symbol's previous close while the other symbols
    moved at most MARKET_MOVE_LIMIT that day (bars sorted by symbol, date, with `_file` and `_row`)."""
    same_symbol = bars["symbol"].eq(bars["symbol"].shift()).to_numpy()
    ratio = np.where(same_symbol, bars["open"].to_numpy() / bars["close"].shift().to_numpy(), np.nan)
    split = split_like(ratio)
    move = np.abs(ratio - 1.0)
    dates = bars["date"].to_numpy()
    for at in np.flatnonzero(~np.isnan(split)):
        others = (dates == dates[at]) & ~np.isnan(move)
        others[at] = False
        if others.any() and np.median(move[others]) > MARKET_MOVE_LIMIT:
            continue  # the whole market jumped: not a split
        bar = bars.iloc[at]
        raise InputDataError(
            bar["_file"],
            "open",
            int(bar["_row"]),
            f"{bar['symbol']} {bar['date']:%Y-%m-%d} opens at {ratio[at]:.2f}x the previous close, like an "
            f"unadjusted {SPLIT_RATIOS[float(split[at])]}: use split-adjusted bars (or set "
            "trade_source.split_check to false if the move is real)",
        )
