"""Ensemble alpha: several model kinds fit in ONE run, on the same trades and the same purged
walk-forward folds, and how far they agree on which features matter.

- Members: the run's model (`model_settings.kind`: the one whose priors, importance history,
  stability, alpha and sizing the run stores, as without an ensemble) and every kind in
  `model_settings.ensemble`. The other members are fit cold (no priors: a prior is a ridge
  coefficient, and a ridge member beside trees would need a prior history of its own), with the same
  curriculum weights and the same leak screen, so the members differ by their model kind alone.
- The ensemble's prediction of a trade averages the members' walk-forward out-of-sample
  predictions of it with equal weights AFTER putting them on one scale: each member's prediction is
  divided by the sd of its fold model's predictions on that fold's own training trades (`scale`:
  known before the fold's test block, so the average stays out of sample), and the average is
  multiplied back by the run model's scale (return units again, so R^2 and "prediction > 0" keep
  their meaning). A plain average of raw predictions would weight the trees, whose predictions
  spread twice as wide on the embedded data, twice as much. Nothing is fitted on the OOS predictions:
  a stacked combination would need a walk-forward of its own over the few folds' predictions to stay
  out of sample, and an average has nothing to overfit.
- Agreement, per run: each member ranks the features it kept (the leak screen's quarantined ones
  have no rank) by their mean |SHAP|, the importance `feature_importance_history` ranks by, ties
  given their average rank (trees give exactly 0 to every feature they never split on: ranking
  those by name would invent agreement). Per feature: its best and worst rank and their gap, whether
  it is in EVERY member's top k and in ANY member's (a feature in a top k has a positive importance;
  k is `top_k` cut to one less than the ranked features, as for stability); per run, the Spearman
  correlation of the members' importances over the features every member ranked (the mean over
  pairs when there are more than two members).
- Across runs (`ensemble_view`, feature_alpha's columns): over the ensemble runs as of the range
  end whose windows do not overlap (overlapping runs share trades, as for stability), the share in
  which a feature was in every member's top k (a run without the feature, or that quarantined it,
  counts as not) and its mean rank gap.

Agreement is not evidence of alpha. Both members are explained in sample on the same trades, so
they share the noise they fit: on simulated markets without signal a noise feature is in both top 5
of 21 in 10% of runs, against 6% if the models ranked independently (benchmarks/ensemble.py;
docs/how-it-works.md, "Ensemble alpha"). The evidence that a feature predicts returns is its IC's
q-value; agreement says whether that feature matters to a linear and a non-linear model alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from persistence_pipeline.core.importance import (
    ImportanceParams,
    mean_abs_shap,
    oos_permutation_importance,
    ranks_of_kept,
)
from persistence_pipeline.core.metrics import metric_columns, out_of_sample_metrics
from persistence_pipeline.core.model import FittedModel, Fold, Regressor, neutralized
from persistence_pipeline.core.stability import effective_k, non_overlapping_runs

ENSEMBLE = "ensemble"  # the model_kind of the ensemble's rows in ensemble_predictions/_metrics
MEMBER_COLUMNS = ["feature", "rank", "shap_mean_abs", "perm_importance", "perm_importance_std"]
AGREEMENT_COLUMNS = [
    "feature",
    "n_models",
    "rank_min",
    "rank_max",
    "rank_gap",
    "in_all_top_k",
    "in_any_top_k",
    "k",
    "rank_spearman",
]
VIEW_COLUMNS = ["feature", "n_ensemble_runs", "all_models_top_k_frequency", "mean_rank_gap"]


def members(kind: str, ensemble: Sequence[str]) -> list[str]:
    """The run's model kind, then the ensemble's other kinds, each once."""
    if kind in ensemble or len(set(ensemble)) != len(ensemble):
        raise ValueError(
            f"model_settings.ensemble {list(ensemble)} must name model kinds other than kind "
            f"({kind!r}), each once"
        )
    return [kind, *ensemble]


def fold_scales(fitted: FittedModel, X: np.ndarray) -> np.ndarray:
    """Per OOS trade (in the order of `fitted.oos_positions`): the sd of its fold model's
    predictions on that fold's training trades, 0 when the fold model predicts a constant."""
    return np.concatenate(
        [
            np.full(fold.test.size, float(np.std(model.predict(X[fold.train]))))
            for model, fold in zip(fitted.fold_models, fitted.folds, strict=True)
        ]
    )


