"""Per-run feature importance: standardized coefficient, mean |SHAP|, out-of-sample permutation
importance and univariate IC, and the importance rank.

- SHAP for the ridge pipeline is exact and closed-form: phi_ij = b_j * (z_ij - mean_j) with z the
  standardized (clipped) feature the ridge sees, b its coefficient and the mean over the training
  trades (what shap's LinearExplainer computes with an independent masker over the same data), on
  every training trade.
- SHAP for trees is shap's TreeExplainer on a seeded sample of at most `shap_sample_size` trades.
- Permutation importance is measured out of sample: for every walk-forward fold, the fold's model
  predicts its test block with one feature's column permuted; importance is the increase of the
  pooled OOS mean squared error, its mean and std over `perm_repeats` permutations. For a linear
  model the permuted prediction is the base prediction plus b_j * (z_perm - z), so with the residual
  e = y - prediction and u = e + b_j z the increase of the summed squared error is exactly
  2 b_j u.(z - z_perm): one dot product per permutation instead of a prediction (the same
  permutations as predicting permuted copies, drawn in the same order, so the same figures).
- IC is the Spearman correlation of the feature with the realized return over the training trades.
- Spread: coef_std and shap_mean_abs_std are standard deviations over `bootstrap_rounds` bootstrap
  resamples of the training trades (at most `bootstrap_sample_size` each). A linear model is refit on
  every resample (same alpha, prior and weights), so coef_std is the model's sampling uncertainty;
  for trees the model is fixed and the explained trades are resampled (coef_std is NULL).
- The run's own evidence (linear only): own_coef_raw is the coefficient per unit of the feature of
  the same ridge WITHOUT the prior, own_coef_raw_std its bootstrap sd. The next prior pools these
  (core/priors.py); pooling the warm model's own coefficients would count every earlier run again in
  each later one (the prior's sd fell to 1e-9 of the coefficient within eight planted quarters).
- rank 1 is the largest mean |SHAP| (ties broken by feature name, so ranks are deterministic) among
  the features not quarantined by the leak screen (those keep a row, flagged, without a rank).
- Interactions (trees only; a linear model has none): shap's TreeExplainer interaction values on a
  seeded sample of at most `interaction_sample_size` trades; a pair's strength is the mean over the
  sample of |phi_ab + phi_ba| (shap splits the pair's interaction equally between the two cells),
  and the `interaction_top` strongest pairs are kept, rank 1 the strongest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from persistence_pipeline.core.metrics import rank_ic_columns
from persistence_pipeline.core.model import (
    Fold,
    Regressor,
    RidgePrior,
    fit_prior_ridge,
    neutralized,
    one_blas_thread,
    prior_ridge_coefficients,
    raw_coefficients,
    standardized_coefficients,
    standardized_inputs,
)


@dataclass(frozen=True)
class ImportanceParams:
    perm_repeats: int = 5
    shap_sample_size: int = 2000  # trees only; linear SHAP is exact on every trade
    perm_sample_size: int = 20000  # trees only: OOS trades per run scored by permutation
    bootstrap_rounds: int = 20
    bootstrap_sample_size: int = 50000
    interaction_sample_size: int = 500  # trees only: SHAP interaction values cost features^2 per trade
    interaction_top: int = 10
    seed: int = 0


def explainer_name(model: object) -> str:
    return "closed-form linear (coef * (z - mean z))" if isinstance(model, Pipeline) else "shap.TreeExplainer"


def linear_shap_values(model: Pipeline, X: np.ndarray) -> np.ndarray:
    """Exact SHAP values of a linear pipeline for the rows of X, against the mean of X (the training
    trades)."""
    Z = standardized_inputs(model, X)
    return (Z - Z.mean(axis=0)) * model.named_steps["ridge"].coef_


def shap_rows(model: Regressor, n: int, params: ImportanceParams) -> np.ndarray:
    """The trades SHAP explains: all of them for a linear model, a seeded sample of at most
    shap_sample_size for trees."""
    if isinstance(model, Pipeline) or n <= params.shap_sample_size:
        return np.arange(n)
    rng = np.random.default_rng(params.seed)
    return np.sort(rng.choice(n, params.shap_sample_size, replace=False))


def shap_values(model: Regressor, X: np.ndarray, params: ImportanceParams) -> np.ndarray:
    """SHAP values of the trades of shap_rows, in that order."""
    if isinstance(model, Pipeline):
        return linear_shap_values(model, X)
    import shap  # heavy import (about 5 s): only where trees are explained

    sample = X[shap_rows(model, len(X), params)]
    return shap.TreeExplainer(model).shap_values(sample, check_additivity=False)


SEGMENT_COLUMNS = ["segment", "feature", "n_trades", "ic", "shap_mean_abs", "rank"]


def segment_importance(
    model: Regressor,
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    segments: dict[str, np.ndarray],
    params: ImportanceParams,
    quarantined: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per segment of the trades (a strategy, a side: name -> boolean mask over the rows of X) and
    feature: the trades in it, the in-sample IC within it, and the model's mean |SHAP| over its
    trades measured from the segment's own average trade (|phi - mean of phi over the segment|; over
    the SHAP sample's trades in it for trees), so a column constant within the segment (`direction`
    within a side, a strategy indicator within a strategy) scores 0 there instead of the segment's
    distance from the pooled average; ranked within the segment (quarantined features: no rank).
    The pooled figures mix segments whose features mean different things."""
    held = np.zeros(len(features), dtype=bool) if quarantined is None else np.asarray(quarantined)
    rows = shap_rows(model, len(X), params)
    values = shap_values(model, neutralized(X, None, held)[0], params)
    parts = []
    for name, mask in segments.items():
        mask = np.asarray(mask, dtype=bool)
        explained = mask[rows]
        if mask.sum() < 2:
            continue
        within = values[explained]
        shap_mean = (
            np.abs(within - within.mean(axis=0)).mean(axis=0)
            if explained.any()
            else np.full(len(features), np.nan)
        )
        table = pd.DataFrame(
            {
                "segment": name,
                "feature": features,
                "n_trades": int(mask.sum()),
                "ic": rank_ic_columns(X[mask], y[mask]),
                "shap_mean_abs": shap_mean,
                "rank": ranks_of_kept(np.nan_to_num(shap_mean), features, held),
            }
        )
        parts.append(table.sort_values("rank", kind="stable"))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SEGMENT_COLUMNS)


