"""What `python -m persistence_pipeline report` reads: the newest run, its stability summary, its
alpha table and its importances within each segment (strategy, side), from a read-only connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from persistence_pipeline.storage.database import Database
from persistence_pipeline.storage.staleness import stale_runs_read

# a report waits this long for a writing run to release the file, then says so
REPORT_LOCK_WAIT_SECONDS = 30.0


class WarehouseUnreadable(Exception):
    """The path is not a readable warehouse with a run in it; the message says which and what to do."""


@dataclass(frozen=True)
class LatestRun:
    latest: pd.Series  # run_metrics row of the newest run (by range end)
    n_runs_same_kind: int
    summary: pd.Series | None  # its stability_summary row
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
        return _read_latest(con, path)


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


def _read_latest(con: duckdb.DuckDBPyConnection, path: Path) -> LatestRun:
    tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if not {"run_metrics", "stability_summary", "feature_alpha"} <= tables:
        raise WarehouseUnreadable(f"{path} holds no run yet: materialize a range first (see README)")
    runs = con.execute("SELECT * FROM run_metrics ORDER BY range_end, range_start, run_key").df()
    if runs.empty:
        raise WarehouseUnreadable(f"the warehouse {path} holds no run yet: materialize a range first")
    latest = runs.iloc[-1]
    summary = con.execute("SELECT * FROM stability_summary WHERE as_of_run_key = ?", [latest["run_key"]]).df()
    alpha = con.execute(
        "SELECT * FROM feature_alpha WHERE as_of_run_key = ? ORDER BY alpha_score DESC NULLS LAST, feature",
        [latest["run_key"]],
    ).df()
    quarantined = con.execute(
        "SELECT run_key, feature, ic, reason FROM excluded_features WHERE run_key = ?"
        " ORDER BY abs(ic) DESC, feature",
        [latest["run_key"]],
    ).df()
    interactions = (
        con.execute(
            "SELECT * FROM feature_interactions WHERE run_key = ? ORDER BY rank", [latest["run_key"]]
        ).df()
        if "feature_interactions" in tables  # a warehouse written before the table existed
        else pd.DataFrame(columns=["feature_a", "feature_b", "interaction_mean_abs", "rank"])
    )
    segments = (
        con.execute(
            "SELECT * FROM feature_segments WHERE run_key = ? ORDER BY segment, rank NULLS LAST, feature",
            [latest["run_key"]],
        ).df()
        if "feature_segments" in tables  # a warehouse written before the table existed
        else pd.DataFrame(
            {c: pd.Series(dtype="object") for c in ["run_key", "segment", "feature"]}
            | {c: pd.Series(dtype="float64") for c in ["n_trades", "ic", "shap_mean_abs", "rank"]}
        )
    )
    sizing = (
        con.execute("SELECT * FROM sizing_performance WHERE run_key = ?", [latest["run_key"]]).df()
        if "sizing_performance" in tables  # a warehouse written before the table existed
        else pd.DataFrame(columns=["book", "costs", "cost_bps"])
    )
    has_ensemble = {"ensemble_metrics", "model_agreement"} <= tables  # else written before ensembles
    ensemble = (
        con.execute(
            "SELECT * FROM ensemble_metrics WHERE run_key = ?"
            " ORDER BY model_kind = 'ensemble', model_kind <> ?, model_kind",
            [latest["run_key"], latest["model_kind"]],
        ).df()
        if has_ensemble
        else pd.DataFrame(columns=["model_kind", "oos_rank_ic"])
    )
    agreement = (
        con.execute(
            "SELECT * FROM model_agreement WHERE run_key = ? ORDER BY rank_max NULLS LAST, rank_min, feature",
            [latest["run_key"]],
        ).df()
        if has_ensemble
        else pd.DataFrame(columns=["feature", "in_all_top_k", "rank_spearman"])
    )
    history_columns = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'feature_importance_history'"
        ).fetchall()
    }
    suspects = (
        con.execute(
            "SELECT run_key, feature, suspect, suspect_reason FROM feature_importance_history"
            " WHERE run_key = ? AND suspect ORDER BY feature",
            [latest["run_key"]],
        ).df()
        if "suspect" in history_columns  # else written before suspicion was stored
        else pd.DataFrame(columns=["run_key", "feature", "suspect", "suspect_reason"])
    )
    return LatestRun(
        suspects=suspects,
        ensemble=ensemble,
        agreement=agreement,
        sizing=sizing,
        stale=stale_runs_read(con, str(latest["model_kind"])),
        segments=segments,
        quarantined=quarantined,
        interactions=interactions,
        latest=latest,
        n_runs_same_kind=int((runs["model_kind"] == latest["model_kind"]).sum()),
        summary=summary.iloc[0] if len(summary) else None,
        alpha=alpha,
    )
