"""The profit model: a ridge regression shrunk toward prior coefficients (or gradient-boosted trees),
evaluated out of sample with purged walk-forward folds.

The ridge works on standardized features z. Without a prior it minimizes
||y - Zb||^2 + alpha * ||b||^2. With an empirical-Bayes prior (core/priors.py) a feature j has a
prior mean m_j and prior sd s_j in RAW units (return per unit of the feature), so a prior means the
same effect whatever this run's feature scale: in this fit's standardization (feature sd d_j) the
prior is b0_j = m_j d_j with sd s_j d_j, and the posterior mode under Gaussian noise of variance
sigma^2 (estimated by the variance of the training labels, which a trade model barely reduces)
minimizes ||y - Zb||^2 + sum_j lambda_j (b_j - b0_j)^2 with lambda_j = sigma^2 / (s_j d_j)^2; a
feature without a prior keeps lambda_j = alpha and b0_j = 0. The prior therefore weighs against the
data as precision against precision: lambda_j against the data's sum of z_j^2 (about n), so a prior
from a run of n' trades carries about n' / (n' + n) of the weight, and a vague prior (coefficients
that moved between runs) carries little. With sample weights w (total W, weighted means z_bar and
y_bar) and the intercept unpenalized, the minimum solves the normal equations
(Z' diag(w) Z - W z_bar z_bar' + diag(lambda)) b = Z' diag(w) (y - y_bar) + diag(lambda) b0, the
Gram matrix sklearn's Ridge forms too (its cholesky solver). We solve them in numpy and set the
fitted attributes of an ordinary sklearn Pipeline (StandardScaler, clip to +-clip_z, Ridge) whose
`predict` takes raw feature values: sklearn's own fit to rounding (tested), without its input
checks, copies and centering passes, which were a quarter of a run's compute (issue 26). The clip
keeps a feature that barely moved in the training window (market-wide features over a few weeks)
from producing 50-sigma inputs, and absurd predictions, out of sample.

A leak screen (core/leakage.py), when given, is applied to each fold's training trades and to all
trades, and every feature any of these screens flags is held out of EVERY model of the run, the
fold models and the final one: held constant (0), so the ridge gives it a coefficient of exactly 0
(and drops its prior) and trees cannot split on it. A fold model that kept a feature the final
screen flags would carry a leak its few training days could not show into the OOS figures. The
final screen sees the test labels, but only to remove features, never to choose any: a fold model
without a flagged feature has less information, so its OOS figures are not flattered by the choice.

A walk-forward fold is evaluated only when its purged training set holds at least
max(min_train_trades, 5 x number of features) trades (min_fold_train_trades, also the trainability
check of a trade source); earlier folds are skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, Protocol, TypeVar

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import ThreadpoolController

from persistence_pipeline.core.metrics import OutOfSampleMetrics, out_of_sample_metrics
from persistence_pipeline.errors import NotEnoughDataError

MODEL_KINDS = ("ridge", "gbt")

Params = ParamSpec("Params")
Result = TypeVar("Result")


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The BLAS and OpenMP libraries loaded, found once (a scan per call costs about 1 ms)."""
    return ThreadpoolController()


