"""Stage 2: the profit model of the range, warm-started from the stored priors and curriculum
weights, evaluated out of sample with purged walk-forward folds, saved as a skops checkpoint, with
`run_metrics` and `oos_predictions` rows."""

import dataclasses
import json
from importlib.metadata import version

import dagster as dg
import numpy as np
import pandas as pd

from persistence_pipeline.assets.metadata import finite_or_none, markdown_table, timed
from persistence_pipeline.assets.trades import trades
from persistence_pipeline.core.dataset import (
    TrainingSet,
    data_loss,
    feature_coverage,
    require_enough,
    training_set,
)
from persistence_pipeline.core.leakage import quarantine
from persistence_pipeline.core.model import ModelParams, train_and_evaluate
from persistence_pipeline.core.priors import curriculum_sample_weights
from persistence_pipeline.partitions import RunRange, daily_partitions, run_range, single_run_backfill
from persistence_pipeline.resources import (
    WAREHOUSE_POOL,
    AnalysisSettings,
    CheckpointStore,
    ModelSettings,
    Warehouse,
)

VERSIONED_LIBRARIES = ("scikit-learn", "shap", "numpy", "pandas", "dagster", "duckdb", "skops")


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """What an earlier run hands this one, and why not when it hands nothing."""

    params: ModelParams
    prior_coef: np.ndarray | None = None
    priors_from: str | None = None
    sample_weight: np.ndarray | None = None
    curriculum_from: str | None = None
    notes: tuple[str, ...] = ()


def warm_start(
    warehouse: Warehouse, settings: ModelSettings, window: RunRange, data: TrainingSet
) -> WarmStart:
    """The latest priors and regime weights stored as of a run that ended before this range starts."""
    params, notes = settings.model_params(), []
    prior_coef = priors_from = weights = curriculum_from = None
    if params.kind != "ridge":
        notes.append("priors: none (trees cannot be shrunk toward coefficients)")
    elif not settings.warm_start:
        notes.append("priors: none (warm_start is off)")
    elif (priors := warehouse.latest_as_of("feature_priors", window.start, params.kind)) is None:
        notes.append("priors: none (no earlier run: cold start, plain ridge)")
    else:
        priors_from, rows = priors
        prior_coef = rows.set_index("feature")["prior_coef"].reindex(data.features).fillna(0.0).to_numpy()
        params = dataclasses.replace(params, ridge_alpha=float(rows["prior_strength"].max()))
        notes.append(f"priors: from {priors_from}, alpha {params.ridge_alpha:g}")
    if not settings.curriculum:
        notes.append("curriculum: none (curriculum is off)")
    elif (stored := warehouse.latest_as_of("regime_weights", window.start, params.kind)) is None:
        notes.append("curriculum: none (no earlier run)")
    elif not {stored[1]["volatility_feature"].iloc[0], stored[1]["trend_feature"].iloc[0]} <= set(
        data.features
    ):
        notes.append("curriculum: none (the regime features are not among this run's features)")
    else:
        curriculum_from, rows = stored
        weights = curriculum_sample_weights(data.trades, rows)
        notes.append(f"curriculum: regime weights from {curriculum_from}")
    return WarmStart(params, prior_coef, priors_from, weights, curriculum_from, tuple(notes))


