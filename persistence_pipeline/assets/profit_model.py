"""Stage 2: the profit model of the range, warm-started from stored priors, evaluated out of sample
with purged walk-forward folds, saved as a skops checkpoint, with a `run_metrics` row."""

import dataclasses
import json
from importlib.metadata import version

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.metadata import finite_or_none
from persistence_pipeline.assets.trades import trades
from persistence_pipeline.core.dataset import training_set
from persistence_pipeline.core.model import train_and_evaluate
from persistence_pipeline.partitions import daily_partitions, run_range, single_run_backfill
from persistence_pipeline.resources import CheckpointStore, ModelSettings, Warehouse

VERSIONED_LIBRARIES = ("scikit-learn", "shap", "numpy", "pandas", "dagster", "duckdb", "skops")


@dg.asset(
    deps=[trades],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    group_name="model",
    kinds={"scikit-learn", "duckdb"},
    description="Ridge (shrunk toward the latest stored priors) or gradient-boosted trees on the trades "
    "whose label is realized by the range end; purged walk-forward out-of-sample metrics; skops checkpoint.",
)
def profit_model(
    context: dg.AssetExecutionContext, warehouse: Warehouse, checkpoint_store: CheckpointStore, model_settings: ModelSettings
) -> dg.MaterializeResult:
    window = run_range(context)
    params = model_settings.model_params()
    run_key = window.run_key(params.kind)
    data = training_set(warehouse.trades_between(window.start, window.end), window.end)
    priors = warehouse.latest_priors(window.start) if params.kind == "ridge" else None
    prior_coef = priors[1].reindex(data.features).fillna(0.0).to_numpy() if priors else None
    fitted = train_and_evaluate(data.X, data.y, data.entry, data.exit, data.features, params, prior_coef)
    checkpoint = {
        "model": fitted.model,
        "fold_models": fitted.fold_models,
        "fold_train": [fold.train for fold in fitted.folds],
        "fold_test": [fold.test for fold in fitted.folds],
        "features": data.features,
        "train_trade_ids": data.trades["trade_id"].tolist(),
    }
    path, sha256 = checkpoint_store.save(checkpoint, run_key)
    m = fitted.metrics
    now = pd.Timestamp.now(tz="UTC")
    priors_from = priors[0] if priors else None
    run_row = {
        "run_key": run_key, "range_start": window.first_day, "range_end": window.last_day,
        "dagster_run_id": context.run_id, "model_kind": params.kind, "n_trades": data.n_read, "n_train": len(data.y),
        "n_unrealized": data.n_unrealized, "n_features": len(data.features), "n_folds": len(fitted.folds),
        "n_oos": m.n_oos, "oos_rank_ic": m.rank_ic, "oos_r2": m.r2, "oos_hit_rate": m.hit_rate, "oos_n_taken": m.n_taken,
        "oos_mean_return_taken": m.mean_return_taken, "oos_mean_return_all": m.mean_return_all,
        "priors_from_run_key": priors_from, "seed": params.seed, "model_params": json.dumps(dataclasses.asdict(params)),
        "library_versions": json.dumps({name: version(name) for name in VERSIONED_LIBRARIES}), "created_at": now,
    }
    checkpoint_row = {
        "run_key": run_key, "model_kind": params.kind, "range_start": window.first_day, "range_end": window.last_day,
        "path": path, "sha256": sha256, "oos_rank_ic": m.rank_ic, "oos_r2": m.r2, "oos_hit_rate": m.hit_rate, "created_at": now,
    }
    with warehouse.transaction() as con:
        warehouse.replace_run_rows(con, "run_metrics", "run_key", run_key, pd.DataFrame([run_row]))
        warehouse.replace_run_rows(con, "checkpoints", "run_key", run_key, pd.DataFrame([checkpoint_row]))
    checkpoint_store.remove_superseded(run_key, path)
    context.log.info(
        f"{run_key}: trained on {len(data.y)} trades ({data.n_unrealized} dropped: exit after {window.last_day}), "
        f"{len(fitted.folds)} walk-forward folds, OOS rank IC {m.rank_ic:.4f}"
    )
    return dg.MaterializeResult(
        metadata={
            "run_key": run_key,
            "model_kind": params.kind,
            "priors_from_run_key": priors_from or "none (cold start: plain ridge)" if params.kind == "ridge" else "none (trees take no priors)",
            "n_trades_in_range": data.n_read,
            "n_train": len(data.y),
            "n_dropped_label_after_range_end": data.n_unrealized,
            "n_folds": len(fitted.folds),
            "n_oos": m.n_oos,
            "oos_rank_ic": finite_or_none(m.rank_ic),
            "oos_r2": finite_or_none(m.r2),
            "oos_hit_rate": finite_or_none(m.hit_rate),
            "oos_mean_return_taken": finite_or_none(m.mean_return_taken),
            "oos_mean_return_all": finite_or_none(m.mean_return_all),
            "checkpoint": dg.MetadataValue.path(path),
            "checkpoint_sha256": sha256,
        }
    )
