"""The model stage's core: one call, `train`, takes the run's stored trades and parameters and
returns everything the stage stores (the model and its checkpoint, the run's metrics row, the OOS
books, the ensemble members and their rows, the quarantined features, the data accounting).

The warm start (what earlier runs hand this one) is decided here from the stored rows the caller
read (`warm_start`); the leak screen (core/leakage.py) runs once per screened set of trades, and its
evidence is the quarantine table. The checkpoint is a typed `Checkpoint`; on disk it is a plain
dict of trusted types (skops), whose keys `Checkpoint.payload` and `Checkpoint.from_payload` own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd

from persistence_pipeline.core.dataset import TrainingSet, data_loss, feature_coverage, require_enough
from persistence_pipeline.core.design import DesignParams, stored_feature
from persistence_pipeline.core.ensemble import (
    ENSEMBLE,
    ensemble_prediction,
    ensemble_unit,
    fold_scales,
    member_metrics,
)
from persistence_pipeline.core.leakage import LeakScreen, LeakScreenParams, TradeKeys, screen_reach
from persistence_pipeline.core.metrics import metric_columns
from persistence_pipeline.core.model import (
    FittedModel,
    Fold,
    ModelParams,
    Regressor,
    RidgePrior,
    screens_of,
    train_and_evaluate,
)
from persistence_pipeline.core.priors import curriculum_sample_weights, ridge_prior
from persistence_pipeline.core.sizing import SizingParams, book_performance, walk_forward_books

VERSIONED_LIBRARIES = ("scikit-learn", "shap", "numpy", "pandas", "dagster", "duckdb", "skops")
OOS_PREDICTION_COLUMNS = ["trade_id", "fold", "prediction", "realized", "position", "predicted_sd"]


@dataclass(frozen=True)
class TrainingParams:
    """What a run of the model stage is fit with: the run model, the other ensemble members, the
    model's columns, the books, the leak screen and the warm start."""

    model: ModelParams
    members: tuple[ModelParams, ...] = ()  # the other ensemble members, fit on the same trades and folds
    design: DesignParams = field(default_factory=DesignParams)
    sizing: SizingParams = field(default_factory=SizingParams)
    leak: LeakScreenParams = field(default_factory=LeakScreenParams)
    warm_start: bool = True
    curriculum: bool = False
    volatility_feature: str = "volatility_20"

    @property
    def kinds(self) -> list[str]:
        return [self.model.kind, *(member.kind for member in self.members)]


@dataclass(frozen=True)
class StoredWarmStart:
    """What the warehouse holds for a warm start: the latest priors and regime weights stored as of
    a run that ended before this range starts, each as (that run's key, its rows), or None."""

    priors: tuple[str, pd.DataFrame] | None = None
    regime_weights: tuple[str, pd.DataFrame] | None = None


@dataclass(frozen=True)
class WarmStart:
    """What an earlier run hands this one, and why not when it hands nothing."""

    params: ModelParams
    prior: RidgePrior | None = None
    priors_from: str | None = None
    sample_weight: np.ndarray | None = None
    curriculum_from: str | None = None
    notes: tuple[str, ...] = ()


def warm_start(params: TrainingParams, stored: StoredWarmStart, data: TrainingSet) -> WarmStart:
    """The prior and curriculum weights this run starts from, with a note on each."""
    model, notes = params.model, []
    prior = priors_from = weights = curriculum_from = None
    if model.kind != "ridge":
        notes.append("priors: none (trees cannot be shrunk toward coefficients)")
    elif not params.warm_start:
        notes.append("priors: none (warm_start is off)")
    elif stored.priors is None:
        notes.append("priors: none (no earlier run: cold start, plain ridge)")
    else:
        priors_from, rows = stored.priors
        prior = ridge_prior(rows, data.features)
        n_with = int(np.isfinite(prior.mean_raw).sum())
        notes.append(
            f"priors: from {priors_from} for {n_with} of {len(data.features)} features (empirical Bayes, "
            f"raw units, informative only); alpha {model.ridge_alpha:g} for the others"
        )
    if not params.curriculum:
        notes.append("curriculum: none (curriculum is off)")
    elif stored.regime_weights is None:
        notes.append("curriculum: none (no earlier run)")
    elif not {
        stored.regime_weights[1]["volatility_feature"].iloc[0],
        stored.regime_weights[1]["trend_feature"].iloc[0],
    } <= set(data.features):
        notes.append("curriculum: none (the regime features are not among this run's features)")
    else:
        curriculum_from, rows = stored.regime_weights
        weights = curriculum_sample_weights(data.trades, rows)
        notes.append(f"curriculum: regime weights from {curriculum_from}")
    return WarmStart(model, prior, priors_from, weights, curriculum_from, tuple(notes))


