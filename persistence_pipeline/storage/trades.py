"""The `trades` table (one column per feature) and `trade_loads`, the record of each range's load."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from persistence_pipeline.core.schema import InputDataError
from persistence_pipeline.storage.contract import quote_identifier
from persistence_pipeline.storage.database import Database


def trades_between(db: Database, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Stored trades entered in [start, end), in entry order."""
    return db.query(
        "SELECT * FROM trades WHERE entry_time >= ? AND entry_time < ? ORDER BY entry_time, trade_id",
        [start, end],
    )


def replace_trades(
    db: Database, trades: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, source: str, n_source: int
) -> None:
    """Replace the trades entered in [start, end) with `trades` and record the load, in one
    transaction. New feature columns are added (DOUBLE); a name that differs from a stored one only
    by letter case, or a trade_id stored with an entry outside the range, is refused."""
    with db.transaction() as con:
        stored = {row[0] for row in con.execute("DESCRIBE trades").fetchall()}
        by_case = {name.casefold(): name for name in stored}
        for column in trades.columns:
            if column in stored:
                continue
            if column.casefold() in by_case:
                raise InputDataError(
                    "warehouse table trades",
                    column,
                    None,
                    f"differs from the stored column {by_case[column.casefold()]!r} only by letter case",
                )
            con.execute(f"ALTER TABLE trades ADD COLUMN {quote_identifier(column)} DOUBLE")
        con.register("incoming_trades", trades)
        clash = con.execute(
            "SELECT t.trade_id, t.entry_time FROM trades t JOIN incoming_trades i USING (trade_id)"
            " WHERE t.entry_time < ? OR t.entry_time >= ? ORDER BY t.trade_id LIMIT 1",
            [start, end],
        ).fetchone()
        if clash:
            raise InputDataError(
                "warehouse table trades",
                "trade_id",
                None,
                f"trade_id {clash[0]!r} is already stored with entry {clash[1]}, outside this range",
            )
        con.execute("DELETE FROM trades WHERE entry_time >= ? AND entry_time < ?", [start, end])
        con.execute("INSERT INTO trades BY NAME SELECT * FROM incoming_trades")
        con.unregister("incoming_trades")
        first, last = start.date(), (end - pd.Timedelta(days=1)).date()
        con.execute("DELETE FROM trade_loads WHERE range_start = ? AND range_end = ?", [first, last])
        con.execute(
            "INSERT INTO trade_loads VALUES (?, ?, ?, ?, ?, ?)",
            [first, last, source, n_source, len(trades), pd.Timestamp.now(tz="UTC")],
        )


def source_trade_count(db: Database, first_day: dt.date, last_day: dt.date) -> int | None:
    """How many trades the source held when the range [first_day, last_day] was loaded (None: never
    loaded)."""
    load = db.query(
        "SELECT n_source FROM trade_loads WHERE range_start = ? AND range_end = ?", [first_day, last_day]
    )
    return int(load["n_source"].iloc[0]) if len(load) else None
