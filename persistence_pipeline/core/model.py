"""The profit model: a ridge regression shrunk toward prior coefficients (or gradient-boosted trees),
evaluated out of sample with purged walk-forward folds.

Ridge toward a prior b0 minimizes ||y - Xb||^2 + alpha * ||b - b0||^2 over standardized features.
Substituting c = b - b0 turns it into a plain ridge on y - X b0, so we fit sklearn's Ridge on that
target and add b0 back to its coefficients; the stored model is an ordinary sklearn Pipeline
(StandardScaler, clip to +-clip_z, Ridge) whose `predict` takes raw feature values. The clip keeps a
feature that barely moved in the training window (market-wide features over a few weeks) from
producing 50-sigma inputs, and absurd predictions, out of sample.

A walk-forward fold is evaluated only when its purged training set holds at least
max(min_train_trades, 5 x number of features) trades (min_fold_train_trades, also the trainability
check of a trade source); earlier folds are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from persistence_pipeline.core.metrics import OutOfSampleMetrics, out_of_sample_metrics

MODEL_KINDS = ("ridge", "gbt")


class Regressor(Protocol):
    """A fitted profit model: the ridge Pipeline or the gradient-boosted trees of fit_model."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...


class NotEnoughDataError(ValueError):
    """Too few labelled trades to fit and evaluate a model honestly."""


@dataclass(frozen=True)
class ModelParams:
    kind: str = "ridge"
    ridge_alpha: float = 10.0
    n_folds: int = 5
    embargo_days: float = 1.0
    min_train_trades: int = 50
    clip_z: float = 5.0
    seed: int = 0
    gbt_max_iter: int = 200
    gbt_learning_rate: float = 0.05
    gbt_max_leaf_nodes: int = 15
    gbt_min_samples_leaf: int = 40

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind {self.kind!r} is not one of {MODEL_KINDS}")
        if self.n_folds < 1:
            raise ValueError("n_folds must be at least 1")


@dataclass(frozen=True)
class Fold:
    train: np.ndarray  # positions of training trades
    test: np.ndarray  # positions of test trades


@dataclass
class FittedModel:
    """A model fit on all training trades, plus the walk-forward fold models and their OOS results."""

    model: Regressor
    features: list[str]
    folds: list[Fold]
    fold_models: list[Regressor]
    oos_prediction: np.ndarray  # aligned with oos_positions
    oos_positions: np.ndarray
    metrics: OutOfSampleMetrics
    prior_coef: np.ndarray | None = field(default=None)


def min_fold_train_trades(min_train_trades: int, n_features: int) -> int:
    """The fewest purged training trades a walk-forward fold needs: min_train_trades, and 5 per feature."""
    return max(min_train_trades, 5 * n_features)


def purged_walk_forward_splits(
    entry_time: np.ndarray,
    exit_time: np.ndarray,
    n_folds: int,
    embargo: np.timedelta64 | pd.Timedelta,
) -> list[Fold]:
    """Walk-forward folds over trades sorted by entry time, purged of label overlap.

    The trades, ordered by entry, are cut into n_folds + 1 blocks of (nearly) equal size. Fold k tests
    on block k and trains on trades that entered before the block's first entry AND exited before
    that entry minus the embargo: a training trade whose [entry, exit] reaches into the test block
    (or into the embargo gap before it) shares information with the test labels and is purged.
    Training only ever uses the past, so the embargo is a gap before the test block (an embargo
    after it, as in purged k-fold, would never bind here).
    """
    entry_time = np.asarray(entry_time, dtype="datetime64[us]")
    exit_time = np.asarray(exit_time, dtype="datetime64[us]")
    embargo = np.timedelta64(pd.Timedelta(embargo).to_timedelta64(), "us")
    order = np.argsort(entry_time, kind="stable")
    blocks = np.array_split(order, n_folds + 1)
    folds = []
    for block in blocks[1:]:
        if block.size == 0:
            continue
        test_start = entry_time[block].min()
        train = np.flatnonzero((entry_time < test_start) & (exit_time < test_start - embargo))
        folds.append(Fold(train=train, test=np.sort(block)))
    return folds


def fit_prior_ridge(
    X: np.ndarray,
    y: np.ndarray,
    alpha: float,
    prior_coef: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    clip_z: float = 5.0,
) -> Pipeline:
    """Ridge on standardized (and clipped) X shrunk toward prior_coef (standardized scale); plain
    ridge without one."""
    features = Pipeline(
        [
            ("scale", StandardScaler()),
            ("clip", FunctionTransformer(np.clip, kw_args={"a_min": -clip_z, "a_max": clip_z})),
        ]
    ).fit(X)
    Z = features.transform(X)
    b0 = np.zeros(X.shape[1]) if prior_coef is None else np.asarray(prior_coef, dtype="float64")
    ridge = Ridge(alpha=alpha).fit(Z, y - Z @ b0, sample_weight=sample_weight)
    ridge.coef_ = ridge.coef_ + b0
    return Pipeline([*features.steps, ("ridge", ridge)])


