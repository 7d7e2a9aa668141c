"""The trade schema, the outcome columns that can never be features, and input validation.

Every validation failure raises `InputDataError`, whose message names the file, the column and
the first offending row, so a user can open the file and fix it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from persistence_pipeline.errors import InputDataError

TRADE_KEY_COLUMNS = [
    "trade_id",
    "symbol",
    "strategy",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "side",
]
TRADE_LOG_REQUIRED = ["trade_id", "symbol", "entry_time", "exit_time", "entry_price", "exit_price", "side"]
TRADE_LOG_OPTIONAL = ["strategy", "quantity"]
# Columns of the stored `trades` table that are not features.
TRADE_BASE_COLUMNS = [*TRADE_KEY_COLUMNS, "return"]

# Columns that describe how a trade ended. They are known only after the decision and can never
# be features; a lower-cased column name in this set is refused wherever a feature list is formed.
OUTCOME_COLUMNS = frozenset(
    {
        "exit_price",
        "exit_time",
        "exit_date",
        "pnl",
        "pnl_pct",
        "profit",
        "return",
        "returns",
        "ret",
        "realized_return",
        "holding_period",
        "holding_days",
        "duration",
        "label",
        "target",
        "y",
        "net_pnl",
        "gross_pnl",
        "return_pct",
        "mae",
        "mfe",
        "bars_held",
        "commission",
        "fees",
        "slippage",
    }
)
# Any column starting with one of these is about the exit or the outcome.
OUTCOME_PREFIXES = ("exit_", "pnl_", "realized_", "holding_")
SIDE_WORDS = {"long": 1, "buy": 1, "short": -1, "sell": -1}


@dataclass(frozen=True)
class Frame:
    """A frame read from one file, with the row numbering the user sees in that file."""

    source: str
    data: pd.DataFrame

    def row_number(self, position: int) -> int:
        """1-based data row (for a CSV, line = row + 1 because of the header)."""
        return int(self.data.index[position]) + 1


def _plain(value: object) -> object:
    """numpy scalars as plain Python values, so messages read 2.5 rather than np.float64(2.5)."""
    return value.item() if isinstance(value, np.generic) else value


def _first_bad(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def require_columns(frame: Frame, columns: Sequence[str], hint: str = "") -> None:
    """Every missing column is named: one as the message's column, several in its text."""
    missing = [c for c in columns if c not in frame.data.columns]
    if not missing:
        return
    found = f"(columns found: {list(frame.data.columns)})" + (f"; {hint}" if hint else "")
    if len(missing) == 1:
        raise InputDataError(frame.source, missing[0], None, f"required column is missing {found}")
    raise InputDataError(
        frame.source, None, None, f"required columns are missing: {', '.join(missing)} {found}"
    )


