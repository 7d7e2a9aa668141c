"""Stage 2: the profit model of the range, warm-started from the stored priors and curriculum
weights, trained on labels net of costs, evaluated out of sample with purged walk-forward folds,
saved as a skops checkpoint, with `run_metrics` and `oos_predictions` rows and the OOS sized,
equal and actual books (`sizing_performance`); with `model_settings.ensemble`, the other members fit
on the same trades and folds, and every member's and their average's OOS predictions and metrics."""

import dataclasses
import json
from importlib.metadata import version
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from persistence_pipeline.assets.metadata import finite_or_none, markdown_table, run_result, timed
from persistence_pipeline.assets.stage import STAGE, finish, run_database, user_errors_fail_the_step
from persistence_pipeline.assets.trades import trades
from persistence_pipeline.core.dataset import (
    TrainingSet,
    data_loss,
    feature_coverage,
    require_enough,
    training_set,
)
from persistence_pipeline.core.design import stored_feature
from persistence_pipeline.core.ensemble import (
    ENSEMBLE,
    ensemble_line,
    ensemble_metrics,
    ensemble_prediction,
    ensemble_unit,
    fold_scales,
)
from persistence_pipeline.core.leakage import TradeKeys, leak_screen, quarantine_table, screen_reach
from persistence_pipeline.core.metrics import metric_columns
from persistence_pipeline.core.model import (
    FittedModel,
    ModelParams,
    RidgePrior,
    screens_of,
    train_and_evaluate,
)
from persistence_pipeline.core.priors import curriculum_sample_weights, ridge_prior
from persistence_pipeline.core.sizing import (
    SizingParams,
    oos_books,
    sizing_line,
    sizing_performance,
)
from persistence_pipeline.partitions import RunScope, run_scope
from persistence_pipeline.resources import AnalysisSettings, CheckpointStore, ModelSettings, Warehouse
from persistence_pipeline.storage.cross_run import latest_warm_start
from persistence_pipeline.storage.database import Database
from persistence_pipeline.storage.runs import write_model_run
from persistence_pipeline.storage.trades import source_trade_count, trades_between

VERSIONED_LIBRARIES = ("scikit-learn", "shap", "numpy", "pandas", "dagster", "duckdb", "skops")


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """What an earlier run hands this one, and why not when it hands nothing."""

    params: ModelParams
    prior: RidgePrior | None = None
    priors_from: str | None = None
    sample_weight: np.ndarray | None = None
    curriculum_from: str | None = None
    notes: tuple[str, ...] = ()


def warm_start(db: Database, settings: ModelSettings, scope: RunScope, data: TrainingSet) -> WarmStart:
    """The latest priors and regime weights stored as of a run that ended before this range starts."""
    params, notes = settings.model_params(), []
    prior = priors_from = weights = curriculum_from = None
    before = scope.window.first_day
    if params.kind != "ridge":
        notes.append("priors: none (trees cannot be shrunk toward coefficients)")
    elif not settings.warm_start:
        notes.append("priors: none (warm_start is off)")
    elif (priors := latest_warm_start(db, "feature_priors", before, params.kind)) is None:
        notes.append("priors: none (no earlier run: cold start, plain ridge)")
    else:
        priors_from, rows = priors
        prior = ridge_prior(rows, data.features)
        n_with = int(np.isfinite(prior.mean_raw).sum())
        notes.append(
            f"priors: from {priors_from} for {n_with} of {len(data.features)} features (empirical Bayes, "
            f"raw units, informative only); alpha {params.ridge_alpha:g} for the others"
        )
    if not settings.curriculum:
        notes.append("curriculum: none (curriculum is off)")
    elif (stored := latest_warm_start(db, "regime_weights", before, params.kind)) is None:
        notes.append("curriculum: none (no earlier run)")
    elif not {stored[1]["volatility_feature"].iloc[0], stored[1]["trend_feature"].iloc[0]} <= set(
        data.features
    ):
        notes.append("curriculum: none (the regime features are not among this run's features)")
    else:
        curriculum_from, rows = stored
        weights = curriculum_sample_weights(data.trades, rows)
        notes.append(f"curriculum: regime weights from {curriculum_from}")
    return WarmStart(params, prior, priors_from, weights, curriculum_from, tuple(notes))


def checkpoint_payload(
    fitted: FittedModel, data: TrainingSet, warm: WarmStart, others: dict[str, FittedModel]
) -> dict[str, Any]:
    """What the checkpoint holds: the model, the walk-forward fold models and folds, what the
    importance stage needs to explain it on the same trades, and the other ensemble members' models
    and fold models (same folds, same screen)."""
    members = {
        kind: {"model": other.model, "fold_models": other.fold_models} for kind, other in others.items()
    }
    return {
        **({"members": members} if members else {}),  # a run of one model: the checkpoint as before ensembles
        "model": fitted.model,
        "fold_models": fitted.fold_models,
        "fold_models_screened": fitted.fold_screened,
        "fold_train": [fold.train for fold in fitted.folds],
        "fold_test": [fold.test for fold in fitted.folds],
        "features": data.features,
        "quarantined": fitted.screened,
        "train_trade_ids": data.trades["trade_id"].tolist(),
        "prior_mean_raw": None if warm.prior is None else warm.prior.mean_raw,
        "prior_sd_raw": None if warm.prior is None else warm.prior.sd_raw,
        "sample_weight": warm.sample_weight,
        "label_cost": data.cost,
    }