def one_blas_thread(function: Callable[Params, Result]) -> Callable[Params, Result]:
    """`function` with BLAS limited to one thread while it runs, restored after. A run's matrices
    are thin (trades x at most a few hundred features) and its products small and many (a dot
    product per permutation): a second BLAS thread saves little arithmetic and costs hand-offs and
    spinning, which on 2 cores shared with other work made a run 1.66x slower (issue 26);
    benchmarks/scale.py measures the run both ways (2-5x the CPU time with the default threads)."""

    @functools.wraps(function)
    def limited(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        with _threadpools().limit(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return limited


class Regressor(Protocol):
    """A fitted profit model: the ridge Pipeline or the gradient-boosted trees of fit_model."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...


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
class RidgePrior:
    """Per feature of the model (aligned with its columns): the prior mean and sd of the coefficient
    in raw units (return per unit of the feature); NaN where a feature has no prior."""

    mean_raw: np.ndarray
    sd_raw: np.ndarray

    def __post_init__(self):
        has = np.isfinite(self.mean_raw)
        if not np.array_equal(has, np.isfinite(self.sd_raw)) or np.any(self.sd_raw[has] <= 0):
            raise ValueError("a prior needs a mean and a positive sd for the same features")


def prior_penalties(
    prior: RidgePrior | None, scale: np.ndarray, label_variance: float, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """(b0, lambda): the prior mean in the standardized units of a fit whose features have sd
    `scale`, and each coefficient's penalty (alpha and 0 where there is no prior)."""
    n_features = len(scale)
    if prior is None:
        return np.zeros(n_features), np.full(n_features, float(alpha))
    has = np.isfinite(prior.mean_raw)
    b0 = np.where(has, np.nan_to_num(prior.mean_raw) * scale, 0.0)
    sd = np.where(has, np.nan_to_num(prior.sd_raw, nan=1.0) * scale, 1.0)
    variance = max(float(label_variance), np.finfo("float64").tiny)
    penalty = np.where(has & (sd > 0), variance / np.maximum(sd, np.finfo("float64").tiny) ** 2, alpha)
    return b0, penalty


def prior_weight(penalty: np.ndarray, Z: np.ndarray, prior: RidgePrior | None) -> float | None:
    """The median, over the features with a prior, of the prior's share of the coefficient's
    precision, lambda_j / (lambda_j + sum of centered z_j^2); None without a prior."""
    if prior is None or not np.isfinite(prior.mean_raw).any():
        return None
    has = np.isfinite(prior.mean_raw)
    data = ((Z - Z.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.median(penalty[has] / (penalty[has] + data[has])))


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
    prior_weight: float | None = field(default=None)
    screened: np.ndarray | None = field(default=None)  # features held out of every model of the run
    fold_screened: list[np.ndarray] = field(default_factory=list)  # ... out of each fold's model (the same)
    # what each screen flagged on its own trades: each fold's training trades, then all trades
    screen_flags: list[np.ndarray] = field(default_factory=list)


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


@dataclass(frozen=True)
class _RidgeSolution:
    """A prior ridge solved by the normal equations: coefficients per sd and intercept, the
    standardizer's mean, variance and scale (StandardScaler's), and the standardized, clipped
    inputs."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    var: np.ndarray
    scale: np.ndarray
    Z: np.ndarray


def _solve_prior_ridge(
    X: np.ndarray,
    y: np.ndarray,
    alpha: float,
    prior: RidgePrior | None,
    sample_weight: np.ndarray | None,
    clip_z: float,
    overwrite_x: bool,
) -> _RidgeSolution:
    """The prior ridge (module docstring) by the weighted normal equations, standardizing in place:
    with overwrite_x, X (a float64 array the caller no longer needs) becomes Z, saving a copy. The
    standardizer is StandardScaler's, unweighted, with its rule for near-constant features (scale
    1); a singular system (alpha 0 and a constant column) takes the minimum-norm solution, as
    sklearn's fallback to its SVD solver does."""
    Z = X if overwrite_x and X.dtype == np.float64 else np.array(X, dtype="float64")
    n = len(Z)
    mean = Z.mean(axis=0)
    Z -= mean
    var = np.einsum("ij,ij->j", Z, Z) / n
    eps = np.finfo("float64").eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.where(constant, 1.0, np.sqrt(var))
    Z /= scale
    np.clip(Z, -clip_z, clip_z, out=Z)
    y = np.asarray(y, dtype="float64")
    b0, penalty = prior_penalties(prior, scale, float(np.var(y)), alpha)
    if sample_weight is None:
        total, z_mean, y_mean = float(n), Z.mean(axis=0), float(y.mean())
        weighted_target = y - y_mean
        gram = Z.T @ Z
    else:
        w = np.asarray(sample_weight, dtype="float64")
        total = float(w.sum())
        z_mean, y_mean = (w @ Z) / total, float(w @ y) / total
        weighted_target = w * (y - y_mean)
        gram = (Z * w[:, None]).T @ Z
    gram += np.diag(penalty) - total * np.outer(z_mean, z_mean)
    rhs = Z.T @ weighted_target + penalty * b0
    if not (np.isfinite(gram).all() and np.isfinite(rhs).all()):  # NaN and inf reach both
        raise ValueError("the ridge's features, labels or weights contain NaN or infinity")
    try:
        coef = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        coef = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    return _RidgeSolution(coef, y_mean - float(z_mean @ coef), mean, var, scale, Z)


def _fitted_pipeline(solution: _RidgeSolution, alpha: float, clip_z: float) -> Pipeline:
    """The Pipeline (StandardScaler, clip to +-clip_z, Ridge) sklearn's fit would return for the
    solution: the fitted attributes its fit sets, in its order and types (tested against it), so a
    checkpoint stores the same object."""
    n_features = len(solution.coef)
    scaler = StandardScaler()
    scaler.n_features_in_ = n_features
    scaler.n_samples_seen_ = np.float64(len(solution.Z))
    scaler.mean_, scaler.var_, scaler.scale_ = solution.mean, solution.var, solution.scale
    clip = FunctionTransformer(np.clip, kw_args={"a_min": -clip_z, "a_max": clip_z})
    clip.n_features_in_ = n_features
    ridge = Ridge(alpha=float(alpha))
    ridge.n_features_in_ = n_features
    ridge.coef_ = solution.coef
    ridge.n_iter_ = None
    ridge.solver_ = "cholesky"
    ridge.intercept_ = np.float64(solution.intercept)
    return Pipeline([("scale", scaler), ("clip", clip), ("ridge", ridge)])


def fit_prior_ridge(
    X: np.ndarray,
    y: np.ndarray,
    alpha: float,
    prior: RidgePrior | None = None,
    sample_weight: np.ndarray | None = None,
    clip_z: float = 5.0,
) -> Pipeline:
    """Ridge on standardized (and clipped) X shrunk toward the prior (module docstring); plain ridge
    with `alpha` without one."""
    solution = _solve_prior_ridge(X, y, alpha, prior, sample_weight, clip_z, overwrite_x=False)
    return _fitted_pipeline(solution, alpha, clip_z)


def prior_ridge_coefficients(
    X: np.ndarray,
    y: np.ndarray,
    alpha: float,
    prior: RidgePrior | None,
    sample_weight: np.ndarray | None,
    clip_z: float,
    overwrite_x: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coefficients fit_prior_ridge fits, the standardized inputs and the features' sd, without
    building a Pipeline: for the bootstrap's twenty refits. With overwrite_x, X (a float64 array the
    caller no longer needs, such as a bootstrap resample) becomes the standardized inputs, saving a
    copy."""
    solution = _solve_prior_ridge(X, y, alpha, prior, sample_weight, clip_z, overwrite_x)
    return solution.coef, solution.Z, solution.scale


Screen = Callable[[np.ndarray], np.ndarray]  # training positions -> mask of features to hold out


def neutralized(
    X: np.ndarray, prior: RidgePrior | None, mask: np.ndarray | None
) -> tuple[np.ndarray, RidgePrior | None]:
    """X with the masked features held at 0 and the prior without them (unchanged without a mask)."""
    if mask is None or not mask.any():
        return X, prior
    X = np.array(X, dtype="float64")
    X[:, mask] = 0.0
    if prior is not None:
        prior = RidgePrior(np.where(mask, np.nan, prior.mean_raw), np.where(mask, np.nan, prior.sd_raw))
    return X, prior


def standardized_inputs(model: Pipeline, X: np.ndarray) -> np.ndarray:
    """What the ridge step of a linear pipeline sees: standardized, clipped features. The same
    arithmetic as the pipeline's own transform (subtract mean_, divide by scale_, clip), in place on
    one copy, without sklearn's validation and a second copy for the clip."""
    scaler, clip = model.named_steps["scale"], model.named_steps["clip"].kw_args
    Z = np.array(X, dtype="float64")
    Z -= scaler.mean_
    Z /= scaler.scale_
    return np.clip(Z, clip["a_min"], clip["a_max"], out=Z)


def predict(model: Regressor, X: np.ndarray) -> np.ndarray:
    """model.predict(X); for the ridge pipeline the same arithmetic through standardized_inputs."""
    if isinstance(model, Pipeline):
        ridge = model.named_steps["ridge"]
        return standardized_inputs(model, X) @ ridge.coef_ + ridge.intercept_
    return model.predict(X)


def fit_model(
    X: np.ndarray,
    y: np.ndarray,
    params: ModelParams,
    prior: RidgePrior | None,
    sample_weight: np.ndarray | None,
) -> Regressor:
    """The params.kind model fit on (X, y): the prior ridge Pipeline or gradient-boosted trees."""
    return _fit(X, y, params, prior, sample_weight, overwrite_x=False)[0]


def _fit(
    X: np.ndarray,
    y: np.ndarray,
    params: ModelParams,
    prior: RidgePrior | None,
    sample_weight: np.ndarray | None,
    overwrite_x: bool,
) -> tuple[Regressor, _RidgeSolution | None]:
    """fit_model, and the solution of a ridge (None for trees); overwrite_x as in
    prior_ridge_coefficients."""
    if params.kind == "ridge":
        solution = _solve_prior_ridge(
            X, y, params.ridge_alpha, prior, sample_weight, params.clip_z, overwrite_x
        )
        return _fitted_pipeline(solution, params.ridge_alpha, params.clip_z), solution
    model = HistGradientBoostingRegressor(
        max_iter=params.gbt_max_iter,
        learning_rate=params.gbt_learning_rate,
        max_leaf_nodes=params.gbt_max_leaf_nodes,
        min_samples_leaf=params.gbt_min_samples_leaf,
        early_stopping=False,
        random_state=params.seed,
    )
    return model.fit(X, y, sample_weight=sample_weight), None


def standardized_coefficients(model: object) -> np.ndarray | None:
    """Coefficients per standard deviation of each feature (None for a tree model)."""
    if isinstance(model, Pipeline):
        return model.named_steps["ridge"].coef_.copy()
    return None


def raw_coefficients(model: object) -> np.ndarray | None:
    """Coefficients per unit of each feature (return per unit), what a prior carries between runs
    (None for a tree model)."""
    if isinstance(model, Pipeline):
        return model.named_steps["ridge"].coef_ / model.named_steps["scale"].scale_
    return None


def screens_of(fitted: FittedModel) -> Screen:
    """The leak screen as `fitted` applied it: the features it held out of every model. Another model
    fit on the same trades and folds (an ensemble member) is held to the same features without
    screening again."""
    held_out = np.zeros(len(fitted.features), dtype=bool) if fitted.screened is None else fitted.screened

    def screen(rows: np.ndarray) -> np.ndarray:
        return held_out

    return screen


@one_blas_thread
def train_and_evaluate(
    X: np.ndarray,
    y: np.ndarray,
    entry_time: np.ndarray,
    exit_time: np.ndarray,
    features: list[str],
    params: ModelParams,
    prior: RidgePrior | None = None,
    sample_weight: np.ndarray | None = None,
    screen: Screen | None = None,
) -> FittedModel:
    """Walk-forward OOS evaluation, then the final model fit on every training trade; `screen` flags
    the features to hold out of a fit from its training positions (module docstring)."""
    if len(y) < params.min_train_trades:
        raise NotEnoughDataError(
            f"only {len(y)} trades with a realized label; "
            f"at least {params.min_train_trades} are needed (min_train_trades)"
        )
    prior = prior if params.kind == "ridge" else None
    min_fold_train = min_fold_train_trades(params.min_train_trades, X.shape[1])
    folds = [
        fold
        for fold in purged_walk_forward_splits(
            entry_time, exit_time, params.n_folds, pd.Timedelta(days=params.embargo_days)
        )
        if fold.train.size >= min_fold_train
    ]
    no_screen = np.zeros(X.shape[1], dtype=bool)
    screen_flags = [
        no_screen if screen is None else screen(rows)
        for rows in [*(fold.train for fold in folds), np.arange(len(y))]
    ]
    screened = np.logical_or.reduce(screen_flags)
    fold_models: list[Regressor] = []
    predictions: list[np.ndarray] = []
    for fold in folds:
        weights = None if sample_weight is None else sample_weight[fold.train]
        X_train, fold_prior = neutralized(X[fold.train], prior, screened)
        model, _ = _fit(X_train, y[fold.train], params, fold_prior, weights, overwrite_x=True)
        fold_models.append(model)
        predictions.append(predict(model, X[fold.test]))
    if not folds:
        raise NotEnoughDataError(
            f"no walk-forward fold has {min_fold_train} purged training trades ({len(y)} labelled trades, "
            f"n_folds={params.n_folds}): use a longer range"
        )
    oos_positions = np.concatenate([fold.test for fold in folds])
    oos_prediction = np.concatenate(predictions)
    X_final, final_prior = neutralized(X, prior, screened)
    model, solution = _fit(X_final, y, params, final_prior, sample_weight, overwrite_x=X_final is not X)
    weight = None
    if final_prior is not None and solution is not None:
        _, penalty = prior_penalties(final_prior, solution.scale, float(np.var(y)), params.ridge_alpha)
        weight = prior_weight(penalty, solution.Z, final_prior)
    return FittedModel(
        model=model,
        features=list(features),
        folds=folds,
        fold_models=fold_models,
        oos_prediction=oos_prediction,
        oos_positions=oos_positions,
        metrics=out_of_sample_metrics(oos_prediction, y[oos_positions]),
        prior_weight=weight,
        screened=screened,
        fold_screened=[screened for _ in folds],
        screen_flags=screen_flags,
    )
