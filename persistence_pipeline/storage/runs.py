"""Per-run tables of the model stage: `run_metrics`, `checkpoints`, `oos_predictions`,
`sizing_performance`, `ensemble_predictions`, `ensemble_metrics`, `excluded_features`, `data_loss`,
`feature_coverage`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd

from persistence_pipeline.errors import MissingRowsError
from persistence_pipeline.storage.contract import column_names
from persistence_pipeline.storage.database import Database, replace_run_rows, rows_of_runs
from persistence_pipeline.storage.run_reads import read_once

# run_metrics columns filled later in the run, by the importance stage
# filled by the importance stage, and when the run is published (storage/staleness.py)
FILLED_LATER = frozenset({"explainer", "shap_sample_size", "inputs_digest"})


@dataclass(frozen=True)
class ModelRunRows:
    """Every row the model stage writes for one run. `run_metrics` and `checkpoint` are single rows
    that must carry every contract column (but those filled later): a column added to the contract
    cannot be forgotten. A run of one model has no ensemble rows."""

    run_metrics: dict[str, Any]
    checkpoint: dict[str, Any]
    oos_predictions: pd.DataFrame
    sizing_performance: pd.DataFrame
    excluded_features: pd.DataFrame
    data_loss: pd.DataFrame
    feature_coverage: pd.DataFrame
    ensemble_predictions: pd.DataFrame
    ensemble_metrics: pd.DataFrame


def write_model_run(db: Database, run_key: str, rows: ModelRunRows) -> None:
    """Replace every row the model stage writes for `run_key`, in one transaction."""
    for table, row in (("run_metrics", rows.run_metrics), ("checkpoints", rows.checkpoint)):
        missing = set(column_names(table)) - set(row) - {"run_key"} - FILLED_LATER
        unknown = set(row) - set(column_names(table))
        if missing or unknown:
            raise ValueError(
                f"{table} row of {run_key}: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
    tables = {
        "run_metrics": pd.DataFrame([rows.run_metrics]),
        "checkpoints": pd.DataFrame([rows.checkpoint]),
        "oos_predictions": rows.oos_predictions,
        "sizing_performance": rows.sizing_performance,
        "ensemble_predictions": rows.ensemble_predictions,
        "ensemble_metrics": rows.ensemble_metrics,
        "excluded_features": rows.excluded_features,
        "data_loss": rows.data_loss,
        "feature_coverage": rows.feature_coverage,
    }
    with db.transaction() as con:
        for table, frame in tables.items():
            replace_run_rows(con, table, "run_key", run_key, frame)


def runs_as_of(db: Database, range_end: dt.date, model_kind: str) -> pd.DataFrame:
    """run_metrics of the runs of one model kind that ended on or before `range_end`, oldest first
    (read once per run: storage/run_reads.py; the frame is shared, so callers must not change it)."""
    return read_once(
        db,
        ("runs_as_of", range_end, model_kind),
        ["run_metrics"],
        lambda: db.query(
            "SELECT * FROM run_metrics WHERE model_kind = ? AND range_end <= ?"
            " ORDER BY range_end, range_start, run_key",
            [model_kind, range_end],
        ),
    )


def previous_run(db: Database, first_day: dt.date, model_kind: str) -> pd.Series | None:
    """THE previous run of a run whose range starts on `first_day`: the newest stored run of the same
    model kind that ended before that day, so that its window shares no day with this one (a run
    whose window overlaps would be compared largely with itself). What changed in the importances
    and the feature drift are both measured against it."""
    earlier = runs_as_of(db, first_day - dt.timedelta(days=1), model_kind)
    return earlier.iloc[-1] if len(earlier) else None


def newest_range_end(db: Database, model_kind: str) -> dt.date | None:
    """The last day of the newest stored run of one model kind."""
    newest = db.query("SELECT max(range_end) AS last FROM run_metrics WHERE model_kind = ?", [model_kind])
    last = newest["last"].iloc[0]
    return None if pd.isna(last) else pd.Timestamp(last).date()


def run_metrics_row(db: Database, run_key: str) -> pd.Series | None:
    """The run_metrics row of one run."""
    rows = db.query("SELECT * FROM run_metrics WHERE run_key = ?", [run_key])
    return rows.iloc[0] if len(rows) else None


def checkpoint_index(db: Database) -> pd.DataFrame:
    """Every indexed checkpoint: run_key, model_kind, path, sha256, by run key."""
    return db.query("SELECT run_key, model_kind, path, sha256 FROM checkpoints ORDER BY run_key")


def checkpoint_of(db: Database, run_key: str) -> tuple[str, str]:
    """(path, sha256) of the run's indexed checkpoint."""
    index = db.query("SELECT path, sha256 FROM checkpoints WHERE run_key = ?", [run_key])
    if index.empty:
        raise MissingRowsError(
            f"no checkpoint is indexed for run {run_key}: materialize profit_model for this range first"
        )
    return str(index["path"].iloc[0]), str(index["sha256"].iloc[0])


