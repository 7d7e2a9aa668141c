"""How a run becomes visible: whole, in one transaction, when its last stage is done.

Each stage of a Dagster run writes into the `staging` schema (storage/database.py) and then calls
`finish_stage`. When every stage selected for the run has finished, the run's staged rows replace
the public rows they stand for (its run keys' rows, the trades of its ranges, its trade loads) and
its checkpoint files move from the staging folder into place, all before ONE commit. A run that
fails or is killed at any point before that commit leaves every public table as it was: readers
only ever see complete runs.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from persistence_pipeline.storage import files
from persistence_pipeline.storage.contract import (
    FIXED_TABLES,
    RUN_TABLES,
    STAGE_ORDER,
    STAGE_TABLES,
    STAGING_REGISTRY,
    add_feature_columns,
    trades_columns,
)
from persistence_pipeline.storage.database import Database, failpoint, public
from persistence_pipeline.storage.staleness import record_inputs


def finish_stage(db: Database, stages: list[str], selected: list[str], run_key: str) -> bool:
    """Record that `stages` have staged their rows of `run_key`; publish the run when every stage in
    `selected` has. Returns whether the run is now published (always, for a database that is not
    staged)."""
    run = db.staged_by
    if run is None:
        return True
    for stage in stages:
        failpoint(f"staged:{stage}")
    with db.transaction() as con:
        for stage in stages:
            con.execute("DELETE FROM staging.stages_done WHERE staged_by = ? AND stage = ?", [run, stage])
            con.execute("INSERT INTO staging.stages_done VALUES (?, ?, ?)", [run, stage, run_key])
        done = {
            row[0]
            for row in con.execute(
                "SELECT stage FROM staging.stages_done WHERE staged_by = ?", [run]
            ).fetchall()
        }
        if not set(selected) <= done:
            return False
        staged_checkpoints = _publish(con, run)
        failpoint("publish")  # inside the publishing transaction, before its commit
    failpoint("published")  # committed; the checkpoint files not moved yet
    for run_key, staged in staged_checkpoints:
        final = files.promote_checkpoint(Path(staged))
        indexed = db.query("SELECT path FROM checkpoints WHERE run_key = ?", [run_key])["path"].tolist()
        if indexed == [str(final)]:  # another run of the key may have published since
            files.remove_superseded_checkpoints(str(final))
    return True


def _publish(con: duckdb.DuckDBPyConnection, run: str) -> list[tuple[str, str]]:
    """Inside the publishing transaction: move the run's staged rows (and checkpoint files) into the
    public tables, record what the runs whose model it trained read (storage/staleness.py), then
    forget its staging. Returns the (run_key, path) of the promoted checkpoints."""
    promoted = _promote_checkpoints(con, run)
    _remove_outdated_downstream(con, run)
    for table, key in RUN_TABLES.items():
        con.execute(
            f"DELETE FROM {public(con, table)} WHERE {key} IN"
            " (SELECT key_value FROM staging.replaced WHERE staged_by = ? AND table_name = ?)",
            [run, table],
        )
        con.execute(
            f"INSERT INTO {public(con, table)} BY NAME"
            f" SELECT * EXCLUDE (staged_by) FROM staging.{table} WHERE staged_by = ?",
            [run],
        )
    _publish_trades(con, run)
    modelled = con.execute(
        "SELECT DISTINCT run_key FROM staging.stages_done WHERE staged_by = ? AND stage = 'profit_model'",
        [run],
    ).fetchall()
    record_inputs(con, sorted(row[0] for row in modelled))
    _forget_staging(con, run)
    return promoted


def _forget_staging(con: duckdb.DuckDBPyConnection, run: str) -> None:
    for table in [*FIXED_TABLES, *STAGING_REGISTRY]:
        con.execute(f"DELETE FROM staging.{table} WHERE staged_by = ?", [run])


def _remove_outdated_downstream(con: duckdb.DuckDBPyConnection, run: str) -> None:
    """For a run that published a stage but not the stages after it: remove their public rows of the
    run key, which described the model (or the trades) this run replaced."""
    done = con.execute("SELECT stage, run_key FROM staging.stages_done WHERE staged_by = ?", [run]).fetchall()
    stages = {stage for stage, _ in done}
    staged_positions = [STAGE_ORDER.index(stage) for stage in stages if stage in STAGE_ORDER]
    if not staged_positions:
        return
    first = min(staged_positions)
    for run_key in {key for _, key in done}:
        for stage in STAGE_ORDER[first + 1 :]:
            if stage in stages:
                continue
            for table in STAGE_TABLES[stage]:
                con.execute(f"DELETE FROM {public(con, table)} WHERE {RUN_TABLES[table]} = ?", [run_key])


def _publish_trades(con: duckdb.DuckDBPyConnection, run: str) -> None:
    public_trades, loads = public(con, "trades"), public(con, "trade_loads")
    con.execute(
        f"DELETE FROM {public_trades} t WHERE EXISTS (SELECT 1 FROM staging.trade_ranges r"
        " WHERE r.staged_by = ? AND t.entry_time >= r.range_start AND t.entry_time < r.range_end)",
        [run],
    )
    staged = con.execute("SELECT * EXCLUDE (staged_by) FROM staging.trades WHERE staged_by = ?", [run]).df()
    if len(staged):
        known = set(trades_columns(con, "main"))
        # columns that only other runs' staged trades carry are not this run's
        staged = staged[[c for c in staged.columns if c in known or staged[c].notna().any()]]
        add_feature_columns(con, "main", list(staged.columns))
        con.register("published_trades", staged)
        con.execute(f"INSERT INTO {public_trades} BY NAME SELECT * FROM published_trades")
        con.unregister("published_trades")
    con.execute(
        f"DELETE FROM {loads} l WHERE EXISTS (SELECT 1 FROM staging.trade_loads s"
        " WHERE s.staged_by = ? AND s.range_start = l.range_start AND s.range_end = l.range_end)",
        [run],
    )
    con.execute(
        f"INSERT INTO {loads} BY NAME"
        " SELECT * EXCLUDE (staged_by) FROM staging.trade_loads WHERE staged_by = ?",
        [run],
    )


def _promote_checkpoints(con: duckdb.DuckDBPyConnection, run: str) -> list[tuple[str, str]]:
    """Point the run's staged index rows at where its checkpoint files go when published (the files
    move after the commit; a file whose move was cut short is moved when it is next loaded).
    Returns (run_key, staged path) of each."""
    rows = con.execute("SELECT run_key, path FROM staging.checkpoints WHERE staged_by = ?", [run]).fetchall()
    promoted = []
    for run_key, staged_path in rows:
        final = files.published_checkpoint_path(Path(staged_path))
        con.execute(
            "UPDATE staging.checkpoints SET path = ? WHERE staged_by = ? AND run_key = ?",
            [str(final), run, run_key],
        )
        promoted.append((str(run_key), str(staged_path)))
    return promoted


def staged_runs(db: Database) -> list[str]:
    """The Dagster runs (root run ids) with rows in staging."""
    with db.connect() as con:
        rows = con.execute(
            "SELECT DISTINCT staged_by FROM staging.stages_done"
            " UNION SELECT DISTINCT staged_by FROM staging.replaced"
            " UNION SELECT DISTINCT staged_by FROM staging.trade_ranges ORDER BY 1"
        ).fetchall()
    return [str(row[0]) for row in rows]


def discard_staging(db: Database, runs: list[str]) -> None:
    """Forget the staged rows of runs that can never publish (failed or killed, not re-executed)."""
    with db.transaction() as con:
        for run in runs:
            _forget_staging(con, run)