def ensemble_prediction(
    predictions: Mapping[str, np.ndarray], scales: Mapping[str, np.ndarray]
) -> np.ndarray:
    """The equal-weight average of the members' predictions of the same trades, each divided by its
    scale (a member whose fold model predicts a constant adds 0), in the first member's units (where
    the first member's fold model predicts a constant, in the mean units of the others)."""
    kinds = list(predictions)
    scale = np.vstack([np.asarray(scales[kind], dtype="float64") for kind in kinds])
    standardized = np.divide(
        np.vstack([np.asarray(predictions[kind], dtype="float64") for kind in kinds]),
        scale,
        out=np.zeros_like(scale),
        where=scale > 0,
    )
    return standardized.mean(axis=0) * ensemble_unit(scales)


def ensemble_unit(scales: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per trade, the scale the average is put back in: the first member's, or where its fold model
    predicts a constant the mean of the other members' positive scales (0 if none has one)."""
    scale = np.vstack([np.asarray(value, dtype="float64") for value in scales.values()])
    n_positive = (scale > 0).sum(axis=0)
    mean_positive = np.divide(
        np.where(scale > 0, scale, 0.0).sum(axis=0),
        n_positive,
        out=np.zeros(scale.shape[1]),
        where=n_positive > 0,
    )
    return np.where(scale[0] > 0, scale[0], mean_positive)


def member_metrics(
    predictions: Mapping[str, np.ndarray], scales: Mapping[str, np.ndarray], realized: np.ndarray
) -> pd.DataFrame:
    """Out-of-sample metrics of each member and of their average (core/metrics.py), one row each,
    with each member's weight in the average of standardized predictions (NULL on the ensemble's)."""
    weight = 1.0 / len(predictions)
    rows = [
        {"model_kind": kind, "weight": weight, **_metrics(prediction, realized)}
        for kind, prediction in predictions.items()
    ]
    average = ensemble_prediction(predictions, scales)
    rows.append({"model_kind": ENSEMBLE, "weight": np.nan, **_metrics(average, realized)})
    return pd.DataFrame(rows)


def _metrics(prediction: np.ndarray, realized: np.ndarray) -> dict[str, float]:
    return metric_columns(
        out_of_sample_metrics(np.asarray(prediction, dtype="float64"), np.asarray(realized, dtype="float64"))
    )


def explain_member(
    model: Regressor,
    fold_models: list[Regressor],
    folds: list[Fold],
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    params: ImportanceParams,
    quarantined: np.ndarray | None,
) -> pd.DataFrame:
    """An ensemble member's importance (MEMBER_COLUMNS) as feature_importance explains the run's
    model, without the bootstrap spreads: mean |SHAP| of the final model on the trades with the
    quarantined features held at 0 (they take no rank), OOS permutation importance of the fold
    models on their test blocks."""
    held = np.zeros(len(features), dtype=bool) if quarantined is None else np.asarray(quarantined)
    X_held, _ = neutralized(X, None, held)
    shap_mean, _, _ = mean_abs_shap(model, X_held, params)
    perm_mean, perm_std = oos_permutation_importance(fold_models, folds, X, y, params)
    return pd.DataFrame(
        {
            "feature": features,
            "rank": ranks_of_kept(shap_mean, features, held),
            "shap_mean_abs": shap_mean,
            "perm_importance": perm_mean,
            "perm_importance_std": perm_std,
        }
    )


def member_ranks(importance: pd.DataFrame) -> pd.DataFrame:
    """Feature x member ranks (1 = largest mean |SHAP|, ties averaged) from ensemble_importance rows
    (model_kind, feature, rank, shap_mean_abs); NaN where a member did not rank the feature."""
    ranked = importance.assign(
        shap=importance["shap_mean_abs"].astype("float64").where(importance["rank"].notna())
    )
    wide = ranked.pivot(index="feature", columns="model_kind", values="shap")
    return wide.rank(ascending=False, method="average")


def rank_spearman(importance: pd.DataFrame) -> float:
    """Spearman correlation of the members' importances (a feature-by-member frame, NaN where a
    member did not rank a feature) over the features every member ranked, ties averaged; the mean
    over pairs of members (a member whose importances are all equal correlates with none); NaN below
    3 common features."""
    common = importance.dropna().astype("float64").rank()
    if len(common) < 3 or common.shape[1] < 2:
        return float("nan")
    pairs = [
        np.corrcoef(common[a], common[b])[0, 1]
        for a, b in itertools.combinations(common.columns, 2)
        if common[a].nunique() > 1 and common[b].nunique() > 1  # a member that ranks all alike: none
    ]
    return float(np.mean(pairs)) if pairs else float("nan")


def rank_agreement(importance: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """Per feature (AGREEMENT_COLUMNS), from a run's ensemble_importance rows (model_kind, feature,
    rank, shap_mean_abs): how the members rank it, whether it is in every member's top k and in
    any's, with the run's k and Spearman agreement on every row; by worst rank, best rank, name."""
    ranks = member_ranks(importance)
    shap = importance.pivot(index="feature", columns="model_kind", values="shap_mean_abs").astype("float64")
    ranked = ranks.notna().all(axis=1)
    k = effective_k(top_k, int(ranked.sum()))
    top = (ranks <= k) & (shap.loc[ranks.index, ranks.columns] > 0)
    table = pd.DataFrame(
        {
            "feature": ranks.index,
            "n_models": ranks.notna().sum(axis=1).astype("int64").to_numpy(),
            "rank_min": ranks.min(axis=1).to_numpy(),
            "rank_max": ranks.max(axis=1).to_numpy(),
            "in_all_top_k": (top.all(axis=1) & ranked).to_numpy(),
            "in_any_top_k": top.any(axis=1).to_numpy(),
        }
    )
    table["rank_gap"] = (table["rank_max"] - table["rank_min"]).where(ranked.to_numpy())
    table["k"] = k
    table["rank_spearman"] = rank_spearman(ranks)
    table = table.sort_values(["rank_max", "rank_min", "feature"], na_position="last", kind="stable")
    return table[AGREEMENT_COLUMNS].reset_index(drop=True)


def ensemble_view(agreement: pd.DataFrame, ranges: pd.DataFrame) -> pd.DataFrame:
    """Per feature over the ensemble runs among `ranges` (run_key, range_start, range_end: the runs
    as of) whose windows do not overlap (`agreement`: model_agreement rows of the runs): the number
    of those runs, the share of them in which the feature was in every member's top k, and its mean
    rank gap over those that ranked it (VIEW_COLUMNS)."""
    ensemble_runs = ranges[ranges["run_key"].isin(set(agreement["run_key"]))]
    if ensemble_runs.empty:
        return pd.DataFrame(columns=VIEW_COLUMNS)
    compared = non_overlapping_runs(ensemble_runs)
    rows = agreement[agreement["run_key"].isin(compared)]
    view = rows.groupby("feature", sort=True).agg(
        in_all=("in_all_top_k", "sum"),
        mean_rank_gap=("rank_gap", "mean"),
    )
    view["n_ensemble_runs"] = len(compared)
    view["all_models_top_k_frequency"] = view["in_all"] / len(compared)
    return view.reset_index()[VIEW_COLUMNS]


def with_ensemble_view(alpha: pd.DataFrame, agreement: pd.DataFrame, ranges: pd.DataFrame) -> pd.DataFrame:
    """The alpha table with the ensemble view's columns: 0 runs and NULL without ensemble runs, and
    a frequency of 0 for a feature no compared run had."""
    view = ensemble_view(agreement, ranges)
    n_runs = int(view["n_ensemble_runs"].iloc[0]) if len(view) else 0
    table = alpha.merge(view.drop(columns="n_ensemble_runs"), on="feature", how="left")
    table["n_ensemble_runs"] = n_runs
    table["all_models_top_k_frequency"] = table["all_models_top_k_frequency"].astype("float64")
    if n_runs:
        table["all_models_top_k_frequency"] = table["all_models_top_k_frequency"].fillna(0.0)
    table["mean_rank_gap"] = table["mean_rank_gap"].astype("float64")
    return table


def ensemble_line(metrics: pd.DataFrame, agreement: pd.DataFrame) -> str:
    """One line for the summary and `report`: each member's OOS rank IC and the average's, the
    Spearman agreement of their importances and the features in every member's top k."""
    if metrics.empty:
        return "Ensemble: none (the run fit one model; model_settings.ensemble adds others)"
    ics = ", ".join(
        f"{kind} {ic:+.4f}" for kind, ic in zip(metrics["model_kind"], metrics["oos_rank_ic"], strict=True)
    )
    line = f"Ensemble: OOS rank IC {ics}"
    if agreement.empty:
        return line
    shared = agreement.loc[agreement["in_all_top_k"].astype(bool), "feature"].tolist()
    spearman = float(agreement["rank_spearman"].iloc[0])
    k = int(agreement["k"].iloc[0])
    return (
        f"{line}; importance ranks agree with Spearman {spearman:+.2f}; in every model's top {k}: "
        f"{', '.join(shared) or 'none'}"
    )