def run_metrics_row(
    scope: RunScope,
    dagster_run_id: str | None,
    data: TrainingSet,
    fitted: FittedModel,
    warm: WarmStart,
    now: pd.Timestamp,
    cost_bps: float,
    kinds: list[str],
) -> dict[str, Any]:
    """The run's `run_metrics` row (storage checks it against the contract's columns)."""
    oos = metric_columns(fitted.metrics)
    return {
        "range_start": scope.window.first_day,
        "range_end": scope.window.last_day,
        "dagster_run_id": dagster_run_id,
        "model_kind": warm.params.kind,
        "n_trades": data.n_read,
        "n_train": len(data.y),
        "n_unrealized": data.n_unrealized,
        "n_censored": data.n_censored,
        "n_features": len(data.features),
        "n_folds": len(fitted.folds),
        **oos,
        "priors_from_run_key": warm.priors_from,
        "curriculum_from_run_key": warm.curriculum_from,
        "alpha_used": warm.params.ridge_alpha if warm.params.kind == "ridge" else None,
        "prior_weight": fitted.prior_weight,
        "seed": warm.params.seed,
        "model_params": json.dumps(dataclasses.asdict(warm.params)),
        "library_versions": json.dumps({name: version(name) for name in VERSIONED_LIBRARIES}),
        "created_at": now,
        "cost_bps": cost_bps,
        "ensemble_models": "+".join(kinds) if len(kinds) > 1 else None,
    }


OOS_PREDICTION_COLUMNS = ["trade_id", "fold", "prediction", "realized", "position", "predicted_sd"]


def run_books(
    data: TrainingSet, fitted: FittedModel, sizing: SizingParams, volatility_feature: str
) -> pd.DataFrame:
    """Every walk-forward out-of-sample trade as the books take it (core/sizing.py; the volatility
    feature scales the predicted sd when the trades have it)."""
    volatility = (
        data.trades[volatility_feature].to_numpy(dtype="float64")
        if volatility_feature in data.trades
        else None
    )
    return oos_books(fitted, data.trades, data.X, data.y, volatility, sizing.max_position)


def fit_others(
    data: TrainingSet,
    fitted: FittedModel,
    warm: WarmStart,
    settings: ModelSettings,
) -> dict[str, FittedModel]:
    """The other ensemble members, fit cold on the run's trades with its curriculum weights and the
    masks its leak screen gave (core/ensemble.py); their walk-forward folds are the run model's
    (checked)."""
    screen, others = screens_of(fitted), {}
    for kind in settings.members()[1:]:
        other = train_and_evaluate(
            data.X,
            data.y,
            data.entry,
            data.exit,
            data.features,
            settings.model_params(kind),
            None,
            warm.sample_weight,
            screen,
        )
        if not np.array_equal(other.oos_positions, fitted.oos_positions):
            raise RuntimeError(f"the {kind} member's walk-forward folds differ from the run model's")
        others[kind] = other
    return others


