"""Ensemble alpha: several model kinds fit in ONE run, on the same trades and the same purged
walk-forward folds, and how far they agree on which features matter.

- Members: the run's model (`model_settings.kind`: the one whose priors, importance history,
  stability, alpha and sizing the run stores, as without an ensemble) and every kind in
  `model_settings.ensemble`. The other members are fit cold (no priors: a prior is a ridge
  coefficient, and a ridge member beside trees would need a prior history of its own), with the same
  curriculum weights and the same leak screen, so the members differ by their model kind alone.
- The ensemble's prediction of a trade is the equal-weight average of the members' walk-forward
  out-of-sample predictions of it (every member predicts it from the same fold's training trades).
  Nothing is fitted on the OOS predictions: a stacked combination would need a walk-forward of its
  own over the few folds' predictions to stay out of sample, and an average has nothing to overfit.
- Agreement, per run: each feature's importance rank under each member (mean |SHAP|, 1 = strongest,
  as in `feature_importance_history`), the gap between its best and worst rank, whether it is in
  EVERY member's top k and in ANY member's; and the Spearman correlation between the members' rank
  vectors over the ranked features (the mean over pairs when there are more than two members).
- Across runs (`ensemble_view`, feature_alpha's columns): the share of the runs with an ensemble in
  which a feature was in every member's top k, and its mean rank gap. A feature that the ridge and
  the trees both rank high, run after run, is a property of the trades, not of one model's form.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from persistence_pipeline.core.metrics import out_of_sample_metrics

ENSEMBLE = "ensemble"  # the model_kind of the ensemble's rows in ensemble_predictions/_metrics
AGREEMENT_COLUMNS = [
    "feature",
    "n_models",
    "rank_min",
    "rank_max",
    "rank_gap",
    "in_all_top_k",
    "in_any_top_k",
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


def ensemble_prediction(predictions: Mapping[str, np.ndarray]) -> np.ndarray:
    """The equal-weight average of the members' predictions of the same trades."""
    return np.mean(np.vstack([np.asarray(p, dtype="float64") for p in predictions.values()]), axis=0)


def ensemble_metrics(predictions: Mapping[str, np.ndarray], realized: np.ndarray) -> pd.DataFrame:
    """Out-of-sample metrics of each member and of their average (core/metrics.py), one row each,
    with the weight of each member in the average (NULL on the ensemble's row)."""
    weight = 1.0 / len(predictions)
    rows = [
        {"model_kind": kind, "weight": weight, **_metrics(prediction, realized)}
        for kind, prediction in predictions.items()
    ]
    rows.append(
        {"model_kind": ENSEMBLE, "weight": np.nan, **_metrics(ensemble_prediction(predictions), realized)}
    )
    return pd.DataFrame(rows)


def _metrics(prediction: np.ndarray, realized: np.ndarray) -> dict[str, float]:
    m = out_of_sample_metrics(np.asarray(prediction, dtype="float64"), np.asarray(realized, dtype="float64"))
    return {("n_oos" if name == "n_oos" else f"oos_{name}"): value for name, value in vars(m).items()}


def rank_spearman(ranks: pd.DataFrame) -> float:
    """Spearman correlation of the members' importance ranks (a feature-by-member frame) over the
    features every member ranked; the mean over pairs of members; NaN below 3 common features."""
    common = ranks.dropna().astype("float64").rank()
    if len(common) < 3 or common.shape[1] < 2:
        return float("nan")
    pairs = [np.corrcoef(common[a], common[b])[0, 1] for a, b in itertools.combinations(common.columns, 2)]
    return float(np.mean(pairs))


def rank_agreement(ranks: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """Per feature (AGREEMENT_COLUMNS), from `ranks` (model_kind, feature, rank; a quarantined
    feature has no rank): how the members rank it and whether it is in every member's top k, with
    the run's Spearman agreement repeated on every row; by best worst rank, then name."""
    wide = ranks.pivot(index="feature", columns="model_kind", values="rank").astype("float64")
    ranked = wide.notna().all(axis=1)
    top = (wide <= top_k) & wide.notna()
    table = pd.DataFrame(
        {
            "feature": wide.index,
            "n_models": wide.notna().sum(axis=1).astype("int64").to_numpy(),
            "rank_min": wide.min(axis=1).to_numpy(),
            "rank_max": wide.max(axis=1).to_numpy(),
            "in_all_top_k": (top.all(axis=1) & ranked).to_numpy(),
            "in_any_top_k": top.any(axis=1).to_numpy(),
        }
    )
    table["rank_gap"] = (table["rank_max"] - table["rank_min"]).where(ranked.to_numpy())
    table["rank_spearman"] = rank_spearman(wide)
    table = table.sort_values(["rank_max", "rank_min", "feature"], na_position="last", kind="stable")
    for column in ("rank_min", "rank_max", "rank_gap"):
        table[column] = table[column].astype("Int64")
    return table[AGREEMENT_COLUMNS].reset_index(drop=True)


def ensemble_view(agreement: pd.DataFrame) -> pd.DataFrame:
    """Per feature over the runs with an ensemble (`agreement`: model_agreement rows of those runs):
    in how many it was ranked by every member, the share of them in which it was in every member's
    top k, and its mean rank gap (VIEW_COLUMNS)."""
    ranked = agreement[agreement["rank_gap"].notna()]
    if ranked.empty:
        return pd.DataFrame(columns=VIEW_COLUMNS)
    view = ranked.groupby("feature", sort=True).agg(
        n_ensemble_runs=("run_key", "nunique"),
        all_models_top_k_frequency=("in_all_top_k", "mean"),
        mean_rank_gap=("rank_gap", "mean"),
    )
    return view.reset_index()[VIEW_COLUMNS]


def with_ensemble_view(alpha: pd.DataFrame, agreement: pd.DataFrame) -> pd.DataFrame:
    """The alpha table with the ensemble view's columns (0 runs and NULL for a feature no ensemble
    ranked)."""
    view = ensemble_view(agreement) if len(agreement) else pd.DataFrame(columns=VIEW_COLUMNS)
    table = alpha.merge(view, on="feature", how="left")
    table["n_ensemble_runs"] = table["n_ensemble_runs"].fillna(0).astype("int64")
    for column in ("all_models_top_k_frequency", "mean_rank_gap"):
        table[column] = table[column].astype("float64")
    return table


def ensemble_line(metrics: pd.DataFrame, agreement: pd.DataFrame) -> str:
    """One line for the summary and `report`: each member's OOS rank IC and the average's, the
    Spearman agreement of their importance ranks and the features in every member's top k."""
    if metrics.empty:
        return "Ensemble: one model (model_settings.ensemble is empty)"
    ics = ", ".join(
        f"{kind} {ic:+.4f}" for kind, ic in zip(metrics["model_kind"], metrics["oos_rank_ic"], strict=True)
    )
    line = f"Ensemble: OOS rank IC {ics}"
    if agreement.empty:
        return line
    shared = agreement.loc[agreement["in_all_top_k"].astype(bool), "feature"].tolist()
    spearman = float(agreement["rank_spearman"].iloc[0])
    return (
        f"{line}; importance ranks agree with Spearman {spearman:+.2f}; in every model's top k: "
        f"{', '.join(shared) or 'none'}"
    )