@dg.asset(
    deps=[trades],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    pool=WAREHOUSE_POOL,
    group_name="model",
    kinds={"scikit-learn", "duckdb"},
    description="Ridge (shrunk toward the latest stored priors, trades weighted by the latest regime weights) "
    "or gradient-boosted trees on the trades whose label is realized by the range end; features with an "
    "implausible in-sample IC are quarantined; purged walk-forward out-of-sample metrics and predictions; "
    "skops checkpoint.",
)
def profit_model(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    checkpoint_store: CheckpointStore,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.MaterializeResult:
    window = run_range(context)
    run_key = window.run_key(model_settings.kind)
    stored = warehouse.trades_between(window.start, window.end)
    data = training_set(stored, window.end)
    require_enough(data, model_settings.min_train_trades, window.first_day, window.last_day)
    load = warehouse.query(
        "SELECT n_source FROM trade_loads WHERE range_start = ? AND range_end = ?",
        [window.first_day, window.last_day],
    )
    loss = data_loss(int(load["n_source"].iloc[0]) if len(load) else None, data)
    excluded = quarantine(data.X, data.y, data.features, analysis_settings.leakage_max_abs_ic)
    data = data.without(excluded["feature"].tolist())
    warm = warm_start(warehouse, model_settings, window, data)
    context.log.info(
        f"{run_key}: {len(data.y)} labelled trades x {len(data.features)} features; " + "; ".join(warm.notes)
    )
    with timed(
        context.log, f"{warm.params.kind}: {warm.params.n_folds}-fold purged walk-forward and final fit"
    ):
        fitted = train_and_evaluate(
            data.X,
            data.y,
            data.entry,
            data.exit,
            data.features,
            warm.params,
            warm.prior_coef,
            warm.sample_weight,
        )
    checkpoint = {
        "model": fitted.model,
        "fold_models": fitted.fold_models,
        "fold_train": [fold.train for fold in fitted.folds],
        "fold_test": [fold.test for fold in fitted.folds],
        "features": data.features,
        "train_trade_ids": data.trades["trade_id"].tolist(),
        "prior_coef": warm.prior_coef,
        "sample_weight": warm.sample_weight,
    }
    with timed(context.log, "saved the skops checkpoint"):
        path, sha256 = checkpoint_store.save(checkpoint, run_key)
    m = fitted.metrics
    now = pd.Timestamp.now(tz="UTC")
    run_row = {
        "run_key": run_key,
        "range_start": window.first_day,
        "range_end": window.last_day,
        "dagster_run_id": context.run_id,
        "model_kind": warm.params.kind,
        "n_trades": data.n_read,
        "n_train": len(data.y),
        "n_unrealized": data.n_unrealized,
        "n_features": len(data.features),
        "n_folds": len(fitted.folds),
        "n_oos": m.n_oos,
        "oos_rank_ic": m.rank_ic,
        "oos_r2": m.r2,
        "oos_hit_rate": m.hit_rate,
        "oos_base_rate": m.base_rate,
        "oos_n_taken": m.n_taken,
        "oos_mean_return_taken": m.mean_return_taken,
        "oos_mean_return_all": m.mean_return_all,
        "priors_from_run_key": warm.priors_from,
        "curriculum_from_run_key": warm.curriculum_from,
        "alpha_used": warm.params.ridge_alpha if warm.params.kind == "ridge" else None,
        "seed": warm.params.seed,
        "model_params": json.dumps(dataclasses.asdict(warm.params)),
        "library_versions": json.dumps({name: version(name) for name in VERSIONED_LIBRARIES}),
        "created_at": now,
    }
    checkpoint_row = {
        "run_key": run_key,
        "model_kind": warm.params.kind,
        "range_start": window.first_day,
        "range_end": window.last_day,
        "path": path,
        "sha256": sha256,
        "oos_rank_ic": m.rank_ic,
        "oos_r2": m.r2,
        "oos_hit_rate": m.hit_rate,
        "created_at": now,
    }
    predictions = pd.DataFrame(
        {
            "run_key": run_key,
            "trade_id": data.trades["trade_id"].to_numpy()[fitted.oos_positions],
            "fold": np.concatenate([np.full(fold.test.size, i) for i, fold in enumerate(fitted.folds)]),
            "prediction": fitted.oos_prediction,
            "realized": data.y[fitted.oos_positions],
        }
    )
    with warehouse.transaction() as con:
        warehouse.replace_run_rows(con, "run_metrics", "run_key", run_key, pd.DataFrame([run_row]))
        warehouse.replace_run_rows(con, "checkpoints", "run_key", run_key, pd.DataFrame([checkpoint_row]))
        warehouse.replace_run_rows(con, "oos_predictions", "run_key", run_key, predictions)
        warehouse.replace_run_rows(
            con, "excluded_features", "run_key", run_key, excluded.assign(run_key=run_key)
        )
        warehouse.replace_run_rows(con, "data_loss", "run_key", run_key, loss.assign(run_key=run_key))
        warehouse.replace_run_rows(
            con,
            "feature_coverage",
            "run_key",
            run_key,
            feature_coverage(stored, data.features).assign(run_key=run_key),
        )
    checkpoint_store.remove_superseded(run_key, path)
    context.log.info(
        f"{run_key}: trained on {len(data.y)} trades ({data.n_unrealized} dropped: exit after {window.last_day}), "
        f"{len(fitted.folds)} walk-forward folds, OOS rank IC {m.rank_ic:.4f}; " + "; ".join(warm.notes)
    )
    return dg.MaterializeResult(
        metadata={
            "run_key": run_key,
            "model_kind": warm.params.kind,
            "warm_start": dg.MetadataValue.md("\n".join(f"- {note}" for note in warm.notes)),
            "priors_from_run_key": warm.priors_from or "none",
            "curriculum_from_run_key": warm.curriculum_from or "none",
            "n_trades_in_range": data.n_read,
            "n_train": len(data.y),
            "n_dropped_label_after_range_end": data.n_unrealized,
            "data_loss": markdown_table(loss),
            "excluded_features": markdown_table(excluded) if len(excluded) else "none",
            "n_folds": len(fitted.folds),
            "n_oos": m.n_oos,
            "oos_rank_ic": finite_or_none(m.rank_ic),
            "oos_r2": finite_or_none(m.r2),
            "oos_hit_rate": finite_or_none(m.hit_rate),
            "oos_base_rate": finite_or_none(m.base_rate),
            "oos_mean_return_taken": finite_or_none(m.mean_return_taken),
            "oos_mean_return_all": finite_or_none(m.mean_return_all),
            "checkpoint": dg.MetadataValue.path(path),
            "checkpoint_sha256": sha256,
        }
    )