@dataclass(frozen=True)
class MemberModels:
    """An ensemble member's final model and walk-forward fold models (same folds and screen)."""

    model: Regressor
    fold_models: list[Regressor]


@dataclass(frozen=True)
class Checkpoint:
    """What the importance stage needs to explain the run's model on the same trades: the model,
    the walk-forward fold models and folds, the screen, the prior and weights it was fit with, the
    label's cost, and the other ensemble members' models."""

    model: Regressor
    fold_models: list[Regressor]
    folds: list[Fold]
    features: list[str]
    train_trade_ids: list[str]
    quarantined: np.ndarray | None = None
    fold_screened: list[np.ndarray] = field(default_factory=list)
    prior: RidgePrior | None = None
    sample_weight: np.ndarray | None = None
    label_cost: float = 0.0
    members: dict[str, MemberModels] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The checkpoint as stored: a dict of trusted types (a run of one model has no `members`)."""
        members = {k: {"model": m.model, "fold_models": m.fold_models} for k, m in self.members.items()}
        return {
            **({"members": members} if members else {}),
            "model": self.model,
            "fold_models": self.fold_models,
            "fold_models_screened": self.fold_screened,
            "fold_train": [fold.train for fold in self.folds],
            "fold_test": [fold.test for fold in self.folds],
            "features": self.features,
            "quarantined": self.quarantined,
            "train_trade_ids": self.train_trade_ids,
            "prior_mean_raw": None if self.prior is None else self.prior.mean_raw,
            "prior_sd_raw": None if self.prior is None else self.prior.sd_raw,
            "sample_weight": self.sample_weight,
            "label_cost": self.label_cost,
        }

    @classmethod
    def from_payload(cls, stored: dict[str, Any]) -> Checkpoint:
        """The checkpoint a stored dict holds (older checkpoints lack the later keys: no members, no
        prior in raw units, no label cost)."""
        prior = None
        if stored.get("prior_mean_raw") is not None:
            prior = RidgePrior(stored["prior_mean_raw"], stored["prior_sd_raw"])
        return cls(
            model=stored["model"],
            fold_models=list(stored["fold_models"]),
            folds=[Fold(a, b) for a, b in zip(stored["fold_train"], stored["fold_test"], strict=True)],
            features=list(stored["features"]),
            train_trade_ids=list(stored["train_trade_ids"]),
            quarantined=stored.get("quarantined"),
            fold_screened=list(stored.get("fold_models_screened") or []),
            prior=prior,
            sample_weight=stored.get("sample_weight"),
            label_cost=float(stored.get("label_cost", 0.0)),
            members={
                kind: MemberModels(m["model"], list(m["fold_models"]))
                for kind, m in (stored.get("members") or {}).items()
            },
        )


@dataclass(frozen=True)
class TrainedRun:
    """Everything the model stage of one run stores and reports."""

    data: TrainingSet
    warm: WarmStart
    fitted: FittedModel
    others: dict[str, FittedModel]
    checkpoint: Checkpoint
    excluded: pd.DataFrame  # excluded_features rows
    screen_reach: pd.DataFrame
    books: pd.DataFrame  # every OOS trade as the books take it (OOS_PREDICTION_COLUMNS and more)
    performance: pd.DataFrame  # sizing_performance rows
    ensemble_predictions: pd.DataFrame
    ensemble_metrics: pd.DataFrame
    data_loss: pd.DataFrame
    feature_coverage: pd.DataFrame
    kinds: list[str]
    cost_bps: float

    def run_metrics(
        self, first_day: dt.date, last_day: dt.date, dagster_run_id: str | None, created_at: pd.Timestamp
    ) -> dict[str, Any]:
        """The run's `run_metrics` row (storage checks it against the contract's columns)."""
        data, fitted, params = self.data, self.fitted, self.warm.params
        return {
            "range_start": first_day,
            "range_end": last_day,
            "dagster_run_id": dagster_run_id,
            "model_kind": params.kind,
            "n_trades": data.n_read,
            "n_train": len(data.y),
            "n_unrealized": data.n_unrealized,
            "n_censored": data.n_censored,
            "n_features": len(data.features),
            "n_folds": len(fitted.folds),
            **metric_columns(fitted.metrics),
            "priors_from_run_key": self.warm.priors_from,
            "curriculum_from_run_key": self.warm.curriculum_from,
            "alpha_used": params.ridge_alpha if params.kind == "ridge" else None,
            "prior_weight": fitted.prior_weight,
            "seed": params.seed,
            "model_params": json.dumps(dataclasses.asdict(params)),
            "library_versions": json.dumps({name: version(name) for name in VERSIONED_LIBRARIES}),
            "created_at": created_at,
            "cost_bps": self.cost_bps,
            "ensemble_models": "+".join(self.kinds) if len(self.kinds) > 1 else None,
        }

    def fold_screen_note(self) -> str:
        """What each screen of the leak guard flagged on its own trades (each fold's training trades,
        then all trades), and what every model of the run therefore held out."""
        fitted, names = self.fitted, np.asarray(self.data.features, dtype=object)
        labels = [f"fold {i + 1}'s training trades" for i in range(len(fitted.folds))] + ["all trades"]
        lines = [
            f"- {label}: " + (", ".join(names[mask]) or "none")
            for label, mask in zip(labels, fitted.screen_flags, strict=True)
        ]
        held = ", ".join(names[fitted.screened]) if fitted.screened is not None else ""
        return "\n".join([*lines, f"- held out of every model of the run: {held or 'none'}"])


def fit_others(
    data: TrainingSet, fitted: FittedModel, warm: WarmStart, members: tuple[ModelParams, ...]
) -> dict[str, FittedModel]:
    """The other ensemble members, fit cold on the run's trades with its curriculum weights and the
    features its leak screen held out (core/ensemble.py); their walk-forward folds are the run
    model's (checked)."""
    screen, others = screens_of(fitted), {}
    for params in members:
        other = train_and_evaluate(
            data.X, data.y, data.entry, data.exit, data.features, params, None, warm.sample_weight, screen
        )
        if not np.array_equal(other.oos_positions, fitted.oos_positions):
            raise RuntimeError(f"the {params.kind} member's walk-forward folds differ from the run model's")
        others[params.kind] = other
    return others


