"""Tables computed as of a run (`as_of_run_key`): stability, alpha, priors and regime weights."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from persistence_pipeline.errors import MissingRowsError
from persistence_pipeline.storage.database import Database, replace_run_rows

# what the next run reads back: priors and curriculum weights
WARM_START_TABLES = ("feature_priors", "regime_weights")


def write_stability(
    db: Database, as_of_run_key: str, per_feature: pd.DataFrame, summary: dict[str, Any]
) -> None:
    """Replace the per-feature stability and the summary as of one run, in one transaction."""
    with db.transaction() as con:
        replace_run_rows(con, "feature_stability", "as_of_run_key", as_of_run_key, per_feature)
        replace_run_rows(con, "stability_summary", "as_of_run_key", as_of_run_key, pd.DataFrame([summary]))


def feature_stability_rows(db: Database, as_of_run_key: str) -> pd.DataFrame:
    """Per-feature stability as of one run; refused when it was never computed (a stage that reads
    it must not silently read "never in the top k")."""
    rows = db.query(
        "SELECT * FROM feature_stability WHERE as_of_run_key = ? ORDER BY rank_mean, feature", [as_of_run_key]
    )
    if rows.empty:
        raise MissingRowsError(
            f"no feature_stability rows as of {as_of_run_key}: "
            "materialize feature_stability for this range first"
        )
    return rows


def stability_summary(db: Database, as_of_run_key: str) -> dict[str, Any]:
    """The stability summary as of one run; refused when it was never computed (a stage that needs
    it must not silently read "no overlap")."""
    rows = db.query("SELECT * FROM stability_summary WHERE as_of_run_key = ?", [as_of_run_key])
    if rows.empty:
        raise MissingRowsError(
            f"no stability_summary row as of {as_of_run_key}: "
            "materialize feature_stability for this range first"
        )
    return rows.iloc[0].to_dict()


def write_alpha(
    db: Database, as_of_run_key: str, alpha: pd.DataFrame, ic_series: pd.DataFrame | None = None
) -> None:
    """Replace the alpha table and the IC series it was computed from as of one run, in one
    transaction."""
    with db.transaction() as con:
        replace_run_rows(con, "feature_alpha", "as_of_run_key", as_of_run_key, alpha)
        replace_run_rows(
            con,
            "feature_ic_series",
            "as_of_run_key",
            as_of_run_key,
            ic_series if ic_series is not None else pd.DataFrame({"feature": pd.Series(dtype="object")}),
        )


def ic_series(db: Database, as_of_run_key: str) -> pd.DataFrame:
    """The per-period IC series of every feature as of one run."""
    return db.query(
        "SELECT * FROM feature_ic_series WHERE as_of_run_key = ? ORDER BY feature, period_start",
        [as_of_run_key],
    )


def feature_alpha_rows(db: Database, as_of_run_key: str) -> pd.DataFrame:
    """Alpha per feature as of one run, best first."""
    return db.query(
        "SELECT * FROM feature_alpha WHERE as_of_run_key = ? ORDER BY alpha_score DESC NULLS LAST, feature",
        [as_of_run_key],
    )


def write_priors(
    db: Database, as_of_run_key: str, priors: pd.DataFrame, weights: pd.DataFrame | None
) -> None:
    """Replace the priors and regime weights as of one run (no weights: none are stored)."""
    with db.transaction() as con:
        replace_run_rows(con, "feature_priors", "as_of_run_key", as_of_run_key, priors)
        replace_run_rows(
            con,
            "regime_weights",
            "as_of_run_key",
            as_of_run_key,
            weights if weights is not None else pd.DataFrame({"regime": pd.Series(dtype="object")}),
        )


def latest_warm_start(
    db: Database, table: str, before: dt.date, model_kind: str
) -> tuple[str, pd.DataFrame] | None:
    """The rows of a warm-start table (`feature_priors`, `regime_weights`) computed as of the newest
    run of `model_kind` that ended before `before`: (that run's key, its rows)."""
    if table not in WARM_START_TABLES:
        raise ValueError(f"{table!r} is not a table keyed by as_of_run_key")
    newest = db.query(
        "SELECT r.run_key FROM run_metrics r WHERE r.model_kind = ? AND r.range_end < ?"
        f" AND EXISTS (SELECT 1 FROM {table} t WHERE t.as_of_run_key = r.run_key)"
        " ORDER BY r.range_end DESC, r.range_start DESC, r.run_key LIMIT 1",
        [model_kind, before],
    )
    if newest.empty:
        return None
    run_key = str(newest["run_key"].iloc[0])
    # column 2 is the table's second key column: feature or regime
    return run_key, db.query(f"SELECT * FROM {table} WHERE as_of_run_key = ? ORDER BY 2", [run_key])
