"""The long importance history (`feature_importance_history`, `importance_changes`) and the
training-trade overlap of consecutive runs."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from persistence_pipeline.storage.database import (
    Database,
    note_write,
    public,
    registered_join,
    replace_run_rows,
    rows_of_runs,
    staged_by,
)


def write_importance(
    db: Database,
    run_key: str,
    range_end: dt.date,
    importance: pd.DataFrame,
    changes: pd.DataFrame,
    previous_run_key: str | None,
    explainer: str,
    shap_sample_size: int,
    interactions: pd.DataFrame | None = None,
    segments: pd.DataFrame | None = None,
    ensemble: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> None:
    """Replace the run's importance rows, its strongest feature interactions (none for a linear
    model), its changes since the previous run and, for an ensemble, each member's importance and
    their agreement (`ensemble`: ensemble_importance and model_agreement rows), and record how the
    run was explained in run_metrics, in one transaction."""
    member_importance, agreement = ensemble or (
        pd.DataFrame({"model_kind": pd.Series(dtype="object")}),
        pd.DataFrame({"feature": pd.Series(dtype="object")}),
    )
    with db.transaction() as con:
        replace_run_rows(con, "ensemble_importance", "run_key", run_key, member_importance)
        replace_run_rows(con, "model_agreement", "run_key", run_key, agreement)
        replace_run_rows(
            con,
            "feature_interactions",
            "run_key",
            run_key,
            interactions
            if interactions is not None
            else pd.DataFrame({"feature_a": pd.Series(dtype="object")}),
        )
        replace_run_rows(
            con, "feature_importance_history", "run_key", run_key, importance.assign(range_end=range_end)
        )
        replace_run_rows(
            con,
            "feature_segments",
            "run_key",
            run_key,
            segments if segments is not None else pd.DataFrame({"segment": pd.Series(dtype="object")}),
        )
        replace_run_rows(
            con, "importance_changes", "run_key", run_key, changes.assign(previous_run_key=previous_run_key)
        )
        record_explainer(con, run_key, explainer, shap_sample_size)


def segments_of_runs(db: Database, run_keys: list[str], segment: str, latest_run_key: str) -> pd.DataFrame:
    """feature_segments rows for the dashboard: `segment`'s rows of the given runs, and every
    segment's rows of `latest_run_key` (their names say which segments that run stored); by run,
    segment and rank."""
    return rows_of_runs(
        db,
        run_keys,
        "SELECT s.* FROM feature_segments s JOIN wanted_runs USING (run_key)"
        " WHERE s.segment = ? OR s.run_key = ? ORDER BY s.run_key, s.segment, s.rank NULLS LAST, s.feature",
        [segment, latest_run_key],
    )


def model_agreement(db: Database, run_keys: list[str]) -> pd.DataFrame:
    """model_agreement rows of the given runs (none for runs of one model), by run and agreement."""
    return rows_of_runs(
        db,
        run_keys,
        "SELECT a.* FROM model_agreement a JOIN wanted_runs USING (run_key)"
        " ORDER BY a.run_key, a.rank_max NULLS LAST, a.rank_min, a.feature",
    )


def ensemble_importance(db: Database, run_key: str) -> pd.DataFrame:
    """Each ensemble member's importance of one run, by member and rank (none for a run of one model)."""
    return db.query(
        "SELECT * FROM ensemble_importance WHERE run_key = ? ORDER BY model_kind, rank NULLS LAST, feature",
        [run_key],
    )


def interactions(db: Database, run_key: str) -> pd.DataFrame:
    """The strongest feature interactions of one run, strongest first (none for a linear model)."""
    return db.query("SELECT * FROM feature_interactions WHERE run_key = ? ORDER BY rank", [run_key])


