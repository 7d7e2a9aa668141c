"""The importance stage's core: one call, `explain`, takes a run's checkpoint and the trades it was
trained on and returns everything the stage stores: per-feature importance with spreads and groups
of correlated features, leak suspicion, per-segment importance, interactions (trees), each ensemble
member's importance and their agreement, and what changed since the previous run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from persistence_pipeline.core.changes import rank_changes
from persistence_pipeline.core.correlation import correlated_groups
from persistence_pipeline.core.dataset import TrainingSet
from persistence_pipeline.core.ensemble import MEMBER_COLUMNS, explain_member, rank_agreement
from persistence_pipeline.core.importance import (
    ImportanceParams,
    explainer_name,
    importance_table,
    segment_importance,
    top_interactions,
)
from persistence_pipeline.core.leakage import implausible_performance, leak_suspicion
from persistence_pipeline.core.training import Checkpoint


@dataclass(frozen=True)
class ExplainParams:
    importance: ImportanceParams
    correlation_threshold: float = 0.7
    max_plausible_oos_rank_ic: float = 0.3
    max_plausible_hit_rate: float = 0.7
    top_k: int = 10


@dataclass(frozen=True)
class PreviousRun:
    """The run this one is compared with (core/changes.py) and its importance rows."""

    run_key: str
    importance: pd.DataFrame


@dataclass(frozen=True)
class ExplainedRun:
    importance: pd.DataFrame  # feature_importance_history rows (with groups and leak suspicion)
    shap_sample_size: int
    explainer: str
    segments: pd.DataFrame
    interactions: pd.DataFrame
    members: pd.DataFrame  # ensemble_importance rows (none for a run of one model)
    agreement: pd.DataFrame  # model_agreement rows
    changes: pd.DataFrame
    previous_run_key: str | None


def trained_set(data: TrainingSet, checkpoint: Checkpoint, run_key: str) -> TrainingSet:
    """The trades and features the checkpoint was trained on, or an error if the stored trades changed."""
    if data.trades["trade_id"].tolist() != checkpoint.train_trade_ids or not set(checkpoint.features) <= set(
        data.features
    ):
        raise ValueError(
            f"the stored trades of {run_key} changed after its model was trained, or its checkpoint is from "
            "an earlier model design: re-materialize profit_model"
        )
    return data.without([f for f in data.features if f not in checkpoint.features])


def trade_segments(trades: pd.DataFrame) -> dict[str, np.ndarray]:
    """The segments whose importances are stored apart: each strategy, and each side."""
    strategy = trades["strategy"].astype(str).to_numpy()
    segments = {f"strategy={name}": strategy == name for name in sorted(set(strategy))}
    side = trades["side"].to_numpy()
    segments.update({"side=long": side > 0, "side=short": side < 0})
    return segments


def by_segment(segments: pd.DataFrame, top: int) -> str:
    """The `top` features of each segment, as markdown."""
    lines = []
    for name, rows in segments.groupby("segment", sort=True):
        leaders = rows.dropna(subset=["rank"]).sort_values("rank").head(top)
        shown = ", ".join(
            f"{f} (IC {ic:+.3f})" for f, ic in zip(leaders["feature"], leaders["ic"], strict=True)
        )
        lines.append(f"- **{name}** ({int(rows['n_trades'].iloc[0])} trades): {shown}")
    return "\n".join(lines) or "none"


def member_importance(
    checkpoint: Checkpoint, kind: str, table: pd.DataFrame, data: TrainingSet, params: ImportanceParams
) -> pd.DataFrame:
    """ensemble_importance rows: the run model's (from its importance `table`) and each other
    member's (core/ensemble.py: explained on the same trades and folds); none for a run of one model."""
    if not checkpoint.members:
        return pd.DataFrame(columns=["model_kind", *MEMBER_COLUMNS])
    tables = [table[MEMBER_COLUMNS].assign(model_kind=kind)]
    for other_kind, member in checkpoint.members.items():
        other = explain_member(
            member.model,
            member.fold_models,
            checkpoint.folds,
            data.X,
            data.y,
            data.features,
            params,
            checkpoint.quarantined,
        )
        tables.append(other.assign(model_kind=other_kind))
    return pd.concat(tables, ignore_index=True)[["model_kind", *MEMBER_COLUMNS]]


def explain(
    checkpoint: Checkpoint,
    data: TrainingSet,
    kind: str,
    params: ExplainParams,
    run_metrics: pd.Series,
    previous: PreviousRun | None,
) -> ExplainedRun:
    """The importance stage of one run on the trades its checkpoint was trained on (`trained_set`);
    `run_metrics`: the run's row (its OOS figures judge whether the run looks too good)."""
    X, y, features = data.X, data.y, data.features
    correlation = correlated_groups(X, features, params.correlation_threshold)
    table, shap_n = importance_table(
        checkpoint.model,
        checkpoint.fold_models,
        checkpoint.folds,
        X,
        y,
        features,
        params.importance,
        checkpoint.prior,
        checkpoint.sample_weight,
        correlation["group_id"].to_numpy(),
        checkpoint.quarantined,
    )
    table = table.merge(correlation, on="feature")
    implausible = implausible_performance(
        run_metrics, table, params.max_plausible_oos_rank_ic, params.max_plausible_hit_rate
    )
    table = table.merge(leak_suspicion(table, implausible), on="feature")
    members = member_importance(checkpoint, kind, table, data, params.importance)
    segments = segment_importance(
        checkpoint.model,
        X,
        y,
        features,
        trade_segments(data.trades),
        params.importance,
        checkpoint.quarantined,
    )
    earlier = previous.importance if previous is not None else table.iloc[0:0]
    return ExplainedRun(
        importance=table,
        shap_sample_size=shap_n,
        explainer=explainer_name(checkpoint.model),
        segments=segments,
        interactions=top_interactions(checkpoint.model, X, features, params.importance),
        members=members,
        agreement=rank_agreement(members, params.top_k) if len(members) else pd.DataFrame(),
        changes=rank_changes(earlier, table[~table["quarantined"]], params.top_k),
        previous_run_key=previous.run_key if previous is not None else None,
    )
