"""Stage 3: per-feature importance of the range's model, with its spread, the groups of correlated
features and what changed since the previous run; appended to `feature_importance_history`. With an
ensemble, each other member's importance and how far the members' ranks agree."""

import dagster as dg
import numpy as np
import pandas as pd

from persistence_pipeline.assets.metadata import markdown_table, run_result, timed
from persistence_pipeline.assets.profit_model import profit_model
from persistence_pipeline.assets.stage import STAGE, finish, run_database, user_errors_fail_the_step
from persistence_pipeline.core.changes import describe_changes, importance_changes
from persistence_pipeline.core.correlation import correlated_groups
from persistence_pipeline.core.dataset import TrainingSet, training_set
from persistence_pipeline.core.ensemble import MEMBER_COLUMNS, explain_member, rank_agreement
from persistence_pipeline.core.importance import (
    ImportanceParams,
    explainer_name,
    segment_importance,
    top_interactions,
)
from persistence_pipeline.core.importance import feature_importance as importance_table
from persistence_pipeline.core.leakage import implausible_performance, leak_suspicion
from persistence_pipeline.core.model import Fold, RidgePrior
from persistence_pipeline.partitions import run_scope
from persistence_pipeline.resources import AnalysisSettings, CheckpointStore, ModelSettings, Warehouse
from persistence_pipeline.storage import history, runs
from persistence_pipeline.storage.trades import trades_between

SHOWN = [
    "rank",
    "feature",
    "shap_mean_abs",
    "shap_mean_abs_std",
    "coef",
    "coef_std",
    "perm_importance",
    "perm_importance_std",
    "ic",
    "group_id",
    "group_size",
    "group_shap_mean_abs",
]
GROUP_SHOWN = ["group_id", "feature", "rank", "shap_mean_abs", "group_shap_mean_abs", "max_abs_corr"]


def trained_set(data: TrainingSet, checkpoint: dict, run_key: str) -> TrainingSet:
    """The trades and features the checkpoint was trained on, or an error if the stored trades changed."""
    if data.trades["trade_id"].tolist() != checkpoint["train_trade_ids"] or not set(
        checkpoint["features"]
    ) <= set(data.features):
        raise ValueError(
            f"the stored trades of {run_key} changed after its model was trained, or its checkpoint is from "
            "an earlier model design: re-materialize profit_model"
        )
    return data.without([f for f in data.features if f not in checkpoint["features"]])


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
    checkpoint: dict,
    kind: str,
    table: pd.DataFrame,
    folds: list[Fold],
    data: TrainingSet,
    params: ImportanceParams,
) -> pd.DataFrame:
    """ensemble_importance rows: the run model's (from its importance `table`) and each other
    member's of the checkpoint (core/ensemble.py: explained on the same trades and folds); none for
    a run of one model."""
    others = checkpoint.get("members") or {}
    if not others:
        return pd.DataFrame(columns=["model_kind", *MEMBER_COLUMNS])
    tables = [table[MEMBER_COLUMNS].assign(model_kind=kind)]
    for other_kind, member in others.items():
        other = explain_member(
            member["model"],
            member["fold_models"],
            folds,
            data.X,
            data.y,
            data.features,
            params,
            checkpoint.get("quarantined"),
        )
        tables.append(other.assign(model_kind=other_kind))
    return pd.concat(tables, ignore_index=True)[["model_kind", *MEMBER_COLUMNS]]


def checkpoint_prior(checkpoint: dict) -> RidgePrior | None:
    """The prior the checkpoint's model was shrunk toward (None: cold start or trees)."""
    if checkpoint.get("prior_mean_raw") is None:  # cold, trees, or a checkpoint from before raw priors
        return None
    return RidgePrior(checkpoint["prior_mean_raw"], checkpoint["prior_sd_raw"])