def numeric_column(frame: Frame, column: str, *, positive: bool = False) -> np.ndarray:
    """The column as finite float64; the first non-numeric, NaN, inf (or non-positive) value raises."""
    raw = frame.data[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64")
    bad = _first_bad(np.isnan(values) & raw.notna().to_numpy())
    if bad is not None:
        raise InputDataError(
            frame.source, column, frame.row_number(bad), f"value {_plain(raw.iloc[bad])!r} is not a number"
        )
    bad = _first_bad(~np.isfinite(values))
    if bad is not None:
        raise InputDataError(
            frame.source,
            column,
            frame.row_number(bad),
            f"value {_plain(raw.iloc[bad])!r} is missing or infinite",
        )
    if positive:
        bad = _first_bad(values <= 0)
        if bad is not None:
            raise InputDataError(
                frame.source, column, frame.row_number(bad), f"price {float(values[bad])!r} is not positive"
            )
    return values


ISO_8601 = "YYYY-MM-DD[THH:MM[:SS]][zone]"
TIMESTAMP_SETTING = "trade_source.timestamp_format"


def _count_parsed(text: pd.Series, timestamp_format: str) -> int:
    try:
        return int(pd.to_datetime(text, utc=True, errors="coerce", format=timestamp_format).notna().sum())
    except ValueError:
        return 0


def _formats_that_fit(text: pd.Series, position: int) -> tuple[list[str], bool]:
    """strptime formats guessed from the value at `position` (month first and day first) that parse the
    most values of the column (none for a value that is no date), and whether they parse every value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = str(text.iloc[position])
        guesses = dict.fromkeys([guess_datetime_format(value), guess_datetime_format(value, dayfirst=True)])
        fits = {f: _count_parsed(text, f) for f in guesses if f}
    best = max(fits.values(), default=0)
    return [f for f, n in fits.items() if n == best and n > 0], best == len(text)


def _not_iso_problem(text: pd.Series, position: int) -> str:
    value = text.iloc[position]
    formats, fit_every_row = _formats_that_fit(text, position)
    if not formats:
        return (
            f"cannot parse timestamp {value!r}: it is not ISO 8601 ({ISO_8601}); "
            f"set {TIMESTAMP_SETTING} for other formats"
        )
    day_first, *month_first = sorted(formats, key=lambda f: f.find("%d"))
    if not month_first:
        example = f"e.g. {day_first!r}"
    elif fit_every_row:  # every value reads both ways: 02/01/2019 is 2 January or 1 February
        example = (
            f"{day_first!r} if the day comes first, {month_first[0]!r} if the month does: "
            "the column fits both"
        )
    else:
        example = f"e.g. {day_first!r} or {month_first[0]!r}"
    return (
        f"{value!r} is not an ISO 8601 timestamp ({ISO_8601}); set {TIMESTAMP_SETTING} ({example}) "
        "for other formats"
    )


def timestamp_column(frame: Frame, column: str, timestamp_format: str = "") -> pd.Series:
    """Parse a timestamp column to UTC with ONE format for the whole column: ISO 8601 (what pandas'
    `format="ISO8601"` reads: a date, or a date and time with `T` or a space and an optional zone), or
    the strptime `timestamp_format` when one is set. A value in any other layout is refused at its row,
    never guessed per value (02/01/2019 could be either month). Columns already holding timestamps
    (Parquet) are taken as they are. Naive timestamps are taken as UTC, zoned ones converted."""
    raw = frame.data[column]
    bad = _first_bad(raw.isna().to_numpy())
    if bad is not None:
        raise InputDataError(frame.source, column, frame.row_number(bad), "timestamp is missing")
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.to_datetime(raw, utc=True)
    else:
        text = raw.astype(str).str.strip()
        if timestamp_format:
            try:
                parsed = pd.to_datetime(text, utc=True, errors="coerce", format=timestamp_format)
            except ValueError as exc:
                raise InputDataError(
                    frame.source,
                    column,
                    None,
                    f"{TIMESTAMP_SETTING} {timestamp_format!r} is not usable ({exc})",
                ) from None
            bad = _first_bad(parsed.isna().to_numpy())
            if bad is not None:
                raise InputDataError(
                    frame.source,
                    column,
                    frame.row_number(bad),
                    f"{raw.iloc[bad]!r} does not match {TIMESTAMP_SETTING} {timestamp_format!r}",
                )
        else:
            parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            bad = _first_bad(parsed.isna().to_numpy())
            if bad is not None:
                raise InputDataError(frame.source, column, frame.row_number(bad), _not_iso_problem(text, bad))
    out_of_range = (parsed < pd.Timestamp("1970-01-01", tz="UTC")) | (
        parsed > pd.Timestamp("2100-01-01", tz="UTC")
    )
    bad = _first_bad(out_of_range.to_numpy())
    if bad is not None:
        raise InputDataError(
            frame.source, column, frame.row_number(bad), f"timestamp {raw.iloc[bad]!r} is out of range"
        )
    return parsed.dt.as_unit("us")


def side_column(frame: Frame) -> np.ndarray:
    raw = frame.data["side"]
    words = raw.astype(str).str.strip().str.lower()
    mapped = words.map(SIDE_WORDS)
    numeric = pd.to_numeric(raw, errors="coerce")
    side = mapped.where(mapped.notna(), numeric).to_numpy(dtype="float64")
    bad = _first_bad(~np.isin(side, (1.0, -1.0)))
    if bad is not None:
        raise InputDataError(
            frame.source,
            "side",
            frame.row_number(bad),
            f"unknown side {_plain(raw.iloc[bad])!r} (use 1/-1 or long/short)",
        )
    return side.astype("int8")


def is_outcome_column(name: str) -> bool:
    lowered = name.strip().lower()
    return lowered in OUTCOME_COLUMNS or lowered.startswith(OUTCOME_PREFIXES)


def refuse_outcome_features(features: Sequence[str], source: str) -> None:
    for name in features:
        if is_outcome_column(name):
            raise InputDataError(
                source,
                name,
                None,
                "is an outcome column (known only after the trade closed) and can never be a feature",
            )


def refuse_case_twins(columns: Sequence[str], source: str) -> None:
    """Stored column names are case-insensitive (DuckDB): two names equal but for case cannot both be
    stored."""
    seen: dict[str, str] = {}
    for name in columns:
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise InputDataError(source, name, None, f"differs from column {other!r} only by letter case")


def _mostly_numeric(column: pd.Series) -> bool:
    """A numeric column, or a text column most of whose values are numbers (a feature with a typo in it:
    it must fail on the bad value, not silently stop being a feature)."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    present = column.dropna()
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.5


def trade_log_features(
    columns: Sequence[str], numeric: Sequence[str], configured: Sequence[str] | None
) -> list[str]:
    """The feature columns of a trade log: the configured list, or every other numeric column."""
    if configured:
        return list(configured)
    taken = set(TRADE_LOG_REQUIRED) | set(TRADE_LOG_OPTIONAL)
    return [c for c in columns if c in numeric and c not in taken and not is_outcome_column(c)]


def validate_trade_log(
    frame: Frame, configured_features: Sequence[str] | None, timestamp_format: str = ""
) -> pd.DataFrame:
    """Check one trade-log file and return it in the stored trade schema (without `return`);
    `timestamp_format` (strptime) reads the timestamps, ISO 8601 when empty."""
    data = frame.data
    require_columns(frame, TRADE_LOG_REQUIRED)
    if configured_features:
        refuse_outcome_features(configured_features, frame.source)
        require_columns(frame, configured_features)
    numeric = [c for c in data.columns if _mostly_numeric(data[c])]
    features = trade_log_features(list(data.columns), numeric, configured_features)
    refuse_case_twins([*TRADE_BASE_COLUMNS, *features], frame.source)
    trade_id = data["trade_id"]
    bad = _first_bad(trade_id.isna().to_numpy())
    if bad is not None:
        raise InputDataError(frame.source, "trade_id", frame.row_number(bad), "trade_id is missing")
    trade_id = trade_id.astype(str)
    duplicated = trade_id.duplicated().to_numpy()
    bad = _first_bad(duplicated)
    if bad is not None:
        raise InputDataError(
            frame.source, "trade_id", frame.row_number(bad), f"duplicate trade_id {trade_id.iloc[bad]!r}"
        )
    symbol = data["symbol"]
    bad = _first_bad(symbol.isna().to_numpy() | (symbol.astype(str).str.strip() == "").to_numpy())
    if bad is not None:
        raise InputDataError(frame.source, "symbol", frame.row_number(bad), "symbol is missing")
    entry_time = timestamp_column(frame, "entry_time", timestamp_format)
    exit_time = timestamp_column(frame, "exit_time", timestamp_format)
    bad = _first_bad((exit_time < entry_time).to_numpy())
    if bad is not None:
        raise InputDataError(
            frame.source,
            "exit_time",
            frame.row_number(bad),
            f"exit {exit_time.iloc[bad]} is before entry {entry_time.iloc[bad]}",
        )
    out = pd.DataFrame(
        {
            "trade_id": trade_id,
            "symbol": symbol.astype(str),
            "strategy": data["strategy"].astype(str) if "strategy" in data.columns else "user",
            "entry_time": entry_time,
            "exit_time": exit_time,
            "entry_price": numeric_column(frame, "entry_price", positive=True),
            "exit_price": numeric_column(frame, "exit_price", positive=True),
            "side": side_column(frame),
        }
    )
    for name in features:
        out[name] = numeric_column(frame, name)
        if len(out) > 1 and out[name].nunique() == 1:
            raise InputDataError(
                frame.source,
                name,
                None,
                f"has the same value ({float(out[name].iloc[0])!r}) in every row: it carries no information",
            )
    returns = realized_return(
        out["side"].to_numpy(), out["entry_price"].to_numpy(), out["exit_price"].to_numpy()
    )
    if len(out) > 1 and np.ptp(returns) == 0:
        raise InputDataError(
            frame.source,
            "exit_price",
            None,
            f"every trade has the same return ({float(returns[0]) + 0.0!r}): there is nothing to learn",
        )
    return out


def realized_return(side: np.ndarray, entry_price: np.ndarray, exit_price: np.ndarray) -> np.ndarray:
    """The label: side * (exit_price / entry_price - 1)."""
    return side * (exit_price / entry_price - 1.0)
