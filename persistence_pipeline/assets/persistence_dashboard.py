"""Stage 6: the dashboard PNG and summary, shown inline in the Dagster UI."""

import base64

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.feature_alpha import feature_alpha
from persistence_pipeline.assets.feature_priors import feature_priors
from persistence_pipeline.core.dashboard import DashboardInputs, dashboard_summary, draw_dashboard
from persistence_pipeline.partitions import daily_partitions, run_range, single_run_backfill
from persistence_pipeline.resources import WAREHOUSE_POOL, DashboardStore, ModelSettings, Warehouse


@dg.asset(
    deps=[feature_alpha, feature_priors, dg.AssetKey("stability_summary")],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    pool=WAREHOUSE_POOL,
    group_name="report",
    kinds={"matplotlib"},
    description="Six panels as of the range end (importance over runs, rank heatmap, alpha scores with "
    "uncertainty, importance vs realized performance, stability, run performance) and a markdown summary; "
    "written to data/dashboard/ (per run key, and latest.png for the newest run) and shown here.",
)
def persistence_dashboard(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
    dashboard_store: DashboardStore,
) -> dg.MaterializeResult:
    window = run_range(context)
    run_key = window.run_key(model_settings.kind)
    runs = warehouse.runs_as_of(window.last_day, model_settings.kind)
    summary = warehouse.query("SELECT * FROM stability_summary WHERE as_of_run_key = ?", [run_key])
    inputs = DashboardInputs(
        runs=runs,
        history=warehouse.importance_history(runs),
        stability=warehouse.query("SELECT * FROM feature_stability WHERE as_of_run_key = ?", [run_key]),
        alpha=warehouse.query(
            "SELECT * FROM feature_alpha WHERE as_of_run_key = ? ORDER BY alpha_score DESC NULLS LAST, feature",
            [run_key],
        ),
        summary=summary.iloc[0].to_dict() if len(summary) else {},
        run_key=run_key,
        top_n=dashboard_store.top_n,
        seed=model_settings.seed,
    )
    png = draw_dashboard(inputs)
    newest = warehouse.query(
        "SELECT max(range_end) AS last FROM run_metrics WHERE model_kind = ?", [model_settings.kind]
    )
    path = dashboard_store.save(
        png, run_key, is_newest=pd.Timestamp(newest["last"].iloc[0]).date() <= window.last_day
    )
    markdown = dashboard_summary(inputs)
    context.log.info(f"{run_key}: dashboard of {len(runs)} runs written to {path}")
    image = f"![persistence dashboard](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(markdown),
            "dashboard": dg.MetadataValue.md(image),
            "path": dg.MetadataValue.path(path),
            "n_runs": len(runs),
        }
    )