def record_explainer(
    con: duckdb.DuckDBPyConnection, run_key: str, explainer: str, shap_sample_size: int
) -> None:
    """Set how the run was explained on its run_metrics row (the run's staged row when staged; a
    run that explains a published model stages a copy of its row first)."""
    run = staged_by(con)
    if run is None:
        con.execute(
            f"UPDATE {public(con, 'run_metrics')} SET explainer = ?, shap_sample_size = ? WHERE run_key = ?",
            [explainer, shap_sample_size, run_key],
        )
        return
    staged = con.execute(
        "SELECT count(*) FROM staging.run_metrics WHERE staged_by = ? AND run_key = ?", [run, run_key]
    ).fetchall()[0][0]
    if staged == 0:
        published = con.execute(
            f"SELECT * FROM {public(con, 'run_metrics')} WHERE run_key = ?", [run_key]
        ).df()
        replace_run_rows(con, "run_metrics", "run_key", run_key, published)
    note_write(run, "run_metrics")
    con.execute(
        "UPDATE staging.run_metrics SET explainer = ?, shap_sample_size = ?"
        " WHERE staged_by = ? AND run_key = ?",
        [explainer, shap_sample_size, run, run_key],
    )


def importance_history(db: Database, run_keys: list[str], with_quarantined: bool = False) -> pd.DataFrame:
    """feature_importance_history rows of the given runs: by default without the rows of features
    the leak screen kept out of a run's model (they hold no importance of that run); with them for
    the figures that must know a run could not select a feature (top-k frequency)."""
    return rows_of_runs(
        db,
        run_keys,
        "SELECT h.* FROM feature_importance_history h JOIN wanted_runs USING (run_key)"
        " WHERE ? OR h.quarantined IS NOT TRUE ORDER BY h.run_key, h.rank",
        [with_quarantined],
    )


def importance_changes(db: Database, run_key: str) -> pd.DataFrame:
    """The run's importance_changes rows (rank and mean |SHAP| against the previous run)."""
    return db.query("SELECT * FROM importance_changes WHERE run_key = ? ORDER BY feature", [run_key])


def consecutive_training_overlap(db: Database, runs: pd.DataFrame) -> np.ndarray:
    """For each consecutive pair of runs (oldest first): sizes of their training-trade sets and of the
    intersection, counted from `trades` (a run trains on trades entered in its range that exited by
    its end)."""
    if len(runs) < 2:
        return np.empty((0, 3))
    start = pd.to_datetime(runs["range_start"]).dt.tz_localize("UTC")
    end = pd.to_datetime(runs["range_end"]).dt.tz_localize("UTC") + pd.Timedelta(days=1)
    pairs = pd.DataFrame(
        {
            "pair": np.arange(len(runs) - 1),
            "a_start": start.to_numpy()[:-1],
            "a_end": end.to_numpy()[:-1],
            "b_start": start.to_numpy()[1:],
            "b_end": end.to_numpy()[1:],
        }
    )
    with db.connect() as con:
        counts = registered_join(
            con,
            "run_pairs",
            pairs,
            """SELECT p.pair,
                 count(*) FILTER (WHERE t.entry_time >= p.a_start AND t.entry_time < p.a_end
                                    AND t.exit_time < p.a_end) AS n_a,
                 count(*) FILTER (WHERE t.entry_time >= p.b_start AND t.entry_time < p.b_end
                                    AND t.exit_time < p.b_end) AS n_b,
                 count(*) FILTER (WHERE t.entry_time >= greatest(p.a_start, p.b_start)
                                    AND t.entry_time < least(p.a_end, p.b_end)
                                    AND t.exit_time < least(p.a_end, p.b_end)) AS n_both
               FROM run_pairs p JOIN trades t
                 ON t.entry_time >= least(p.a_start, p.b_start) AND t.entry_time < greatest(p.a_end, p.b_end)
               GROUP BY p.pair ORDER BY p.pair""",
        )
    table = np.zeros((len(pairs), 3))
    for pair, n_a, n_b, n_both in counts.itertuples(index=False):
        table[int(pair)] = (n_a, n_b, n_both)
    return table