@dg.asset(
    **STAGE,
    deps=[profit_model],
    group_name="model",
    kinds={"shap", "duckdb"},
    description="Per feature: standardized coefficient and mean |SHAP| with bootstrap spreads, out-of-sample "
    "permutation importance (mean, std), univariate IC, rank, and its group of correlated features; "
    "`importance_changes` against the previous run. Replaces the run's rows in one transaction.",
)
@user_errors_fail_the_step
def feature_importance(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    checkpoint_store: CheckpointStore,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.MaterializeResult:
    scope, db = run_scope(context, model_settings.kind), run_database(context, warehouse)
    checkpoint = checkpoint_store.load(*runs.checkpoint_of(db, scope.run_key))
    stored = trades_between(db, scope.window.start, scope.window.end)
    data = trained_set(
        training_set(
            stored,
            scope.window.end,
            model_settings.design_params(),
            cost=checkpoint.get("label_cost", 0.0),  # the model's labels' (none before costs existed)
        ),
        checkpoint,
        scope.run_key,
    )
    folds = [
        Fold(train, test)
        for train, test in zip(checkpoint["fold_train"], checkpoint["fold_test"], strict=True)
    ]
    params = model_settings.importance_params()
    with timed(
        context.log,
        f"importance of {len(data.features)} features ({params.perm_repeats} permutation repeats, "
        f"{params.bootstrap_rounds} bootstrap rounds)",
    ):
        correlation = correlated_groups(data.X, data.features, model_settings.correlation_threshold)
        table, shap_n = importance_table(
            checkpoint["model"],
            checkpoint["fold_models"],
            folds,
            data.X,
            data.y,
            data.features,
            params,
            checkpoint_prior(checkpoint),
            checkpoint["sample_weight"],
            correlation["group_id"].to_numpy(),
            checkpoint.get("quarantined"),
        )
    table = table.merge(correlation, on="feature")
    metrics = runs.run_metrics_row(db, scope.run_key)
    if metrics is None:
        raise RuntimeError(f"no run_metrics row for {scope.run_key}: materialize profit_model first")
    implausible = implausible_performance(
        metrics,
        table,
        analysis_settings.max_plausible_oos_rank_ic,
        analysis_settings.max_plausible_hit_rate,
    )
    table = table.merge(leak_suspicion(table, implausible), on="feature")
    others = list(checkpoint.get("members") or [])
    with timed(context.log, f"importance of the other ensemble members: {', '.join(others) or 'none'}"):
        members = member_importance(checkpoint, model_settings.kind, table, folds, data, params)
    agreement = rank_agreement(members, analysis_settings.top_k) if len(members) else pd.DataFrame()
    segments = segment_importance(
        checkpoint["model"],
        data.X,
        data.y,
        data.features,
        trade_segments(data.trades),
        params,
        checkpoint.get("quarantined"),
    )
    with timed(context.log, "SHAP interaction values (trees only)"):
        interactions = top_interactions(checkpoint["model"], data.X, data.features, params)
    earlier = runs.runs_as_of(db, scope.window.last_day, model_settings.kind)
    earlier = earlier[earlier["run_key"] != scope.run_key]
    previous_key = str(earlier["run_key"].iloc[-1]) if len(earlier) else None
    previous = history.importance_history(db, [previous_key]) if previous_key else table.iloc[0:0]
    changes = importance_changes(previous, table[~table["quarantined"]], analysis_settings.top_k)
    explainer = explainer_name(checkpoint["model"])
    history.write_importance(
        db,
        scope.run_key,
        scope.window.last_day,
        table,
        changes,
        previous_key,
        explainer,
        shap_n,
        interactions,
        segments,
        (members, agreement) if len(members) else None,
    )
    finish(context, db, scope.run_key)
    context.log.info(
        f"{scope.run_key}: importance of {len(table)} features, SHAP by {explainer} on {shap_n} trades"
    )
    groups = table[table["group_size"] > 1].sort_values(["group_id", "rank"])
    return run_result(
        context,
        scope.run_key,
        {
            "what_changed": dg.MetadataValue.md(
                describe_changes(changes, previous_key, analysis_settings.top_k)
            ),
            "n_features": len(table),
            "explainer": explainer,
            "shap_sample_size": shap_n,
            "perm_repeats": params.perm_repeats,
            "bootstrap_rounds": params.bootstrap_rounds,
            "top_features": markdown_table(table[SHOWN], 15, "features"),
            "correlated_groups": markdown_table(groups[GROUP_SHOWN], 30, "features")
            if len(groups)
            else "no two features correlate above the threshold",
            "by_segment": dg.MetadataValue.md(by_segment(segments, 5)),
            "top_interactions": markdown_table(interactions, params.interaction_top, "pairs")
            if len(interactions)
            else "none: a linear model has no interactions (use model_settings.kind = gbt)",
            "model_agreement": markdown_table(agreement, 15, "features") if len(agreement) else "one model",
            "dagster/row_count": len(table),
        },
    )