def ensemble_rows(
    data: TrainingSet, fitted: FittedModel, kind: str, others: dict[str, FittedModel]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's ensemble_predictions and ensemble_metrics rows (none without other members)."""
    if not others:
        no_rows = pd.DataFrame({"model_kind": pd.Series(dtype="object")})
        return no_rows, no_rows.copy()
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
    return rows, member_metrics(predictions, scales, data.y[fitted.oos_positions])


def used_stored_features(data: TrainingSet, excluded: pd.DataFrame, design: DesignParams) -> list[str]:
    """The stored features behind the model's columns that the final model uses."""
    used = [stored_feature(f, design) for f in data.features if f not in set(excluded["feature"])]
    return [f for f in used if f is not None]


def train(
    data: TrainingSet,
    stored: pd.DataFrame,
    params: TrainingParams,
    warm_rows: StoredWarmStart,
    n_source: int | None,
    first_day: dt.date,
    last_day: dt.date,
) -> TrainedRun:
    """The model stage of one run on its training set `data` (core/dataset.py `training_set` of
    the range's `stored` trades, with `params.design` and labels net of `params.sizing`'s cost):
    warm start, leak screen, purged walk-forward and final fit, the other ensemble members on the
    same folds, the OOS books and the data accounting (`n_source`: the source's trade count, when
    known)."""
    require_enough(data, params.model.min_train_trades, first_day, last_day)
    warm = warm_start(params, warm_rows, data)
    keys = TradeKeys.of(data.trades)
    screen = LeakScreen(data.X, data.y, data.features, params.leak, keys)
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
    others = fit_others(data, fitted, warm, params.members)
    excluded = screen.quarantine_table()
    predictions, metrics = ensemble_rows(data, fitted, warm.params.kind, others)
    volatility = (
        data.trades[params.volatility_feature].to_numpy(dtype="float64")
        if params.volatility_feature in data.trades
        else None
    )
    books = walk_forward_books(fitted, data.trades, data.X, data.y, volatility, params.sizing.max_position)
    checkpoint = Checkpoint(
        model=fitted.model,
        fold_models=fitted.fold_models,
        folds=fitted.folds,
        features=data.features,
        train_trade_ids=data.trades["trade_id"].tolist(),
        quarantined=fitted.screened,
        fold_screened=fitted.fold_screened,
        prior=warm.prior,
        sample_weight=warm.sample_weight,
        label_cost=data.cost,
        members={k: MemberModels(m.model, m.fold_models) for k, m in others.items()},
    )
    return TrainedRun(
        data=data,
        warm=warm,
        fitted=fitted,
        others=others,
        checkpoint=checkpoint,
        excluded=excluded,
        screen_reach=screen_reach(params.leak, keys),
        books=books,
        performance=book_performance(books, params.sizing).assign(cost_bps=params.sizing.cost_bps),
        ensemble_predictions=predictions,
        ensemble_metrics=metrics,
        data_loss=data_loss(n_source, data),
        feature_coverage=feature_coverage(
            stored, used_stored_features(data, excluded, params.design), data.duplicates
        ),
        kinds=params.kinds,
        cost_bps=params.sizing.cost_bps,
    )
