"""Where trades come from: the embedded bars, the user's bar files, or the user's trade logs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from persistence_pipeline.core.market_data import DEFAULT_MAX_GAP_DAYS, load_bars_dir, load_embedded_bars
from persistence_pipeline.core.model import min_fold_train_trades
from persistence_pipeline.core.schema import (
    TRADE_KEY_COLUMNS,
    Frame,
    InputDataError,
    list_table_files,
    read_table_file,
    realized_return,
    validate_trade_log,
)
from persistence_pipeline.core.strategies import FEATURES, StrategyParams, generate_trades

SOURCE_KINDS = ("embedded", "ohlcv_dir", "trade_log_dir")
# What usually makes a bar feature constant, for the message that refuses it.
CONSTANT_FEATURE_HINTS = {
    "volume_ratio_20": " (is the volume the same in every bar?)",
    "day_of_week": " (are the bars daily?)",
}


def load_trade_logs(
    directory: Path, features: Sequence[str] | None, timestamp_format: str = ""
) -> pd.DataFrame:
    """Every trade-log file of a directory, validated, with the realized `return` label; timestamps are
    ISO 8601 or `timestamp_format` (strptime)."""
    parts: list[pd.DataFrame] = []
    seen_ids: dict[str, str] = {}  # trade_id: the file that holds it
    feature_set: list[str] | None = None
    for path in list_table_files(directory):
        frame = Frame(str(path), read_table_file(path))
        trades = validate_trade_log(frame, features, timestamp_format)
        file_features = [c for c in trades.columns if c not in TRADE_KEY_COLUMNS]
        if feature_set is None:
            feature_set = file_features
        elif set(file_features) != set(feature_set):
            differing = sorted(set(file_features) ^ set(feature_set))[0]
            raise InputDataError(
                str(path), differing, None, f"feature columns differ from the first file ({feature_set})"
            )
        for position, trade_id in enumerate(trades["trade_id"]):
            if trade_id in seen_ids:
                raise InputDataError(
                    str(path),
                    "trade_id",
                    frame.row_number(position),
                    f"trade_id {trade_id!r} is also in {seen_ids[trade_id]}",
                )
        seen_ids.update(dict.fromkeys(trades["trade_id"], str(path)))
        parts.append(trades)
    trades = pd.concat(parts, ignore_index=True)
    trades.insert(
        8,
        "return",
        realized_return(
            trades["side"].to_numpy(), trades["entry_price"].to_numpy(), trades["exit_price"].to_numpy()
        ),
    )
    return trades


def refuse_constant_features(trades: pd.DataFrame, source: str) -> None:
    """Trades made by the built-in strategies from a user's bars: a feature with the same value in every
    trade carries no information and is refused, as a constant column of a trade log is."""
    if len(trades) < 2:
        return
    for name in FEATURES:
        values = trades[name].to_numpy(dtype="float64")
        if np.allclose(values, values[0], rtol=1e-9, atol=1e-12):
            raise InputDataError(
                source,
                name,
                None,
                f"has the same value ({float(f'{values[0]:.12g}')!r}) in every trade made from the bars: "
                f"it carries no information{CONSTANT_FEATURE_HINTS.get(name, '')}",
            )


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


def trades_in_window(
    trades: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, source: str
) -> pd.DataFrame:
    """Trades entered in [start, end); an empty window is an error that names the source."""
    window = trades[(trades["entry_time"] >= start) & (trades["entry_time"] < end)]
    if window.empty:
        raise InputDataError(
            source,
            "entry_time",
            None,
            f"no trades entered between {start:%Y-%m-%d} and {end - pd.Timedelta(days=1):%Y-%m-%d}",
        )
    return window.sort_values(["entry_time", "trade_id"], kind="stable").reset_index(drop=True)


def check_trainable(trades: pd.DataFrame, end: pd.Timestamp, min_trades: int, source: str) -> None:
    """Before anything is stored: enough trades of the range exit by its end to train on (at least
    min_trades, and 5 per feature for a walk-forward fold)."""
    n_features = len([c for c in trades.columns if c not in TRADE_KEY_COLUMNS and c != "return"])
    labelled = int((trades["exit_time"] < end).sum())
    needed = min_fold_train_trades(min_trades, n_features)
    if labelled < needed:
        raise InputDataError(
            source,
            "exit_time",
            None,
            f"only {labelled} of the {len(trades)} trades entered in the range exit by "
            f"{end - pd.Timedelta(days=1):%Y-%m-%d}; {needed} are needed (min_train_trades = {min_trades}, "
            f"5 per feature for {n_features} features): use a longer range",
        )


def source_files_state(directory: Path) -> dict[str, str]:
    """The version of each file the source reads in `directory` (name: modification time in ns and
    size), for a sensor to tell added and changed files from those it has handled."""
    stats = {path.name: path.stat() for path in list_table_files(directory)}
    return {name: f"{stat.st_mtime_ns}:{stat.st_size}" for name, stat in stats.items()}


VERSION_COLUMNS = ["trade_id", "entry_time", "exit_time", "side", "return"]


def new_or_changed_trades(source: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """The trades of `source` that `stored` (the warehouse's trades: VERSION_COLUMNS) does not hold as
    they are: new trade ids, and stored ones whose entry, exit, side or return differ."""
    both = source[VERSION_COLUMNS].merge(
        stored[VERSION_COLUMNS], on="trade_id", how="left", suffixes=("", "_stored")
    )
    same = np.ones(len(both), dtype=bool)
    for column in VERSION_COLUMNS[1:]:
        same &= (both[column] == both[f"{column}_stored"]).to_numpy()
    return source[~same].reset_index(drop=True)
