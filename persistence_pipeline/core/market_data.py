"""Daily OHLCV bars: the embedded real data set and the user's own bar files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from persistence_pipeline.core.schema import (
    Frame,
    InputDataError,
    list_table_files,
    numeric_column,
    read_table_file,
    require_columns,
    timestamp_column,
)

EMBEDDED_BARS = Path(__file__).resolve().parents[2] / "data" / "stocks_daily.parquet"
BAR_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]
PRICE_COLUMNS = ["open", "high", "low", "close"]


def load_embedded_bars() -> pd.DataFrame:
    """The embedded real data set (see data/NOTICE.md), in the bar schema."""
    return validate_bars(Frame(str(EMBEDDED_BARS), pd.read_parquet(EMBEDDED_BARS)))


def load_bars_dir(directory: Path) -> pd.DataFrame:
    """Every CSV/Parquet file of a directory; a file without a `symbol` column takes its file name."""
    parts = []
    for path in list_table_files(directory):
        data = read_table_file(path)
        if "symbol" not in data.columns:
            data.insert(0, "symbol", path.stem)
        parts.append(validate_bars(Frame(str(path), data)))
    bars = pd.concat(parts, ignore_index=True)
    clash = bars.duplicated(["symbol", "date"])
    if clash.any():
        first = bars[clash].iloc[0]
        raise InputDataError(
            str(directory),
            "date",
            None,
            f"symbol {first['symbol']!r} has two bars on {first['date'].date()} across files",
        )
    return bars.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def validate_bars(frame: Frame) -> pd.DataFrame:
    """Check one bar file and return it sorted by symbol and date, dates as UTC midnights."""
    require_columns(frame, BAR_COLUMNS)
    out = pd.DataFrame({"symbol": frame.data["symbol"].astype(str)})
    out["date"] = timestamp_column(frame, "date").dt.normalize()
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
    return out.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
