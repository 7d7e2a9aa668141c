"""Stage 4a: how stable the importance ranking is across every run stored as of this range's end."""

import dataclasses
from collections.abc import Iterator

import dagster as dg

from persistence_pipeline.assets.metadata import finite_or_none, markdown_table, run_result
from persistence_pipeline.assets.stage import STAGE, finish, run_database, stage_keys
from persistence_pipeline.core.stability import (
    effective_runs,
    mean_jaccard_overlap,
    non_overlapping_runs,
    per_feature_stability,
    summarize_stability,
)
from persistence_pipeline.partitions import run_scope
from persistence_pipeline.resources import AnalysisSettings, ModelSettings, Warehouse
from persistence_pipeline.storage import cross_run, explanations, runs


@dg.multi_asset(
    **STAGE,
    specs=[
        dg.AssetSpec(
            "feature_stability",
            deps=[dg.AssetKey("feature_importance")],
            group_name="cross_run",
            kinds={"duckdb"},
            description="Per feature across the non-overlapping runs stored as of the range end: rank "
            "mean/std, top-k frequency, sign consistency, importance coefficient of variation.",
        ),
        dg.AssetSpec(
            "stability_summary",
            deps=[dg.AssetKey("feature_importance")],
            group_name="cross_run",
            kinds={"duckdb"},
            description="Over the runs whose windows do not overlap: Kendall's W, mean pairwise and "
            "latest Spearman of importance ranks, Nogueira top-k stability with a 95% interval (5 runs "
            "or more); beside them the runs stored, compared and effective, and the training-trade "
            "overlap of consecutive runs.",
        ),
    ],
)
def feature_stability(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> Iterator[dg.MaterializeResult]:
    scope, db = run_scope(context, model_settings.kind), run_database(context, warehouse)
    stored = runs.runs_as_of(db, scope.window.last_day, model_settings.kind)
    importance = explanations.importance_history(db, stored["run_key"].tolist(), with_quarantined=True)
    ranges = stored[["run_key", "range_start", "range_end"]]
    overlap = mean_jaccard_overlap(explanations.consecutive_training_overlap(db, stored))
    compared = importance[importance["run_key"].isin(non_overlapping_runs(ranges))]
    per_feature = per_feature_stability(compared, analysis_settings.top_k)
    summary = summarize_stability(
        importance, ranges, analysis_settings.top_k, overlap, effective_runs(ranges)
    )
    cross_run.write_stability(db, scope.run_key, per_feature, dataclasses.asdict(summary))
    finish(context, db, scope.run_key)
    context.log.info(f"{scope.run_key}: stability: {summary.note}")
    figures = {
        name: finite_or_none(value) if isinstance(value, float) else value
        for name, value in dataclasses.asdict(summary).items()
        if name != "note"
    }
    yield run_result(
        context,
        scope.run_key,
        {
            "n_runs": summary.n_runs,
            "note": summary.note,
            "most_stable": markdown_table(per_feature, 15, "features"),
            "dagster/row_count": len(per_feature),
        },
        asset_key=stage_keys(context)["feature_stability"],
    )
    yield run_result(
        context,
        scope.run_key,
        {**figures, "note": summary.note},
        asset_key=stage_keys(context)["stability_summary"],
    )