def ensemble_rows(
    data: TrainingSet, fitted: FittedModel, kind: str, others: dict[str, FittedModel]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's ensemble_predictions and ensemble_metrics rows (none without other members)."""
    if not others:
        return pd.DataFrame({"model_kind": pd.Series(dtype="object")}), pd.DataFrame(
            {"model_kind": pd.Series(dtype="object")}
        )
    models = {kind: fitted} | others
    predictions = {k: m.oos_prediction for k, m in models.items()}
    scales = {k: fold_scales(m, data.X) for k, m in models.items()}
    fold = np.concatenate([np.full(f.test.size, i) for i, f in enumerate(fitted.folds)])
    trade_ids = data.trades["trade_id"].to_numpy()[fitted.oos_positions]
    average = {ENSEMBLE: (ensemble_prediction(predictions, scales), ensemble_unit(scales))}
    rows = pd.concat(
        [
            pd.DataFrame(
                {"model_kind": k, "trade_id": trade_ids, "fold": fold, "prediction": p, "scale": scale}
            )
            for k, (p, scale) in ({k: (predictions[k], scales[k]) for k in models} | average).items()
        ],
        ignore_index=True,
    )
    return rows, ensemble_metrics(predictions, scales, data.y[fitted.oos_positions])


def used_stored_features(data: TrainingSet, excluded: pd.DataFrame, settings: ModelSettings) -> list[str]:
    """The stored features behind the model's columns that the final model uses."""
    params = settings.design_params()
    used = [stored_feature(f, params) for f in data.features if f not in set(excluded["feature"])]
    return [f for f in used if f is not None]


def fold_screen_note(fitted: FittedModel, features: list[str]) -> str:
    """What each screen of the leak guard flagged on its own trades (each fold's training trades, then
    all trades), and what every model of the run therefore held out."""
    names = np.asarray(features, dtype=object)
    labels = [f"fold {i + 1}'s training trades" for i in range(len(fitted.folds))] + ["all trades"]
    lines = [
        f"- {label}: " + (", ".join(names[mask]) or "none")
        for label, mask in zip(labels, fitted.screen_flags, strict=True)
    ]
    held = ", ".join(names[fitted.screened]) if fitted.screened is not None else ""
    return "\n".join([*lines, f"- held out of every model of the run: {held or 'none'}"])


@dg.asset(
    **STAGE,
    deps=[trades],
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
    window, sizing = scope.window, model_settings.sizing_params()
    stored = trades_between(db, window.start, window.end)
    data = training_set(stored, window.end, model_settings.design_params(), cost=sizing.round_trip_cost)
    require_enough(data, model_settings.min_train_trades, window.first_day, window.last_day)
    loss = data_loss(source_trade_count(db, window.first_day, window.last_day), data)
    keys, leak_params = TradeKeys.of(data.trades), analysis_settings.leak_screen_params()
    warm = warm_start(db, model_settings, scope, data)
    context.log.info(
        f"{scope.run_key}: {len(data.y)} labelled trades x {len(data.features)} features; "
        + "; ".join(warm.notes)
    )
    screen = leak_screen(data.X, data.y, data.features, leak_params, keys)
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
            warm.prior,
            warm.sample_weight,
            screen,
        )
    with timed(context.log, f"ensemble members {model_settings.members()[1:]}: the same folds and final fit"):
        others = fit_others(data, fitted, warm, model_settings)
    excluded = quarantine_table(
        data.X,
        data.y,
        data.features,
        leak_params,
        keys,
        [*(fold.train for fold in fitted.folds), np.arange(len(data.y))],
        fitted.screen_flags,
    )
    member_predictions, member_metrics = ensemble_rows(data, fitted, warm.params.kind, others)
    with timed(context.log, "saved the skops checkpoint"):
        path, sha256 = checkpoint_store.save(
            checkpoint_payload(fitted, data, warm, others), scope.run_key, db.staged_by
        )
    now, m = pd.Timestamp.now(tz="UTC"), fitted.metrics
    checkpoint_row = {
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
    books = run_books(data, fitted, sizing, analysis_settings.volatility_feature)
    performance = sizing_performance(books, sizing).assign(cost_bps=sizing.cost_bps)
    write_model_run(
        db,
        scope.run_key,
        # staged_by: the Dagster run id
        run_metrics_row(
            scope, db.staged_by, data, fitted, warm, now, sizing.cost_bps, model_settings.members()
        ),
        checkpoint_row,
        oos_predictions=books[OOS_PREDICTION_COLUMNS],
        sizing_performance=performance,
        excluded_features=excluded,
        data_loss=loss,
        feature_coverage=feature_coverage(
            stored, used_stored_features(data, excluded, model_settings), data.duplicates
        ),
        ensemble_predictions=member_predictions,
        ensemble_metrics=member_metrics,
    )
    finish(context, db, scope.run_key)
    context.log.info(
        f"{scope.run_key}: trained on {len(data.y)} trades ({data.n_unrealized} dropped: exit after "
        f"{window.last_day}; {data.n_censored} entered after the first of those), "
        f"{len(fitted.folds)} walk-forward folds, OOS rank IC {m.rank_ic:.4f}; " + "; ".join(warm.notes)
    )
    return run_result(
        context,
        scope.run_key,
        {
            "model_kind": warm.params.kind,
            "ensemble": dg.MetadataValue.md(ensemble_line(member_metrics, pd.DataFrame())),
            "ensemble_metrics": markdown_table(member_metrics) if len(member_metrics) else "none",
            "warm_start": dg.MetadataValue.md("\n".join(f"- {note}" for note in warm.notes)),
            "priors_from_run_key": warm.priors_from or "none",
            "prior_weight": fitted.prior_weight,
            "curriculum_from_run_key": warm.curriculum_from or "none",
            "n_trades_in_range": data.n_read,
            "n_train": len(data.y),
            "n_dropped_label_after_range_end": data.n_unrealized,
            "n_dropped_entered_after_first_open_trade": data.n_censored,
            "data_loss": markdown_table(loss),
            "excluded_features": markdown_table(excluded) if len(excluded) else "none",
            "duplicate_features": ", ".join(f"{a} (= {b})" for a, b in data.duplicates.items()) or "none",
            "centred_features": ", ".join(f"{f} at {c:.4g}" for f, c in data.centres.items()) or "none",
            "fold_screens": dg.MetadataValue.md(fold_screen_note(fitted, data.features)),
            "leak_screen_reach": markdown_table(screen_reach(leak_params, keys)),
            "n_folds": len(fitted.folds),
            "n_oos": m.n_oos,
            **{f"oos_{name}": finite_or_none(value) for name, value in vars(m).items() if name != "n_oos"},
            "cost_bps": sizing.cost_bps,
            "sizing": dg.MetadataValue.md(sizing_line(performance)),
            "sizing_performance": markdown_table(performance),
            "checkpoint": dg.MetadataValue.path(path),
            "checkpoint_sha256": sha256,
        },
    )
