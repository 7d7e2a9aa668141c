"""Stage 3: per-feature importance of the range's model (core/explanation.py), with its spread, the
groups of correlated features and what changed since the previous run; appended to
`feature_importance_history`. With an ensemble, each other member's importance and how far the
members' ranks agree."""

import dagster as dg

from persistence_pipeline.assets.metadata import markdown_table, run_result, timed
from persistence_pipeline.assets.stage import (
    STAGE,
    finish,
    run_database,
    training_data,
    user_errors_fail_the_step,
)
from persistence_pipeline.core.changes import describe_changes
from persistence_pipeline.core.explanation import PreviousRun, by_segment, explain, trained_set
from persistence_pipeline.errors import MissingRowsError
from persistence_pipeline.partitions import run_scope
from persistence_pipeline.resources import (
    AnalysisSettings,
    CheckpointStore,
    ModelSettings,
    Warehouse,
    explain_params,
)
from persistence_pipeline.storage import explanations, runs

SHOWN = [
    "rank",
    "feature",
    "shap_mean_abs",
    "shap_mean_abs_std",
    "coef",
    "coef_std",
    "perm_importance",
    "perm_importance_std",
    "ic",
    "group_id",
    "group_size",
    "group_shap_mean_abs",
]
GROUP_SHOWN = ["group_id", "feature", "rank", "shap_mean_abs", "group_shap_mean_abs", "max_abs_corr"]


@dg.asset(
    **STAGE,
    deps=[dg.AssetKey("profit_model")],
    group_name="model",
    kinds={"shap", "duckdb"},
    description="Per feature: standardized coefficient and mean |SHAP| with bootstrap spreads, out-of-sample "
    "permutation importance (mean, std), univariate IC, rank, and its group of correlated features; "
    "`importance_changes` against the previous run. Replaces the run's rows in one transaction.",
)
@user_errors_fail_the_step
def feature_importance(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    checkpoint_store: CheckpointStore,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.MaterializeResult:
    scope, db = run_scope(context, model_settings.kind), run_database(context, warehouse)
    with db.session():  # the stage's reads, one connection
        checkpoint = checkpoint_store.load(*runs.checkpoint_of(db, scope.run_key))
        metrics = runs.run_metrics_row(db, scope.run_key)
        if metrics is None:
            raise MissingRowsError(f"no run_metrics row for {scope.run_key}: materialize profit_model first")
        data = trained_set(
            training_data(db, scope.window, model_settings.design_params(), checkpoint.label_cost),
            checkpoint,
            scope.run_key,
        )
        previous = runs.previous_run(db, scope.window.first_day, model_settings.kind)
        previous_run = (
            None
            if previous is None
            else PreviousRun(
                str(previous["run_key"]), explanations.importance_history(db, [str(previous["run_key"])])
            )
        )
    params = explain_params(model_settings, analysis_settings)
    members = "".join(f"; ensemble member {kind}" for kind in checkpoint.members)
    with timed(
        context.log,
        f"importance of {len(data.features)} features ({params.importance.perm_repeats} permutation repeats, "
        f"{params.importance.bootstrap_rounds} bootstrap rounds){members}",
    ):
        run = explain(checkpoint, data, model_settings.kind, params, metrics, previous_run)
    explanations.write_importance(
        db,
        scope.run_key,
        scope.window.last_day,
        run.importance,
        run.changes,
        run.previous_run_key,
        run.explainer,
        run.shap_sample_size,
        run.interactions,
        run.segments,
        (run.members, run.agreement) if len(run.members) else None,
    )
    finish(context, db, scope.run_key)
    table = run.importance
    context.log.info(
        f"{scope.run_key}: importance of {len(table)} features, SHAP by {run.explainer} "
        f"on {run.shap_sample_size} trades"
    )
    groups = table[table["group_size"] > 1].sort_values(["group_id", "rank"])
    return run_result(
        context,
        scope.run_key,
        {
            "what_changed": dg.MetadataValue.md(
                describe_changes(run.changes, run.previous_run_key, analysis_settings.top_k)
            ),
            "n_features": len(table),
            "explainer": run.explainer,
            "shap_sample_size": run.shap_sample_size,
            "perm_repeats": params.importance.perm_repeats,
            "bootstrap_rounds": params.importance.bootstrap_rounds,
            "top_features": markdown_table(table[SHOWN], 15, "features"),
            "correlated_groups": markdown_table(groups[GROUP_SHOWN], 30, "features")
            if len(groups)
            else "no two features correlate above the threshold",
            "by_segment": dg.MetadataValue.md(by_segment(run.segments, 5)),
            "top_interactions": markdown_table(run.interactions, params.importance.interaction_top, "pairs")
            if len(run.interactions)
            else "none: a linear model has no interactions (use model_settings.kind = gbt)",
            "model_agreement": markdown_table(run.agreement, 15, "features")
            if len(run.agreement)
            else "one model",
            "dagster/row_count": len(table),
        },
    )
