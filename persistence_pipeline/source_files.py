"""Reading the trade sources' files: the embedded bars shipped inside the package, a directory of
the user's OHLCV bar files, or a directory of the user's trade logs (CSV, comma, semicolon or tab
delimited, or Parquet). The files are read here and only here; what they hold is checked and turned
into trades by core/ (core/market_data.py, core/trade_sources.py, core/strategies.py)."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pandas as pd

from persistence_pipeline.core.market_data import DEFAULT_MAX_GAP_DAYS, combine_bar_files, validate_bars
from persistence_pipeline.core.schema import Frame
from persistence_pipeline.core.strategies import StrategyParams, generate_trades
from persistence_pipeline.core.trade_sources import SOURCE_KINDS, combine_trade_logs, refuse_constant_features
from persistence_pipeline.errors import InputDataError

# the embedded real data set, inside the installed package (see its NOTICE.md and licence)
EMBEDDED_BARS = Path(str(resources.files("persistence_pipeline") / "data" / "stocks_daily.parquet"))
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
# A CSV's delimiter is read from its header line: the candidate that splits it into the most fields
# (ties: the comma). A semicolon file whose numbers are written with a decimal comma is read as such.
CSV_DELIMITERS = (",", ";", "\t")
_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")
_DECIMAL_POINT = re.compile(r"-?\d*\.\d+")


def sniff_csv(path: Path, sample_lines: int = 50) -> tuple[str, str]:
    """The delimiter and decimal mark of a CSV file, from its header and first lines."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        lines = [line for _, line in zip(range(sample_lines), handle, strict=False)]
    if not lines:
        return ",", "."
    fields = {d: len(next(csv.reader([lines[0]], delimiter=d), [])) for d in CSV_DELIMITERS}
    delimiter = max(CSV_DELIMITERS, key=lambda d: fields[d])
    decimal = "."
    if delimiter == ";":
        values = [v.strip() for row in csv.reader(lines[1:], delimiter=";") for v in row]
        if any(_DECIMAL_COMMA.fullmatch(v) for v in values) and not any(
            _DECIMAL_POINT.fullmatch(v) for v in values
        ):
            decimal = ","
    return delimiter, decimal


def read_table_file(path: Path) -> pd.DataFrame:
    """Read one CSV (comma, semicolon or tab delimited) or Parquet file; unreadable or empty files raise
    InputDataError."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            delimiter, decimal = sniff_csv(path)
            frame = pd.read_csv(path, sep=delimiter, decimal=decimal)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise InputDataError(str(path), None, None, "unsupported file type (use .csv or .parquet)")
    except pd.errors.EmptyDataError:
        raise InputDataError(str(path), None, None, "the file is empty") from None
    except InputDataError:
        raise
    except Exception as exc:  # pyarrow and the csv parser raise many types for a corrupt file
        raise InputDataError(str(path), None, None, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if frame.empty:
        raise InputDataError(str(path), None, None, "the file has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


def list_table_files(directory: Path) -> list[Path]:
    """The CSV and Parquet files of a directory, by name; none, or no directory, is an error."""
    if not directory.is_dir():
        raise InputDataError(str(directory), None, None, "directory does not exist")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in TABLE_SUFFIXES)
    if not files:
        raise InputDataError(str(directory), None, None, "no .csv or .parquet files in the directory")
    return files


def read_table_files(directory: Path) -> list[Frame]:
    """Every CSV and Parquet file of a directory, each with its path."""
    return [Frame(str(path), read_table_file(path)) for path in list_table_files(directory)]


def load_embedded_bars() -> pd.DataFrame:
    """The embedded real data set, in the bar schema."""
    return validate_bars(Frame(str(EMBEDDED_BARS), pd.read_parquet(EMBEDDED_BARS)))


def load_bars_dir(
    directory: Path,
    timestamp_format: str = "",
    max_gap_days: int = DEFAULT_MAX_GAP_DAYS,
    split_check: bool = True,
) -> pd.DataFrame:
    """The bars of every CSV/Parquet file of a directory (core/market_data.py checks them)."""
    return combine_bar_files(
        read_table_files(directory), str(directory), timestamp_format, max_gap_days, split_check
    )


def load_trade_logs(
    directory: Path, features: Sequence[str] | None, timestamp_format: str = ""
) -> pd.DataFrame:
    """The trades of every trade-log file of a directory (core/trade_sources.py checks them)."""
    return combine_trade_logs(read_table_files(directory), features, timestamp_format)


def load_source_trades(
    kind: str,
    path: str,
    features: Sequence[str] | None,
    params: StrategyParams,
    timestamp_format: str = "",
    max_gap_days: int = DEFAULT_MAX_GAP_DAYS,
    split_check: bool = True,
) -> pd.DataFrame:
    """All trades of a source, in the stored trade schema. `timestamp_format` (strptime; ISO 8601 when
    empty) reads the user's dates and timestamps; `max_gap_days` bounds the gap between bars;
    `split_check` refuses split-like overnight jumps of bars."""
    if kind == "embedded":
        return generate_trades(load_embedded_bars(), params)
    if kind == "ohlcv_dir":
        directory = Path(path)
        trades = generate_trades(
            load_bars_dir(directory, timestamp_format, max_gap_days, split_check), params
        )
        files = list_table_files(directory)
        refuse_constant_features(trades, str(files[0]) if len(files) == 1 else str(directory))
        return trades
    if kind == "trade_log_dir":
        return load_trade_logs(Path(path), features, timestamp_format)
    raise ValueError(f"trade source kind {kind!r} is not one of {SOURCE_KINDS}")


def source_files_state(directory: Path) -> dict[str, str]:
    """The version of each file the source reads in `directory` (name: modification time in ns and
    size), for a sensor to tell added and changed files from those it has handled."""
    stats = {path.name: path.stat() for path in list_table_files(directory)}
    return {name: f"{stat.st_mtime_ns}:{stat.st_size}" for name, stat in stats.items()}
