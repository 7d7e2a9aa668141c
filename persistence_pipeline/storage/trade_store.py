"""The `trades` table (one column per feature) and `trade_loads`, the record of each range's load."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd

from persistence_pipeline.errors import InputDataError
from persistence_pipeline.storage.contract import (
    add_feature_columns,
    quote_identifier,
    refuse_case_clashes,
    reset_staging_trades,
    trades_columns,
)
from persistence_pipeline.storage.database import Database, note_write, public, registered_join
from persistence_pipeline.storage.run_reads import read_once


def trades_between(db: Database, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Stored trades entered in [start, end), in entry order (read once per run: storage/run_reads.py;
    the frame is shared, so callers must not change it in place)."""
    return read_once(
        db,
        ("trades_between", start, end),
        ["trades"],
        lambda: db.query(
            "SELECT * FROM trades WHERE entry_time >= ? AND entry_time < ? ORDER BY entry_time, trade_id",
            [start, end],
        ),
    )


def trades_entered_before(
    db: Database, end: pd.Timestamp, features: list[str], ranges: pd.DataFrame
) -> pd.DataFrame:
    """Every stored trade entered before `end` within one of `ranges` (range_start, range_end: the
    days of the runs read as of `end`; each trade once, whichever run loaded it): trade_id, strategy,
    entry_time, exit_time, side, return and the given feature columns, in entry order. Trades that
    only a run ending after `end` loaded are not read, so the result does not depend on which runs
    were stored first. A feature the table does not have is refused."""
    stored = set(db.query("SELECT * FROM trades LIMIT 0").columns)  # this run's view of the table
    missing = [f for f in features if f not in stored]
    if missing:
        raise InputDataError("warehouse table trades", missing[0], None, "no such feature column is stored")
    base = ["trade_id", "strategy", "entry_time", "exit_time", "side", "return"]
    selected = ", ".join(f"t.{c}" for c in [*base, *map(quote_identifier, features)])
    days = pd.DataFrame(
        {
            "range_start": pd.to_datetime(ranges["range_start"]).dt.tz_localize("UTC"),
            "range_end": pd.to_datetime(ranges["range_end"]).dt.tz_localize("UTC") + pd.Timedelta(days=1),
        }
    )
    with db.connect() as con:
        return registered_join(
            con,
            "read_ranges",
            days,
            f"SELECT {selected} FROM trades t WHERE t.entry_time < ? AND EXISTS (SELECT 1 FROM read_ranges r"
            " WHERE t.entry_time >= r.range_start AND t.entry_time < r.range_end)"
            " ORDER BY t.entry_time, t.trade_id",
            [end],
        )


def trades_digest(trades: pd.DataFrame) -> str:
    """sha256 of a range's trades (every column, in trade_id order): the version of a load, by which a
    later run that read it notices that it changed."""
    ordered = trades.sort_values("trade_id").reset_index(drop=True)
    digest = hashlib.sha256(",".join(ordered.columns).encode())
    digest.update(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def replace_trades(
    db: Database, trades: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, source: str, n_source: int
) -> None:
    """Replace the trades entered in [start, end) with `trades` and record the load, in one
    transaction (in the run's staging when `db` is staged). New feature columns are added (DOUBLE);
    a name that differs from a stored one only by letter case, or a trade_id stored with an entry
    outside the range, is refused."""
    first, last = start.date(), (end - pd.Timedelta(days=1)).date()
    with db.transaction() as con:
        public_trades = public(con, "trades")
        if db.staged_by is not None:
            others = con.execute("SELECT count(*) FROM staging.trades WHERE staged_by <> ?", [db.staged_by])
            if others.fetchall()[0][0] == 0:
                reset_staging_trades(con)
        refuse_case_clashes(
            [*trades_columns(con, "main"), *trades_columns(con, "staging")], list(trades.columns)
        )
        add_feature_columns(con, "main" if db.staged_by is None else "staging", list(trades.columns))
        con.register("incoming_trades", trades)
        clash_row = con.execute(
            f"SELECT t.trade_id, t.entry_time FROM {public_trades} t JOIN incoming_trades i USING (trade_id)"
            " WHERE t.entry_time < ? OR t.entry_time >= ? ORDER BY t.trade_id LIMIT 1",
            [start, end],
        ).fetchone()
        if clash_row:
            raise InputDataError(
                "warehouse table trades",
                "trade_id",
                None,
                f"trade_id {clash_row[0]!r} is already stored with entry {clash_row[1]}, outside this range",
            )
        load = [first, last, source, n_source, len(trades), pd.Timestamp.now(tz="UTC"), trades_digest(trades)]
        if db.staged_by is None:
            con.execute(f"DELETE FROM {public_trades} WHERE entry_time >= ? AND entry_time < ?", [start, end])
            con.execute(f"INSERT INTO {public_trades} BY NAME SELECT * FROM incoming_trades")
            loads = public(con, "trade_loads")
            con.execute(f"DELETE FROM {loads} WHERE range_start = ? AND range_end = ?", [first, last])
            con.execute(
                f"INSERT INTO {loads} (range_start, range_end, source, n_source, n_in_range, loaded_at,"
                " trades_sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
                load,
            )
        else:
            run = db.staged_by
            note_write(run, "trades")
            con.execute("DELETE FROM staging.trades WHERE staged_by = ?", [run])
            con.execute("DELETE FROM staging.trade_ranges WHERE staged_by = ?", [run])
            con.execute("DELETE FROM staging.trade_loads WHERE staged_by = ?", [run])
            con.execute(
                "INSERT INTO staging.trades BY NAME SELECT *, ? AS staged_by FROM incoming_trades", [run]
            )
            con.execute("INSERT INTO staging.trade_ranges VALUES (?, ?, ?)", [run, start, end])
            con.execute(
                "INSERT INTO staging.trade_loads (range_start, range_end, source, n_source, n_in_range,"
                " loaded_at, trades_sha256, staged_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [*load, run],
            )
        con.unregister("incoming_trades")


def source_trade_count(db: Database, first_day: dt.date, last_day: dt.date) -> int | None:
    """How many trades the source held when the range [first_day, last_day] was loaded (None: never
    loaded)."""
    load = db.query(
        "SELECT n_source FROM trade_loads WHERE range_start = ? AND range_end = ?", [first_day, last_day]
    )
    return int(load["n_source"].iloc[0]) if len(load) else None


def stored_trade_versions(db: Database) -> pd.DataFrame:
    """trade_id, entry_time, exit_time, side and return of every stored trade (none without a
    warehouse file)."""
    if not Path(db.path).is_file():
        return pd.DataFrame(
            {
                "trade_id": pd.Series(dtype=object),
                "entry_time": pd.Series(dtype="datetime64[us, UTC]"),
                "exit_time": pd.Series(dtype="datetime64[us, UTC]"),
                "side": pd.Series(dtype="int8"),
                "return": pd.Series(dtype="float64"),
            }
        )
    return db.query('SELECT trade_id, entry_time, exit_time, side, "return" FROM trades', read_only=True)