def mean_abs_linear_shap(coef: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Mean |SHAP| of a linear model with coefficients coef over the standardized inputs Z, which it
    overwrites (the caller's own copy: no second n x p matrix):
    mean_i |coef_j (z_ij - mean z_j)| = |coef_j| * mean_i |z_ij - mean z_j|."""
    Z -= Z.mean(axis=0)
    return np.abs(coef) * np.abs(Z, out=Z).mean(axis=0)


def linear_shap_summary(coef: np.ndarray, Z: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mean_abs_linear_shap, and per feature its group's mean |SHAP|: mean_i |sum over the group's
    members j of coef_j (z_ij - mean z_j)| (a group's SHAP value is the sum of its members'; opposite-
    signed twins cancel; a group of one is the feature's own figure). Overwrites Z, as
    mean_abs_linear_shap."""
    Z -= Z.mean(axis=0)
    per_group = {}
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if len(members) > 1:
            per_group[group] = float(np.abs(Z[:, members] @ coef[members]).mean())
    spread = np.abs(coef) * np.abs(Z, out=Z).mean(axis=0)
    return spread, np.array([per_group.get(g, spread[j]) for j, g in enumerate(groups)])


def group_mean_abs(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per feature, mean over rows of |sum of the SHAP values (rows x features) of its group|."""
    per_group = {g: float(np.abs(values[:, groups == g].sum(axis=1)).mean()) for g in np.unique(groups)}
    return np.array([per_group[g] for g in groups])


def mean_abs_shap(
    model: Regressor, X: np.ndarray, params: ImportanceParams, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean |SHAP| per feature, its group's mean |sum of SHAP| (each feature its own group when
    `groups` is None), and the number of trades they were computed on."""
    groups = np.arange(X.shape[1]) if groups is None else np.asarray(groups)
    if isinstance(model, Pipeline):
        spread, group = linear_shap_summary(
            model.named_steps["ridge"].coef_, standardized_inputs(model, X), groups
        )
        return spread, group, len(X)
    values = shap_values(model, X, params)
    return np.abs(values).mean(axis=0), group_mean_abs(values, groups), len(values)


INTERACTION_COLUMNS = ["feature_a", "feature_b", "interaction_mean_abs", "rank"]


def pair_strengths(interactions: np.ndarray, features: list[str], top: int) -> pd.DataFrame:
    """The `top` strongest pairs of a trades x features x features array of SHAP interaction
    values: feature_a < feature_b by position, mean |phi_ab + phi_ba|, rank 1 the strongest (ties by
    names)."""
    n = len(features)
    a, b = np.triu_indices(n, k=1)
    strength = np.abs(interactions[:, a, b] + interactions[:, b, a]).mean(axis=0)
    table = pd.DataFrame(
        {
            "feature_a": [features[i] for i in a],
            "feature_b": [features[j] for j in b],
            "interaction_mean_abs": strength,
        }
    )
    table = table.sort_values(
        ["interaction_mean_abs", "feature_a", "feature_b"], ascending=[False, True, True], kind="stable"
    ).head(top)
    return table.assign(rank=np.arange(1, len(table) + 1)).reset_index(drop=True)[INTERACTION_COLUMNS]


def top_interactions(
    model: Regressor, X: np.ndarray, features: list[str], params: ImportanceParams
) -> pd.DataFrame:
    """The strongest feature pairs of a tree model by SHAP interaction values (module docstring);
    empty for a linear model, whose prediction is a sum of one-feature terms."""
    if isinstance(model, Pipeline) or len(features) < 2:
        return pd.DataFrame(
            {
                c: pd.Series(dtype="float64" if c == "interaction_mean_abs" else "object")
                for c in INTERACTION_COLUMNS
            }
        )
    import shap  # heavy import: only where trees are explained

    rng = np.random.default_rng(params.seed)
    size = params.interaction_sample_size
    sample = X if len(X) <= size else X[np.sort(rng.choice(len(X), size, replace=False))]
    interactions = shap.TreeExplainer(model).shap_interaction_values(sample)
    return pair_strengths(np.asarray(interactions), features, params.interaction_top)


@dataclass(frozen=True)
class BootstrapSpread:
    """Standard deviations over bootstrap resamples (coefficients None for trees)."""

    coef_std: np.ndarray | None
    coef_raw_std: np.ndarray | None
    shap_mean_abs_std: np.ndarray


def bootstrap_spread(
    model: Regressor,
    X: np.ndarray,
    y: np.ndarray,
    prior: RidgePrior | None,
    sample_weight: np.ndarray | None,
    params: ImportanceParams,
) -> BootstrapSpread:
    """The spread of the coefficients (per sd and per unit of each feature) and of mean |SHAP| over
    bootstrap resamples of the trades."""
    rng = np.random.default_rng([params.seed, 1])
    if not isinstance(model, Pipeline):
        magnitude = np.abs(shap_values(model, X, params))
        means = [
            magnitude[rng.integers(0, len(magnitude), len(magnitude))].mean(axis=0)
            for _ in range(params.bootstrap_rounds)
        ]
        return BootstrapSpread(None, None, np.std(means, axis=0, ddof=1))
    alpha = model.named_steps["ridge"].alpha
    clip = model.named_steps["clip"].kw_args["a_max"]
    size = min(len(X), params.bootstrap_sample_size)
    coefs, raw, shaps = [], [], []
    for _ in range(params.bootstrap_rounds):
        rows = rng.integers(0, len(X), size)
        weights = None if sample_weight is None else sample_weight[rows]
        coef, Z, scale = prior_ridge_coefficients(
            X[rows], y[rows], alpha, prior, weights, clip, overwrite_x=True
        )
        coefs.append(coef)
        raw.append(coef / scale)
        shaps.append(mean_abs_linear_shap(coef, Z))
    return BootstrapSpread(
        np.std(coefs, axis=0, ddof=1), np.std(raw, axis=0, ddof=1), np.std(shaps, axis=0, ddof=1)
    )


def linear_permutation_increases(
    model: Pipeline, X_test: np.ndarray, y_test: np.ndarray, repeats: int, rng: np.random.Generator
) -> np.ndarray:
    """Repeats x features: the increase of the summed squared error of a linear pipeline on the
    test trades when one column is permuted, 2 b_j u.(z - z_perm) with u = y - prediction + b_j z
    (module docstring). rng.permutation(z) reorders z as z[rng.permutation(len(z))] would, from
    the same draws."""
    Z = standardized_inputs(model, X_test)
    coef, intercept = model.named_steps["ridge"].coef_, model.named_steps["ridge"].intercept_
    residual = y_test - (Z @ coef + intercept)
    increases = np.empty((repeats, Z.shape[1]))
    for j in range(Z.shape[1]):
        z = np.ascontiguousarray(Z[:, j])
        u = residual + coef[j] * z
        own = u @ z
        for r in range(repeats):
            increases[r, j] = 2.0 * coef[j] * (own - u @ rng.permutation(z))
    return increases


def tree_permutation_increases(
    model: Regressor, X_test: np.ndarray, y_test: np.ndarray, repeats: int, rng: np.random.Generator
) -> np.ndarray:
    """Repeats x features: the increase of the summed squared error of the model's predictions of
    copies of the test trades with one column permuted."""
    base_sq = (y_test - model.predict(X_test)) ** 2
    increases = np.empty((repeats, X_test.shape[1]))
    for j in range(X_test.shape[1]):
        for r in range(repeats):
            shuffled = X_test.copy()
            shuffled[:, j] = X_test[rng.permutation(len(y_test)), j]
            increases[r, j] = ((y_test - model.predict(shuffled)) ** 2 - base_sq).sum()
    return increases


@one_blas_thread  # also where an ensemble member is explained outside importance_table
def oos_permutation_importance(
    fold_models: list[Regressor], folds: list[Fold], X: np.ndarray, y: np.ndarray, params: ImportanceParams
) -> tuple[np.ndarray, np.ndarray]:
    """Increase of the pooled OOS MSE when one feature is permuted: (mean, std over repeats)."""
    rng = np.random.default_rng(params.seed)
    n_features = X.shape[1]
    total_test = sum(fold.test.size for fold in folds)
    sq_error_increase = np.zeros((params.perm_repeats, n_features))
    n_scored = 0
    for model, fold in zip(fold_models, folds, strict=True):
        test = fold.test
        linear = isinstance(model, Pipeline)
        if not linear and total_test > params.perm_sample_size:  # trees: a sample
            keep = max(1, int(round(test.size * params.perm_sample_size / total_test)))
            test = np.sort(rng.choice(test, size=min(keep, test.size), replace=False))
        increases = linear_permutation_increases if linear else tree_permutation_increases
        sq_error_increase += increases(model, X[test], y[test], params.perm_repeats, rng)
        n_scored += test.size
    per_repeat = sq_error_increase / n_scored
    spread = per_repeat.std(axis=0, ddof=1) if params.perm_repeats > 1 else np.zeros(n_features)
    return per_repeat.mean(axis=0), spread


def importance_ranks(score: np.ndarray, features: list[str]) -> np.ndarray:
    """1 for the largest score; ties broken by feature name."""
    order = sorted(range(len(features)), key=lambda i: (-score[i], features[i]))
    ranks = np.empty(len(features), dtype="int64")
    ranks[order] = np.arange(1, len(features) + 1)
    return ranks


def ranks_of_kept(
    score: np.ndarray, features: list[str], held: np.ndarray
) -> pd.api.extensions.ExtensionArray:
    """importance_ranks among the features not `held` (quarantined); NA for the held ones."""
    rank = pd.array([pd.NA] * len(features), dtype="Int64")
    kept = np.flatnonzero(~held)
    rank[kept] = importance_ranks(score[kept], [features[i] for i in kept])
    return rank


@one_blas_thread
def importance_table(
    model: Regressor,
    fold_models: list[Regressor],
    folds: list[Fold],
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    params: ImportanceParams,
    prior: RidgePrior | None = None,
    sample_weight: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    quarantined: np.ndarray | None = None,
) -> tuple[pd.DataFrame, int]:
    """One row per feature (coef and its std, per sd and per unit of the feature, shap_mean_abs and
    its std, group_shap_mean_abs of its group in `groups`, perm_importance(_std), ic, rank,
    quarantined) and the SHAP sample size. The `quarantined` features were held at 0 in the final
    model's fit: they are held there again to explain it (their SHAP and coefficient are 0), keep
    their in-sample IC and OOS permutation importance (fold models that kept them), and take no rank."""
    held = np.zeros(len(features), dtype=bool) if quarantined is None else np.asarray(quarantined)
    X_oos = X
    X, prior = neutralized(X, prior, held)
    shap_mean, group_shap, shap_n = mean_abs_shap(model, X, params, groups)
    spread = bootstrap_spread(model, X, y, prior, sample_weight, params)
    own_model, own_spread = model, spread
    if prior is not None and isinstance(model, Pipeline):
        alpha, clip = model.named_steps["ridge"].alpha, model.named_steps["clip"].kw_args["a_max"]
        own_model = fit_prior_ridge(X, y, alpha, None, sample_weight, clip)
        own_spread = bootstrap_spread(own_model, X, y, None, sample_weight, params)
    perm_mean, perm_std = oos_permutation_importance(fold_models, folds, X_oos, y, params)
    missing = np.full(len(features), np.nan)

    def linear(values: np.ndarray | None) -> np.ndarray:
        return missing if values is None else values

    table = pd.DataFrame(
        {
            "feature": features,
            "coef": linear(standardized_coefficients(model)),
            "coef_std": linear(spread.coef_std),
            "own_coef_raw": linear(raw_coefficients(own_model)),
            "own_coef_raw_std": linear(own_spread.coef_raw_std),
            "shap_mean_abs": shap_mean,
            "shap_mean_abs_std": spread.shap_mean_abs_std,
            "group_shap_mean_abs": group_shap,
            "perm_importance": perm_mean,
            "perm_importance_std": perm_std,
            "ic": rank_ic_columns(X_oos, y),
            "rank": ranks_of_kept(shap_mean, features, held),
            "quarantined": held,
        }
    )
    return table.sort_values("rank", kind="stable").reset_index(drop=True), shap_n
