"""Stage 3: per-feature importance of the range's model, appended to `feature_importance_history`."""

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.metadata import markdown_table, timed
from persistence_pipeline.assets.profit_model import profit_model
from persistence_pipeline.core.dataset import training_set
from persistence_pipeline.core.importance import explainer_name, feature_importance as importance_table
from persistence_pipeline.core.model import Fold
from persistence_pipeline.partitions import daily_partitions, run_range, single_run_backfill
from persistence_pipeline.resources import CheckpointStore, ModelSettings, Warehouse


@dg.asset(
    deps=[profit_model],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    group_name="model",
    kinds={"shap", "duckdb"},
    description="Per feature: standardized coefficient, mean |SHAP|, out-of-sample permutation importance "
    "(mean and std over repeats), univariate IC and rank. Replaces the run's rows of "
    "`feature_importance_history` in one transaction.",
)
def feature_importance(
    context: dg.AssetExecutionContext, warehouse: Warehouse, checkpoint_store: CheckpointStore, model_settings: ModelSettings
) -> dg.MaterializeResult:
    window = run_range(context)
    run_key = window.run_key(model_settings.kind)
    index = warehouse.query("SELECT path, sha256 FROM checkpoints WHERE run_key = ?", [run_key])
    if index.empty:
        raise ValueError(f"no checkpoint is indexed for run {run_key}: materialize profit_model for this range first")
    checkpoint = checkpoint_store.load(index["path"].iloc[0], index["sha256"].iloc[0])
    data = training_set(warehouse.trades_between(window.start, window.end), window.end)
    if data.trades["trade_id"].tolist() != checkpoint["train_trade_ids"] or not set(checkpoint["features"]) <= set(data.features):
        raise ValueError(f"the stored trades of {run_key} changed after its model was trained: re-materialize profit_model")
    data = data.without([f for f in data.features if f not in checkpoint["features"]])
    folds = [Fold(train=train, test=test) for train, test in zip(checkpoint["fold_train"], checkpoint["fold_test"])]
    params = model_settings.importance_params()
    with timed(context.log, f"importance of {len(data.features)} features ({params.perm_repeats} permutation repeats)"):
        table, shap_n = importance_table(checkpoint["model"], checkpoint["fold_models"], folds, data.X, data.y, data.features, params)
    explainer = explainer_name(checkpoint["model"])
    rows = table.assign(run_key=run_key, range_end=window.last_day)
    with warehouse.transaction() as con:
        warehouse.replace_run_rows(con, "feature_importance_history", "run_key", run_key, rows)
        con.execute(
            "UPDATE run_metrics SET explainer = ?, shap_sample_size = ? WHERE run_key = ?", [explainer, shap_n, run_key]
        )
    context.log.info(f"{run_key}: importance of {len(table)} features, SHAP by {explainer} on {shap_n} trades")
    return dg.MaterializeResult(
        metadata={
            "run_key": run_key,
            "n_features": len(table),
            "explainer": explainer,
            "shap_sample_size": shap_n,
            "perm_repeats": params.perm_repeats,
            "top_features": markdown_table(table, 10, "features"),
            "dagster/row_count": len(table),
        }
    )
