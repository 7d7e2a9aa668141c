"""What `python -m persistence_pipeline report` reads: the newest run, its stability summary, its
alpha table and its importances within each segment (strategy, side), from a read-only connection.
Every table is read by the reader of storage/ that owns it (runs, history, cross_run, staleness), in
that reader's order, so the report and the dashboard see the same rows the same way; this module
only picks the latest run and stands in for the tables a warehouse written before them lacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from persistence_pipeline.errors import MissingRowsError
from persistence_pipeline.storage import cross_run, explanations, runs, staleness
from persistence_pipeline.storage.database import Database

# a report waits this long for a writing run to release the file, then says so
REPORT_LOCK_WAIT_SECONDS = 30.0


class WarehouseUnreadable(Exception):
    """The path is not a readable warehouse with a run in it; the message says which and what to do."""


@dataclass(frozen=True)
class LatestRun:
    latest: pd.Series  # run_metrics row of the newest run (by range end)
    n_runs_same_kind: int
    summary: dict[str, Any] | None  # its stability_summary row
    alpha: pd.DataFrame  # its feature_alpha rows, best first
    quarantined: pd.DataFrame  # features quarantined from its model: run_key, feature, ic, reason
    interactions: pd.DataFrame  # its strongest feature pairs (trees only; empty for a linear model)
    # its feature_segments rows (importance and IC within each strategy and side), by segment and rank;
    # empty for a run (or a warehouse) from before segments were stored
    segments: pd.DataFrame
    stale: pd.DataFrame  # the runs of its model kind whose inputs changed since (storage/staleness.py)
    sizing: pd.DataFrame  # its sizing_performance rows (empty from before sizing existed)
    # its ensemble_metrics and model_agreement rows (empty for a run of one model, or from before
    # ensembles existed)
    ensemble: pd.DataFrame
    agreement: pd.DataFrame
    # its feature_importance_history rows of suspected leaks (run_key, feature, suspect,
    # suspect_reason); empty from before suspicion was stored
    suspects: pd.DataFrame


def latest_run(path: Path, wait_seconds: float = REPORT_LOCK_WAIT_SECONDS) -> LatestRun:
    """The newest run of the warehouse at `path`, or WarehouseUnreadable naming the path and the problem.
    While a run publishes, the file is locked: the report waits up to `wait_seconds` for it."""
    with reading(path, wait_seconds, "report") as con:
        return _read_latest(_Snapshot(str(path), wait_seconds, connection=con), path)


@contextmanager
def reading(path: Path, wait_seconds: float, command: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the warehouse at `path` (one consistent snapshot of every table), or
    WarehouseUnreadable naming the path and the problem. While a run publishes, the file is locked:
    this waits up to `wait_seconds` for it, then says to run `command` again."""
    if not path.exists():
        raise WarehouseUnreadable(f"no warehouse at {path}: materialize a range first (see README)")
    if path.is_dir():
        raise WarehouseUnreadable(f"{path} is a directory, not a DuckDB warehouse file")
    if path.stat().st_size == 0:
        raise WarehouseUnreadable(f"{path} is an empty file, not a DuckDB warehouse")
    try:
        with Database(str(path), wait_seconds).connect(read_only=True) as con:
            yield con
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
            raise WarehouseUnreadable(
                f"{path} is locked by another process writing it (a run publishing); waited {wait_seconds:g}"
                f" s: {command} again when it is done, or wait longer with --wait SECONDS"
            ) from exc
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WarehouseUnreadable(f"{path} cannot be read as a DuckDB warehouse: {first_line}") from exc


@dataclass(frozen=True)
class _Snapshot(Database):
    """The warehouse through the report's one read-only connection: the readers of storage/ all read
    the same snapshot through it, and none can migrate or write the file."""

    connection: duckdb.DuckDBPyConnection | None = field(default=None, compare=False, repr=False, hash=False)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        assert self.connection is not None
        yield self.connection


def _read_latest(db: _Snapshot, path: Path) -> LatestRun:
    tables = set(db.query("SELECT table_name FROM information_schema.tables")["table_name"])
    if not {"run_metrics", "stability_summary", "feature_alpha"} <= tables:
        raise WarehouseUnreadable(f"{path} holds no run yet: materialize a range first (see README)")
    stored = runs.all_runs(db)
    if stored.empty:
        raise WarehouseUnreadable(f"the warehouse {path} holds no run yet: materialize a range first")
    latest = stored.iloc[-1]
    run_key, kind = str(latest["run_key"]), str(latest["model_kind"])
    try:
        summary: dict[str, Any] | None = cross_run.stability_summary(db, run_key)
    except MissingRowsError:
        summary = None
    # a warehouse written before a table (or a column) existed is read as holding no rows of it
    interactions = (
        explanations.interactions(db, run_key)
        if "feature_interactions" in tables
        else pd.DataFrame(columns=["feature_a", "feature_b", "interaction_mean_abs", "rank"])
    )
    segments = (
        # every segment's rows
        explanations.segments_of_runs(db, [run_key], segment="", latest_run_key=run_key)
        if "feature_segments" in tables
        else pd.DataFrame(
            {c: pd.Series(dtype="object") for c in ["run_key", "segment", "feature"]}
            | {c: pd.Series(dtype="float64") for c in ["n_trades", "ic", "shap_mean_abs", "rank"]}
        )
    )
    sizing = (
        runs.sizing_performance(db, run_key)
        if "sizing_performance" in tables
        else pd.DataFrame(columns=["book", "costs", "cost_bps"])
    )
    has_ensemble = {"ensemble_metrics", "model_agreement"} <= tables
    ensemble = (
        runs.ensemble_metrics(db, run_key)
        if has_ensemble
        else pd.DataFrame(columns=["model_kind", "oos_rank_ic"])
    )
    agreement = (
        explanations.model_agreement(db, [run_key])
        if has_ensemble
        else pd.DataFrame(columns=["feature", "in_all_top_k", "rank_spearman"])
    )
    suspect_columns = ["run_key", "feature", "suspect", "suspect_reason"]
    history_columns = db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
        ["feature_importance_history"],
    )["column_name"]
    if "suspect" in set(history_columns):
        importance = explanations.importance_history(db, [run_key], with_quarantined=True)
        flagged = importance["suspect"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        suspects = importance.loc[flagged, suspect_columns]
    else:
        suspects = pd.DataFrame(columns=suspect_columns)
    return LatestRun(
        suspects=suspects,
        ensemble=ensemble,
        agreement=agreement,
        sizing=sizing,
        stale=staleness.stale_runs(db, kind),
        segments=segments,
        quarantined=runs.quarantined_features(db, [run_key]),
        interactions=interactions,
        latest=latest,
        n_runs_same_kind=int((stored["model_kind"] == kind).sum()),
        summary=summary,
        alpha=cross_run.feature_alpha_rows(db, run_key),
    )
