"""Trades from their sources (the files are read by persistence_pipeline/source_files.py): the user's
trade logs combined and validated, the window of a range, whether it can be trained on, and which
trades are new or changed since they were stored."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from persistence_pipeline.core.model import min_fold_train_trades
from persistence_pipeline.core.schema import TRADE_KEY_COLUMNS, Frame, realized_return, validate_trade_log
from persistence_pipeline.core.strategies import FEATURES
from persistence_pipeline.errors import InputDataError

SOURCE_KINDS = ("embedded", "ohlcv_dir", "trade_log_dir")
# What usually makes a bar feature constant, for the message that refuses it.
CONSTANT_FEATURE_HINTS = {
    "volume_ratio_20": " (is the volume the same in every bar?)",
    "day_of_week": " (are the bars daily?)",
}


def combine_trade_logs(
    files: list[Frame], features: Sequence[str] | None, timestamp_format: str = ""
) -> pd.DataFrame:
    """The trades of every trade-log file of a directory (read by
    persistence_pipeline/source_files.py), validated, with the realized `return` label; timestamps
    are ISO 8601 or `timestamp_format` (strptime)."""
    parts: list[pd.DataFrame] = []
    seen_ids: dict[str, str] = {}  # trade_id: the file that holds it
    feature_set: list[str] | None = None
    for frame in files:
        trades = validate_trade_log(frame, features, timestamp_format)
        file_features = [c for c in trades.columns if c not in TRADE_KEY_COLUMNS]
        if feature_set is None:
            feature_set = file_features
        elif set(file_features) != set(feature_set):
            differing = sorted(set(file_features) ^ set(feature_set))[0]
            raise InputDataError(
                frame.source, differing, None, f"feature columns differ from the first file ({feature_set})"
            )
        for position, trade_id in enumerate(trades["trade_id"]):
            if trade_id in seen_ids:
                raise InputDataError(
                    frame.source,
                    "trade_id",
                    frame.row_number(position),
                    f"trade_id {trade_id!r} is also in {seen_ids[trade_id]}",
                )
        seen_ids.update(dict.fromkeys(trades["trade_id"], frame.source))
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