def prior_ridge_coefficients(
    X: np.ndarray,
    y: np.ndarray,
    alpha: float,
    prior_coef: np.ndarray | None,
    sample_weight: np.ndarray | None,
    clip_z: float,
    overwrite_x: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients fit_prior_ridge would fit, and the standardized inputs, by the weighted normal
    equations in numpy: for the bootstrap, where twenty sklearn pipelines per run cost more than the
    arithmetic. Equal to fit_prior_ridge (tested). With overwrite_x, X (a float64 array the caller no
    longer needs, such as a bootstrap resample) becomes the standardized inputs, saving a copy."""
    Z = X if overwrite_x else np.array(X, dtype="float64")  # standardized and clipped in place
    scale = Z.std(axis=0)
    Z -= Z.mean(axis=0)
    Z /= np.where(scale > 0, scale, 1.0)
    np.clip(Z, -clip_z, clip_z, out=Z)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype="float64")
    b0 = np.zeros(X.shape[1]) if prior_coef is None else np.asarray(prior_coef, dtype="float64")
    total = w.sum()
    z_mean = (w @ Z) / total
    target = y - Z @ b0
    centered_target = target - (w @ target) / total
    weighted = Z if sample_weight is None else Z * w[:, None]
    gram = weighted.T @ Z - total * np.outer(z_mean, z_mean) + alpha * np.eye(X.shape[1])
    return np.linalg.solve(gram, weighted.T @ centered_target) + b0, Z


def standardized_inputs(model: Pipeline, X: np.ndarray) -> np.ndarray:
    """What the ridge step of a linear pipeline sees: standardized, clipped features."""
    return model[:-1].transform(X)


def fit_model(
    X: np.ndarray,
    y: np.ndarray,
    params: ModelParams,
    prior_coef: np.ndarray | None,
    sample_weight: np.ndarray | None,
) -> Regressor:
    """The params.kind model fit on (X, y): the prior ridge Pipeline or gradient-boosted trees."""
    if params.kind == "ridge":
        return fit_prior_ridge(X, y, params.ridge_alpha, prior_coef, sample_weight, params.clip_z)
    model = HistGradientBoostingRegressor(
        max_iter=params.gbt_max_iter,
        learning_rate=params.gbt_learning_rate,
        max_leaf_nodes=params.gbt_max_leaf_nodes,
        min_samples_leaf=params.gbt_min_samples_leaf,
        early_stopping=False,
        random_state=params.seed,
    )
    return model.fit(X, y, sample_weight=sample_weight)


def standardized_coefficients(model: object) -> np.ndarray | None:
    """Coefficients per standard deviation of each feature (None for a tree model)."""
    if isinstance(model, Pipeline):
        return model.named_steps["ridge"].coef_.copy()
    return None


def train_and_evaluate(
    X: np.ndarray,
    y: np.ndarray,
    entry_time: np.ndarray,
    exit_time: np.ndarray,
    features: list[str],
    params: ModelParams,
    prior_coef: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> FittedModel:
    """Walk-forward OOS evaluation, then the final model fit on every training trade."""
    if len(y) < params.min_train_trades:
        raise NotEnoughDataError(
            f"only {len(y)} trades with a realized label; "
            f"at least {params.min_train_trades} are needed (min_train_trades)"
        )
    prior = prior_coef if params.kind == "ridge" else None
    folds: list[Fold] = []
    fold_models: list[Regressor] = []
    predictions: list[np.ndarray] = []
    min_fold_train = min_fold_train_trades(params.min_train_trades, X.shape[1])
    for fold in purged_walk_forward_splits(
        entry_time, exit_time, params.n_folds, pd.Timedelta(days=params.embargo_days)
    ):
        if fold.train.size < min_fold_train:
            continue
        weights = None if sample_weight is None else sample_weight[fold.train]
        model = fit_model(X[fold.train], y[fold.train], params, prior, weights)
        folds.append(fold)
        fold_models.append(model)
        predictions.append(model.predict(X[fold.test]))
    if not folds:
        raise NotEnoughDataError(
            f"no walk-forward fold has {min_fold_train} purged training trades ({len(y)} labelled trades, "
            f"n_folds={params.n_folds}): use a longer range"
        )
    oos_positions = np.concatenate([fold.test for fold in folds])
    oos_prediction = np.concatenate(predictions)
    return FittedModel(
        model=fit_model(X, y, params, prior, sample_weight),
        features=list(features),
        folds=folds,
        fold_models=fold_models,
        oos_prediction=oos_prediction,
        oos_positions=oos_positions,
        metrics=out_of_sample_metrics(oos_prediction, y[oos_positions]),
        prior_coef=prior,
    )
