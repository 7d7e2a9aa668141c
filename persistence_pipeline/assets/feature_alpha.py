"""Stage 4b: which features carry persistent alpha and which decay, as of this range's end."""

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.metadata import markdown_table
from persistence_pipeline.core.alpha import effective_runs
from persistence_pipeline.core.alpha import feature_alpha as alpha_table
from persistence_pipeline.partitions import daily_partitions, run_range, single_run_backfill
from persistence_pipeline.resources import WAREHOUSE_POOL, ModelSettings, Warehouse

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
    deps=[dg.AssetKey("feature_stability")],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    pool=WAREHOUSE_POOL,
    group_name="cross_run",
    kinds={"duckdb"},
    description="Per feature across runs as of the range end: IC mean, ICIR, t-stat, importance share, stability, "
    "alpha score in [0, 1] (formula in the README) with its components, IC decay (slope, half-life) and the "
    "correlation of its importance with realized run performance.",
)
def feature_alpha(
    context: dg.AssetExecutionContext, warehouse: Warehouse, model_settings: ModelSettings
) -> dg.MaterializeResult:
    window = run_range(context)
    run_key = window.run_key(model_settings.kind)
    runs = warehouse.runs_as_of(window.last_day, model_settings.kind)
    history = warehouse.importance_history(runs)
    stability = warehouse.query(
        "SELECT feature, topk_frequency FROM feature_stability WHERE as_of_run_key = ?", [run_key]
    )
    summary = warehouse.query(
        "SELECT mean_trade_overlap FROM stability_summary WHERE as_of_run_key = ?", [run_key]
    )
    overlap = (
        float(summary["mean_trade_overlap"].iloc[0])
        if len(summary) and pd.notna(summary["mean_trade_overlap"].iloc[0])
        else 0.0
    )
    table = alpha_table(
        history,
        runs["run_key"].tolist(),
        runs.set_index("run_key")["oos_rank_ic"],
        stability.set_index("feature")["topk_frequency"],
        overlap,
    )
    with warehouse.transaction() as con:
        warehouse.replace_run_rows(
            con, "feature_alpha", "as_of_run_key", run_key, table.assign(as_of_run_key=run_key)
        )
    note = (
        f"{len(runs)} runs as of {window.last_day}, worth {effective_runs(len(runs), overlap):.1f} independent runs "
        f"(consecutive runs share {overlap:.0%} of their training trades)"
        if len(runs) >= 2
        else f"{len(runs)} run: IC dispersion, t-stat and alpha score need at least 2 runs (NULL until then)"
    )
    context.log.info(f"{run_key}: alpha of {len(table)} features; {note}")
    return dg.MaterializeResult(
        metadata={
            "as_of_run_key": run_key,
            "n_runs": len(runs),
            "note": note,
            "top_alpha": markdown_table(table[SHOWN], 10, "features"),
            "decaying": ", ".join(table.loc[table["decaying"], "feature"]) or "none",
            "dagster/row_count": len(table),
        }
    )
