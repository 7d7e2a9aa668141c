"""Stage 3: per-feature importance of the range's model, with its spread, the groups of correlated
features and what changed since the previous run; appended to `feature_importance_history`."""

import dagster as dg

from persistence_pipeline.assets.metadata import markdown_table, timed
from persistence_pipeline.assets.profit_model import profit_model
from persistence_pipeline.core.changes import describe_changes, importance_changes
from persistence_pipeline.core.correlation import correlated_groups
from persistence_pipeline.core.dataset import training_set
from persistence_pipeline.core.importance import explainer_name
from persistence_pipeline.core.importance import feature_importance as importance_table
from persistence_pipeline.core.model import Fold
from persistence_pipeline.partitions import daily_partitions, run_range, single_run_backfill
from persistence_pipeline.resources import (
    WAREHOUSE_POOL,
    AnalysisSettings,
    CheckpointStore,
    ModelSettings,
    Warehouse,
)

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


@dg.asset(
    deps=[profit_model],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    pool=WAREHOUSE_POOL,
    group_name="model",
    kinds={"shap", "duckdb"},
    description="Per feature: standardized coefficient and mean |SHAP| with bootstrap spreads, out-of-sample "
    "permutation importance (mean, std), univariate IC, rank, and its group of correlated features; "
    "`importance_changes` against the previous run. Replaces the run's rows in one transaction.",
)
def feature_importance(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    checkpoint_store: CheckpointStore,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.MaterializeResult:
    window = run_range(context)
    run_key = window.run_key(model_settings.kind)
    index = warehouse.query("SELECT path, sha256 FROM checkpoints WHERE run_key = ?", [run_key])
    if index.empty:
        raise ValueError(
            f"no checkpoint is indexed for run {run_key}: materialize profit_model for this range first"
        )
    checkpoint = checkpoint_store.load(index["path"].iloc[0], index["sha256"].iloc[0])
    data = training_set(warehouse.trades_between(window.start, window.end), window.end)
    if data.trades["trade_id"].tolist() != checkpoint["train_trade_ids"] or not set(
        checkpoint["features"]
    ) <= set(data.features):
        raise ValueError(
            f"the stored trades of {run_key} changed after its model was trained: re-materialize profit_model"
        )
    data = data.without([f for f in data.features if f not in checkpoint["features"]])
    folds = [
        Fold(train=train, test=test) for train, test in zip(checkpoint["fold_train"], checkpoint["fold_test"], strict=True)
    ]
    params = model_settings.importance_params()
    with timed(
        context.log,
        f"importance of {len(data.features)} features ({params.perm_repeats} permutation repeats, "
        f"{params.bootstrap_rounds} bootstrap rounds)",
    ):
        table, shap_n = importance_table(
            checkpoint["model"],
            checkpoint["fold_models"],
            folds,
            data.X,
            data.y,
            data.features,
            params,
            checkpoint["prior_coef"],
            checkpoint["sample_weight"],
        )
    groups = correlated_groups(data.X, data.features, model_settings.correlation_threshold)
    table = table.merge(groups, on="feature")
    table["group_shap_mean_abs"] = table.groupby("group_id")["shap_mean_abs"].transform("sum")
    earlier = warehouse.runs_as_of(window.last_day, model_settings.kind)
    earlier = earlier[earlier["run_key"] != run_key]
    previous_key = str(earlier["run_key"].iloc[-1]) if len(earlier) else None
    previous = warehouse.importance_history(earlier.tail(1)) if previous_key else table.iloc[0:0]
    changes = importance_changes(previous, table, analysis_settings.top_k)
    explainer = explainer_name(checkpoint["model"])
    with warehouse.transaction() as con:
        warehouse.replace_run_rows(
            con,
            "feature_importance_history",
            "run_key",
            run_key,
            table.assign(run_key=run_key, range_end=window.last_day),
        )
        warehouse.replace_run_rows(
            con,
            "importance_changes",
            "run_key",
            run_key,
            changes.assign(run_key=run_key, previous_run_key=previous_key),
        )
        con.execute(
            "UPDATE run_metrics SET explainer = ?, shap_sample_size = ? WHERE run_key = ?",
            [explainer, shap_n, run_key],
        )
    context.log.info(
        f"{run_key}: importance of {len(table)} features, SHAP by {explainer} on {shap_n} trades"
    )
    multi = table[table["group_size"] > 1].sort_values(["group_id", "rank"])
    return dg.MaterializeResult(
        metadata={
            "what_changed": dg.MetadataValue.md(
                describe_changes(changes, previous_key, analysis_settings.top_k)
            ),
            "run_key": run_key,
            "n_features": len(table),
            "explainer": explainer,
            "shap_sample_size": shap_n,
            "perm_repeats": params.perm_repeats,
            "bootstrap_rounds": params.bootstrap_rounds,
            "top_features": markdown_table(table[SHOWN], 15, "features"),
            "correlated_groups": markdown_table(
                multi[
                    ["group_id", "feature", "rank", "shap_mean_abs", "group_shap_mean_abs", "max_abs_corr"]
                ],
                30,
                "features",
            )
            if len(multi)
            else "no two features correlate above the threshold",
            "dagster/row_count": len(table),
        }
    )
