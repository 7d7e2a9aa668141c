"""What each run read, and which runs are stale.

A run of one model kind reads, as of its range end, the runs of that kind that ended on or before it
(their priors, importances, stability and trades). So its tables depend on which of those runs were
stored when it ran: a range materialized later that ends before it, or an earlier range
re-materialized with another result, leaves it describing a history that no longer exists. When a
run is published, the runs it read are recorded in `run_inputs` (each with its version: the sha256
of its checkpoint and of its range's trades) and summed up in `run_metrics.inputs_digest`; a run is
stale when the runs it would read now differ. Materializing the stale runs again, oldest first (the
`stale_runs` sensor does it one run at a time), gives the tables of running every range in order of
its end: the same set of ranges gives the same tables whatever the order in which they first ran.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pandas as pd

from persistence_pipeline.storage.database import Database, public

INPUT_COLUMNS = ["run_key", "input_run_key", "input_version"]
RECORDED = {
    ("run_inputs", "input_version"),
    ("run_metrics", "inputs_digest"),
    ("trade_loads", "trades_sha256"),
    ("checkpoints", "sha256"),
}


def _versions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every run with a model: its kind, range and version (checkpoint sha256 : trades sha256)."""
    checkpoints, loads = public(con, "checkpoints"), public(con, "trade_loads")
    return con.execute(
        "SELECT c.run_key, c.model_kind, c.range_start, c.range_end,"
        " c.sha256 || ':' || coalesce(t.trades_sha256, '') AS version"
        f" FROM {checkpoints} c LEFT JOIN {loads} t"
        " ON t.range_start = c.range_start AND t.range_end = c.range_end"
    ).df()


def _inputs(versions: pd.DataFrame, run_keys: list[str]) -> pd.DataFrame:
    """For each run in `run_keys`: the runs of its kind that ended on or before it (itself excluded),
    with their versions."""
    readers = versions[versions["run_key"].isin(run_keys)][["run_key", "model_kind", "range_end"]]
    pairs = readers.merge(versions, on="model_kind", suffixes=("", "_input"))
    earlier = pairs["range_end_input"] <= pairs["range_end"]
    read = pairs[earlier & (pairs["run_key_input"] != pairs["run_key"])]
    rows = read.rename(columns={"run_key_input": "input_run_key", "version": "input_version"})[INPUT_COLUMNS]
    return rows.sort_values(["run_key", "input_run_key"]).reset_index(drop=True)


def _digest(rows: pd.DataFrame) -> str:
    pairs = zip(rows["input_run_key"], rows["input_version"], strict=True)
    lines = sorted(f"{key}={version}" for key, version in pairs)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def record_inputs(con: duckdb.DuckDBPyConnection, run_keys: list[str]) -> None:
    """Inside the publishing transaction, after the run's rows are public: record what each of
    `run_keys` (runs whose model this run trained) read."""
    if not run_keys:
        return
    rows = _inputs(_versions(con), run_keys)
    inputs, metrics = public(con, "run_inputs"), public(con, "run_metrics")
    con.register("published_run_keys", pd.DataFrame({"run_key": run_keys}))
    con.execute(f"DELETE FROM {inputs} WHERE run_key IN (SELECT run_key FROM published_run_keys)")
    con.unregister("published_run_keys")
    con.register("recorded_inputs", rows)
    con.execute(f"INSERT INTO {inputs} BY NAME SELECT * FROM recorded_inputs")
    con.unregister("recorded_inputs")
    for run_key in run_keys:
        digest = _digest(rows[rows["run_key"] == run_key])
        con.execute(f"UPDATE {metrics} SET inputs_digest = ? WHERE run_key = ?", [digest, run_key])


def stale_runs(db: Database, model_kind: str) -> pd.DataFrame:
    """The runs of one kind whose inputs changed since they were published, oldest first (by range
    end): run_key, range_start, range_end and `changed` (which runs were added, changed or are gone).
    Runs published before inputs were recorded (no digest) are not judged; no warehouse yet, no
    stale run."""
    if not Path(db.path).is_file():
        return pd.DataFrame(columns=["run_key", "range_start", "range_end", "changed"])
    with db.connect(read_only=True) as con:
        return stale_runs_read(con, model_kind)


def stale_runs_read(con: duckdb.DuckDBPyConnection, model_kind: str) -> pd.DataFrame:
    """`stale_runs` through an open connection (a reader's snapshot)."""
    tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if not {"run_inputs", "checkpoints", "trade_loads", "run_metrics"} <= tables:
        return pd.DataFrame(columns=["run_key", "range_start", "range_end", "changed"])
    versions = _versions(con)
    inputs, metrics = public(con, "run_inputs"), public(con, "run_metrics")
    recorded = con.execute(
        f"SELECT i.* FROM {inputs} i JOIN {metrics} m USING (run_key) WHERE m.model_kind = ?",
        [model_kind],
    ).df()
    judged = con.execute(
        f"SELECT run_key, range_start, range_end FROM {metrics}"
        " WHERE model_kind = ? AND inputs_digest IS NOT NULL ORDER BY range_end, range_start, run_key",
        [model_kind],
    ).df()
    current = _inputs(versions, judged["run_key"].tolist())
    changes = []
    for run_key in judged["run_key"]:
        now = current[current["run_key"] == run_key].set_index("input_run_key")["input_version"]
        then = recorded[recorded["run_key"] == run_key].set_index("input_run_key")["input_version"]
        added = sorted(set(now.index) - set(then.index))
        gone = sorted(set(then.index) - set(now.index))
        changed = sorted(k for k in set(now.index) & set(then.index) if now[k] != then[k])
        parts = [
            f"{what}: {', '.join(keys)}"
            for what, keys in (("stored since", added), ("re-materialized", changed), ("gone", gone))
            if keys
        ]
        changes.append("; ".join(parts))
    judged["changed"] = changes
    return judged[judged["changed"] != ""].reset_index(drop=True)
