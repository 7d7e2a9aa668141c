"""Stage 4b: which features carry persistent alpha and which decay, as of this range's end."""

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.feature_importance import feature_importance
from persistence_pipeline.assets.metadata import markdown_table
from persistence_pipeline.assets.stage import STAGE, finish, run_database, user_errors_fail_the_step
from persistence_pipeline.core.alpha import alpha_note
from persistence_pipeline.core.alpha import feature_alpha as alpha_table
from persistence_pipeline.partitions import run_scope
from persistence_pipeline.resources import ModelSettings, Warehouse
from persistence_pipeline.storage import cross_run, history, runs

SHOWN = [
    "feature",
    "alpha_score",
    "ic_mean",
    "icir",
    "ic_t_stat",
    "ic_q_value",
    "stability",
    "importance_share",
    "ic_slope",
    "half_life_runs",
    "decaying",
]


@dg.asset(
    **STAGE,
    deps=[feature_importance, dg.AssetKey("feature_stability"), dg.AssetKey("stability_summary")],
    group_name="cross_run",
    kinds={"duckdb"},
    description="Per feature across runs as of the range end: IC mean, ICIR, t-stat, importance share, "
    "stability, alpha score in [0, 1] (formula in the README) with its components, IC decay (slope, "
    "half-life) and the correlation of its importance with realized run performance.",
)
@user_errors_fail_the_step
def feature_alpha(
    context: dg.AssetExecutionContext, warehouse: Warehouse, model_settings: ModelSettings
) -> dg.MaterializeResult:
    scope, db = run_scope(context, model_settings.kind), run_database(context, warehouse)
    stored = runs.runs_as_of(db, scope.window.last_day, model_settings.kind)
    importance = history.importance_history(db, stored["run_key"].tolist())
    topk_frequency = cross_run.feature_stability(db, scope.run_key).set_index("feature")["topk_frequency"]
    stored_overlap = cross_run.stability_summary(db, scope.run_key)["mean_trade_overlap"]
    overlap = 0.0 if pd.isna(stored_overlap) else float(stored_overlap)  # NULL: fewer than 2 runs
    table = alpha_table(
        importance,
        stored["run_key"].tolist(),
        stored.set_index("run_key")["oos_rank_ic"],
        topk_frequency,
        overlap,
    )
    cross_run.write_alpha(db, scope.run_key, table)
    finish(context, db, scope.run_key)
    note = alpha_note(len(stored), overlap, scope.window.last_day)
    context.log.info(f"{scope.run_key}: alpha of {len(table)} features; {note}")
    return dg.MaterializeResult(
        metadata={
            "as_of_run_key": scope.run_key,
            "n_runs": len(stored),
            "note": note,
            "top_alpha": markdown_table(table[SHOWN], 10, "features"),
            "decaying": ", ".join(table.loc[table["decaying"], "feature"]) or "none",
            "dagster/row_count": len(table),
        }
    )
