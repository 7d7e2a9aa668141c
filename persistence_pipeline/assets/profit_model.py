"""Stage 2: the profit model of the range (core/training.py), warm-started from the stored priors and
curriculum weights; its skops checkpoint, `run_metrics`, `oos_predictions`, the OOS books
(`sizing_performance`), the quarantined features and, with `model_settings.ensemble`, the other
members' OOS predictions and metrics."""

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.metadata import finite_or_none, markdown_table, run_result, timed
from persistence_pipeline.assets.stage import (
    STAGE,
    finish,
    run_database,
    training_data,
    user_errors_fail_the_step,
)
from persistence_pipeline.core.ensemble import ensemble_line
from persistence_pipeline.core.sizing import sizing_line
from persistence_pipeline.core.training import OOS_PREDICTION_COLUMNS, StoredWarmStart, train
from persistence_pipeline.partitions import run_scope
from persistence_pipeline.resources import (
    AnalysisSettings,
    CheckpointStore,
    ModelSettings,
    Warehouse,
    training_params,
)
from persistence_pipeline.storage.cross_run import latest_warm_start
from persistence_pipeline.storage.runs import ModelRunRows, write_model_run
from persistence_pipeline.storage.trade_store import source_trade_count, trades_between


@dg.asset(
    **STAGE,
    deps=[dg.AssetKey("trades")],
    group_name="model",
    kinds={"scikit-learn", "duckdb"},
    description="Ridge (shrunk toward the latest stored priors, trades weighted by the latest regime "
    "weights) or gradient-boosted trees on the trades whose label is realized by the range end; features "
    "whose in-sample IC is implausibly high (its confidence bound above the leakage ceiling, on each "
    "fold's training trades or on all trades) are held out of every model of the run; "
    "purged walk-forward out-of-sample metrics and "
    "predictions; with model_settings.ensemble, the other model kinds on the same trades and folds and "
    "the OOS metrics of each and of their average; skops checkpoint.",
)
@user_errors_fail_the_step
def profit_model(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    checkpoint_store: CheckpointStore,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.MaterializeResult:
    scope, db = run_scope(context, model_settings.kind), run_database(context, warehouse)
    window, params = scope.window, training_params(model_settings, analysis_settings)
    with db.session():  # the stage's reads, one connection
        stored = trades_between(db, window.start, window.end)
        data = training_data(db, window, params.design, params.sizing.round_trip_cost)
        warm_rows = StoredWarmStart(
            latest_warm_start(db, "feature_priors", window.first_day, params.model.kind),
            latest_warm_start(db, "regime_weights", window.first_day, params.model.kind),
        )
        n_source = source_trade_count(db, window.first_day, window.last_day)
    context.log.info(f"{scope.run_key}: {len(data.y)} labelled trades x {len(data.features)} features")
    members = "".join(f", {member.kind} member" for member in params.members)
    with timed(
        context.log,
        f"{params.model.kind}: leak screen, {params.model.n_folds}-fold purged walk-forward and final fit"
        + members,
    ):
        run = train(data, stored, params, warm_rows, n_source, window.first_day, window.last_day)
    path, sha256 = checkpoint_store.save(run.checkpoint, scope.run_key, db.staged_by)
    now, m = pd.Timestamp.now(tz="UTC"), run.fitted.metrics
    write_model_run(
        db,
        scope.run_key,
        ModelRunRows(
            run_metrics=run.run_metrics(window.first_day, window.last_day, db.staged_by, now),
            checkpoint={
                "model_kind": params.model.kind,
                "range_start": window.first_day,
                "range_end": window.last_day,
                "path": path,
                "sha256": sha256,
                "oos_rank_ic": m.rank_ic,
                "oos_r2": m.r2,
                "oos_hit_rate": m.hit_rate,
                "created_at": now,
            },
            oos_predictions=run.books[OOS_PREDICTION_COLUMNS],
            sizing_performance=run.performance,
            excluded_features=run.excluded,
            data_loss=run.data_loss,
            feature_coverage=run.feature_coverage,
            ensemble_predictions=run.ensemble_predictions,
            ensemble_metrics=run.ensemble_metrics,
        ),
    )
    finish(context, db, scope.run_key)
    data, warm = run.data, run.warm
    context.log.info(
        f"{scope.run_key}: trained on {len(data.y)} trades ({data.n_unrealized} dropped: exit after "
        f"{window.last_day}; {data.n_censored} entered after the first of those), "
        f"{len(run.fitted.folds)} walk-forward folds, OOS rank IC {m.rank_ic:.4f}; " + "; ".join(warm.notes)
    )
    return run_result(
        context,
        scope.run_key,
        {
            "model_kind": params.model.kind,
            "ensemble": dg.MetadataValue.md(ensemble_line(run.ensemble_metrics, pd.DataFrame())),
            "ensemble_metrics": markdown_table(run.ensemble_metrics) if len(run.ensemble_metrics) else "none",
            "warm_start": dg.MetadataValue.md("\n".join(f"- {note}" for note in warm.notes)),
            "priors_from_run_key": warm.priors_from or "none",
            "prior_weight": run.fitted.prior_weight,
            "curriculum_from_run_key": warm.curriculum_from or "none",
            "n_trades_in_range": data.n_read,
            "n_train": len(data.y),
            "n_dropped_label_after_range_end": data.n_unrealized,
            "n_dropped_entered_after_first_open_trade": data.n_censored,
            "data_loss": markdown_table(run.data_loss),
            "excluded_features": markdown_table(run.excluded) if len(run.excluded) else "none",
            "duplicate_features": ", ".join(f"{a} (= {b})" for a, b in data.duplicates.items()) or "none",
            "centred_features": ", ".join(f"{f} at {c:.4g}" for f, c in data.centres.items()) or "none",
            "fold_screens": dg.MetadataValue.md(run.fold_screen_note()),
            "leak_screen_reach": markdown_table(run.screen_reach),
            "n_folds": len(run.fitted.folds),
            "n_oos": m.n_oos,
            **{f"oos_{name}": finite_or_none(value) for name, value in vars(m).items() if name != "n_oos"},
            "cost_bps": run.cost_bps,
            "sizing": dg.MetadataValue.md(sizing_line(run.performance)),
            "sizing_performance": markdown_table(run.performance),
            "checkpoint": dg.MetadataValue.path(path),
            "checkpoint_sha256": sha256,
        },
    )
