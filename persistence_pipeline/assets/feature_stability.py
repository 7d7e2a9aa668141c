"""Stage 4a: how stable the importance ranking is across every run stored as of this range's end."""

import dataclasses

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.feature_importance import feature_importance
from persistence_pipeline.assets.metadata import finite_or_none, markdown_table
from persistence_pipeline.core.stability import feature_stability as per_feature_stability
from persistence_pipeline.core.stability import jaccard_overlap, stability_summary
from persistence_pipeline.partitions import daily_partitions, run_range, single_run_backfill
from persistence_pipeline.resources import WAREHOUSE_POOL, AnalysisSettings, ModelSettings, Warehouse


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "feature_stability",
            deps=[feature_importance],
            group_name="cross_run",
            kinds={"duckdb"},
            description="Per feature across runs as of the range end: rank mean/std, top-k frequency, "
            "sign consistency, importance coefficient of variation.",
        ),
        dg.AssetSpec(
            "stability_summary",
            deps=[feature_importance],
            group_name="cross_run",
            kinds={"duckdb"},
            description="Kendall's W, mean pairwise and latest Spearman of importance ranks, Nogueira "
            "top-k stability with 95% CI, and the training-trade overlap of consecutive runs.",
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    pool=WAREHOUSE_POOL,
)
def feature_stability(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
):
    window = run_range(context)
    run_key = window.run_key(model_settings.kind)
    runs = warehouse.runs_as_of(window.last_day, model_settings.kind)
    history = warehouse.importance_history(runs)
    counts = warehouse.consecutive_training_overlap(runs)
    overlap = float(jaccard_overlap(counts[:, 0], counts[:, 1], counts[:, 2]).mean()) if len(counts) else None
    per_feature = per_feature_stability(history, analysis_settings.top_k)
    summary = stability_summary(history, runs["run_key"].tolist(), analysis_settings.top_k, overlap)
    with warehouse.transaction() as con:
        warehouse.replace_run_rows(
            con, "feature_stability", "as_of_run_key", run_key, per_feature.assign(as_of_run_key=run_key)
        )
        warehouse.replace_run_rows(
            con,
            "stability_summary",
            "as_of_run_key",
            run_key,
            pd.DataFrame([{"as_of_run_key": run_key, **dataclasses.asdict(summary)}]),
        )
    context.log.info(f"{run_key}: stability over {summary.n_runs} runs: {summary.note}")
    figures = {
        name: finite_or_none(value) if isinstance(value, float) else value
        for name, value in dataclasses.asdict(summary).items()
        if name != "note"
    }
    yield dg.MaterializeResult(
        asset_key="feature_stability",
        metadata={
            "as_of_run_key": run_key,
            "n_runs": summary.n_runs,
            "note": summary.note,
            "most_stable": markdown_table(per_feature, 15, "features"),
            "dagster/row_count": len(per_feature),
        },
    )
    yield dg.MaterializeResult(
        asset_key="stability_summary", metadata={"as_of_run_key": run_key, **figures, "note": summary.note}
    )