def oos_predictions(db: Database, run_key: str) -> pd.DataFrame:
    """The run's walk-forward out-of-sample predictions: trade_id, prediction, realized."""
    return db.query(
        "SELECT trade_id, prediction, realized FROM oos_predictions WHERE run_key = ? ORDER BY trade_id",
        [run_key],
    )


def oos_with_entry(db: Database, run_key: str) -> pd.DataFrame:
    """The run's walk-forward OOS predictions with their trades' keys: trade_id, prediction,
    realized (the label), entry_time, exit_time, symbol; in entry order."""
    return db.query(
        "SELECT o.trade_id, o.prediction, o.realized, t.entry_time, t.exit_time, t.symbol"
        " FROM oos_predictions o JOIN trades t USING (trade_id)"
        " WHERE o.run_key = ? ORDER BY t.entry_time, o.trade_id",
        [run_key],
    )


def oos_books(db: Database, run_key: str) -> pd.DataFrame:
    """The run's OOS trades as core/sizing.py books them: prediction, position, gross_return (the
    trade's return before costs), entry_time, exit_time; in entry order."""
    return db.query(
        "SELECT o.trade_id, o.prediction, o.position, t.return AS gross_return, t.entry_time, t.exit_time"
        " FROM oos_predictions o JOIN trades t USING (trade_id)"
        " WHERE o.run_key = ? AND o.position IS NOT NULL ORDER BY t.entry_time, o.trade_id",
        [run_key],
    )


def sizing_performance(db: Database, run_key: str) -> pd.DataFrame:
    """The run's sizing_performance rows: sized, equal, actual; gross then net."""
    return db.query(
        "SELECT * FROM sizing_performance WHERE run_key = ? ORDER BY"
        " CASE book WHEN 'sized' THEN 0 WHEN 'equal' THEN 1 ELSE 2 END, costs",
        [run_key],
    )


def ensemble_metrics(db: Database, run_key: str) -> pd.DataFrame:
    """The run's ensemble_metrics rows: the run's model, the other members by name, then the
    ensemble (none for a run of one model)."""
    return db.query(
        "SELECT m.* FROM ensemble_metrics m JOIN run_metrics r USING (run_key) WHERE m.run_key = ?"
        " ORDER BY m.model_kind = 'ensemble', m.model_kind <> r.model_kind, m.model_kind",
        [run_key],
    )


def excluded_features(db: Database, run_key: str) -> pd.DataFrame:
    """Features quarantined from the run's model, strongest |IC| first."""
    return db.query(
        "SELECT feature, ic, reason FROM excluded_features WHERE run_key = ? ORDER BY abs(ic) DESC, feature",
        [run_key],
    )


def quarantined_features(db: Database, run_keys: list[str]) -> pd.DataFrame:
    """Features quarantined from the models of the given runs: run_key, feature, ic, reason."""
    return rows_of_runs(
        db,
        run_keys,
        "SELECT e.run_key, e.feature, e.ic, e.reason FROM excluded_features e"
        " JOIN wanted_runs USING (run_key) ORDER BY e.run_key, abs(e.ic) DESC, e.feature",
    )


def all_runs(db: Database) -> pd.DataFrame:
    """run_metrics of every stored run, of every model kind, in the order of `runs_as_of` (the
    newest by range end last): what `report` picks its latest run from."""
    return db.query("SELECT * FROM run_metrics ORDER BY range_end, range_start, run_key")
