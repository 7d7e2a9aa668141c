"""Asset checks: data quality of the stored trades, sanity of the model, leakage, drift,
top-feature flips and the alpha monitor. Each judges the whole range of its run and records its
result on every daily partition of the range (check_results.py)."""

import dagster as dg
import numpy as np
import pandas as pd

from persistence_pipeline.assets.metadata import markdown_table
from persistence_pipeline.assets.stage import run_database
from persistence_pipeline.check_results import StageCheck, stage_check
from persistence_pipeline.core.changes import CHANGE_COLUMNS, material_top_changes
from persistence_pipeline.core.dataset import feature_columns
from persistence_pipeline.core.drift import feature_drift
from persistence_pipeline.core.leakage import failed_oos_check
from persistence_pipeline.core.metrics import judge_oos
from persistence_pipeline.core.monitor import monitor_summary
from persistence_pipeline.partitions import run_range, run_scope
from persistence_pipeline.resources import AnalysisSettings, CheckpointStore, ModelSettings, Warehouse
from persistence_pipeline.storage import cross_run, explanations, runs
from persistence_pipeline.storage.trade_store import trades_between

TOP_N = 3  # the top features whose flips warn


@stage_check(
    "trades",
    blocking=True,
    description=(
        "The stored trades of the range are usable: at least one, prices positive, exit not before entry, "
        "side +1/-1, every feature finite. Blocks the model when it fails."
    ),
)
def trades_are_valid(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
    window = run_range(context)
    stored = trades_between(run_database(context, warehouse), window.start, window.end)
    features = feature_columns(stored)
    values = stored[features].to_numpy(dtype="float64")
    problems = {
        "no trades in range": int(stored.empty),
        "non-positive price": int(((stored["entry_price"] <= 0) | (stored["exit_price"] <= 0)).sum()),
        "exit before entry": int((stored["exit_time"] < stored["entry_time"]).sum()),
        "side not +1/-1": int((~stored["side"].isin([1, -1])).sum()),
        "non-finite feature values": int((~np.isfinite(values)).sum()),
    }
    failed = {name: count for name, count in problems.items() if count}
    return dg.AssetCheckResult(
        passed=not failed,
        description="; ".join(f"{name}: {count}" for name, count in failed.items())
        or f"{len(stored)} trades valid",
        metadata={"n_trades": len(stored), "n_features": len(features), **problems},
    )


@stage_check(
    "trades",
    description=(
        "Warns about trades whose |return| exceeds analysis_settings.max_abs_trade_return (0.5): for daily "
        "strategies these are usually bad data (unadjusted splits, wrong prices, swapped sides), and "
        "they dominate every rank statistic."
    ),
)
def trades_have_plausible_returns(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, analysis_settings: AnalysisSettings
) -> dg.AssetCheckResult:
    window = run_range(context)
    stored = trades_between(run_database(context, warehouse), window.start, window.end)
    limit = analysis_settings.max_abs_trade_return
    implausible = stored[stored["return"].abs() > limit].sort_values("return", key=abs, ascending=False)
    shown = implausible[
        ["trade_id", "symbol", "entry_time", "exit_time", "entry_price", "exit_price", "return"]
    ]
    return dg.AssetCheckResult(
        passed=implausible.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"no trade has |return| > {limit:.0%}"
            if implausible.empty
            else f"{len(implausible)} trade(s) with |return| > {limit:.0%}, e.g. "
            + ", ".join(
                f"{trade} ({value:+.1%})"
                for trade, value in zip(shown["trade_id"].head(3), shown["return"].head(3), strict=True)
            )
        ),
        metadata={"max_abs_trade_return": limit, "implausible": markdown_table(shown, 20, "trades")},
    )


@stage_check(
    "profit_model",
    description=(
        "Every checkpoint the warehouse indexes (every run's, not only this one's) is on disk with the "
        "sha256 of the index: warns, naming the runs, when one was deleted or altered (it would be "
        "noticed only when a later stage loads it). Runs alone from the UI too (Checks, Execute)."
    ),
)
def checkpoints_are_intact(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, checkpoint_store: CheckpointStore
) -> dg.AssetCheckResult:
    index = runs.checkpoint_index(run_database(context, warehouse))
    pairs = zip(index["path"], index["sha256"], strict=True)
    index["problem"] = [checkpoint_store.problem(path, sha256) for path, sha256 in pairs]
    broken = index[index["problem"].notna()]
    named = ", ".join(
        f"{key} ({problem})" for key, problem in zip(broken["run_key"], broken["problem"], strict=True)
    )
    return dg.AssetCheckResult(
        passed=broken.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"all {len(index)} indexed checkpoints intact"
        if broken.empty
        else f"{len(broken)} of {len(index)} indexed checkpoints unusable: {named}; "
        "materialize those ranges again",
        metadata={
            "n_checkpoints": len(index),
            "broken": markdown_table(broken[["run_key", "path", "problem"]]),
        },
    )


@stage_check(
    "profit_model",
    description=(
        "The model has out-of-sample predictions and finite OOS metrics, and does not rank trades "
        "significantly worse than chance: it fails when the one-sided 99% upper bound of the OOS rank "
        "IC (standard error clustered by entry day, HAC over the holding period, at least clustered "
        "by symbol) is below zero. A negative OOS R^2 alone is normal "
        "for trade-return forecasts and is recorded as metadata, as is a thin OOS sample (fewer than "
        "200 trades, or a walk-forward cut to fewer folds than configured)."
    ),
)
def profit_model_is_sane(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, model_settings: ModelSettings
) -> dg.AssetCheckResult:
    run_key = run_scope(context, model_settings.kind).run_key
    db = run_database(context, warehouse)
    row = runs.run_metrics_row(db, run_key)
    if row is None:
        return dg.AssetCheckResult(passed=False, description=f"no run_metrics row for {run_key}")
    n_oos, ic, r2 = int(row["n_oos"]), float(row["oos_rank_ic"]), float(row["oos_r2"])
    oos = runs.oos_with_entry(db, run_key)
    judged = judge_oos(
        oos["prediction"].to_numpy(dtype="float64"),
        oos["realized"].to_numpy(dtype="float64"),
        oos["entry_time"],
        oos["exit_time"],
        oos["symbol"].to_numpy(),
        int(row["n_folds"]),
        model_settings.n_folds,
    )
    finite = bool(n_oos > 0 and np.isfinite(ic) and np.isfinite(r2))
    description = f"{n_oos} OOS trades, rank IC {ic:.4f}"
    if np.isfinite(judged.upper):
        description += f" (99% upper bound {judged.upper:+.4f}, {judged.n_days} entry days)"
    description += f", R^2 {r2:.4f}"
    if judged.below_zero:
        description += ": the model ranks trades significantly worse than chance"
    if judged.caveat:
        description += f" [{judged.caveat}]"
    return dg.AssetCheckResult(
        passed=finite and not judged.below_zero,
        severity=dg.AssetCheckSeverity.ERROR if not finite else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "n_oos": n_oos,
            "oos_rank_ic": float(ic) if np.isfinite(ic) else None,
            "oos_rank_ic_upper_99": judged.upper if np.isfinite(judged.upper) else None,
            "oos_entry_days": judged.n_days,
            "oos_r2": float(r2) if np.isfinite(r2) else None,
            "r2_below_zero": bool(np.isfinite(r2) and r2 < 0),
            "caveat": judged.caveat or "none",
        },
    )


@stage_check(
    "feature_importance",
    description=(
        "The low ends of the run's out-of-sample rank IC and hit rate (one-sided 99.9% intervals) are "
        "within what entry-time trade features plausibly reach (analysis_settings.max_plausible_oos_rank_ic, "
        "max_plausible_hit_rate); beyond, a leak that "
        "no single feature shows (an interaction) is likely, and the features with the largest OOS "
        "permutation importance are named."
    ),
)
def oos_performance_is_plausible(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, model_settings: ModelSettings
) -> dg.AssetCheckResult:
    run_key = run_scope(context, model_settings.kind).run_key
    db = run_database(context, warehouse)
    row = runs.run_metrics_row(db, run_key)
    if row is None:
        return dg.AssetCheckResult(passed=False, description=f"no run_metrics row for {run_key}")
    ic, hit = float(row["oos_rank_ic"]), float(row["oos_hit_rate"])
    # feature_importance judged it (core/leakage.implausible_performance) and stored the verdict
    problem = failed_oos_check(explanations.importance_history(db, [run_key], with_quarantined=True))
    return dg.AssetCheckResult(
        passed=problem is None,
        severity=dg.AssetCheckSeverity.ERROR,
        description=problem or f"OOS rank IC {ic:.4f}, hit rate {hit:.3f}: plausible",
        metadata={
            "oos_rank_ic": ic if np.isfinite(ic) else None,
            "oos_hit_rate": hit if np.isfinite(hit) else None,
        },
    )


@stage_check(
    "profit_model",
    description=(
        "No feature predicts the realized return implausibly well in sample: within side (and strategy), "
        "the low end of its rank IC's one-sided (1 - analysis_settings.leakage_level) interval, with a "
        "standard error clustered by entry day and HAC over the holding period, is above the ceiling "
        "(analysis_settings.leakage_max_abs_ic, 0.15, or the chance spread 2/sqrt(independent "
        "symbol x holding stretches), whichever is larger). Such features are likely "
        "computed after entry: profit_model quarantines them (table excluded_features) and this check "
        "fails with the evidence."
    ),
)
def no_leaky_features(
    context: dg.AssetCheckExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.AssetCheckResult:
    run_key = run_scope(context, model_settings.kind).run_key
    suspects = runs.excluded_features(run_database(context, warehouse), run_key)
    return dg.AssetCheckResult(
        passed=suspects.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"no feature's rank IC is confidently above {analysis_settings.leakage_max_abs_ic}"
            if suspects.empty
            else "possible leakage, left out of the model: "
            + ", ".join(f"{f} (IC {ic:+.3f})" for f, ic, _ in suspects.itertuples(index=False))
        ),
        metadata={"threshold": analysis_settings.leakage_max_abs_ic, "suspects": markdown_table(suspects)},
    )


@stage_check(
    "feature_importance",
    description=(
        "Feature drift against the last run that ended before this range starts (PSI per feature; warns "
        "above analysis_settings.drift_max_psi). Comparing with a run whose window overlaps this one would "
        "compare a window with itself."
    ),
)
def feature_drift_since_previous_run(
    context: dg.AssetCheckExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.AssetCheckResult:
    window = run_range(context)
    db = run_database(context, warehouse)
    previous = runs.previous_run(db, window.first_day, model_settings.kind)
    if previous is None:
        return dg.AssetCheckResult(
            passed=True, description="no earlier run ended before this range starts: nothing to compare with"
        )
    previous_start = pd.Timestamp(previous["range_start"]).tz_localize("UTC")
    previous_end = pd.Timestamp(previous["range_end"]).tz_localize("UTC") + pd.Timedelta(days=1)
    current_trades = trades_between(db, window.start, window.end)
    previous_trades = trades_between(db, previous_start, previous_end)
    features = feature_columns(current_trades)
    compared = [f for f in features if f in previous_trades and previous_trades[f].notna().any()]
    if not compared:
        return dg.AssetCheckResult(
            passed=True,
            description=f"the trades of {previous['run_key']} share no feature values with this range",
        )
    drift = feature_drift(previous_trades, current_trades, compared)
    drifted = drift[drift["psi"] > analysis_settings.drift_max_psi]
    not_compared = sorted(set(features) - set(compared))
    return dg.AssetCheckResult(
        passed=drifted.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"against {previous['run_key']}: "
            + (
                f"{len(drifted)} feature(s) with PSI > {analysis_settings.drift_max_psi}: "
                + ", ".join(drifted["feature"])
                if len(drifted)
                else f"no feature with PSI > {analysis_settings.drift_max_psi}"
            )
            + (f"; not compared (no earlier values): {', '.join(not_compared)}" if not_compared else "")
        ),
        metadata={"previous_run_key": str(previous["run_key"]), "psi": markdown_table(drift, 10, "features")},
    )


@stage_check(
    "feature_importance",
    description=(
        "Warns when a feature entered the top 3 in place of another by more than the bootstrap spread of "
        "their importances (mean |SHAP| gap > 2 x sqrt(sd_a^2 + sd_b^2), from shap_mean_abs_std), and "
        "names who moved by how much; flips within the spread are reported but do not warn."
    ),
)
def top_features_unchanged(
    context: dg.AssetCheckExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
) -> dg.AssetCheckResult:
    run_key = run_scope(context, model_settings.kind).run_key
    db = run_database(context, warehouse)
    changes = explanations.importance_changes(db, run_key)
    if changes.empty or changes["previous_run_key"].isna().all():
        return dg.AssetCheckResult(passed=True, description="first run of this kind: nothing to compare with")
    flips = material_top_changes(changes, explanations.importance_history(db, [run_key]), TOP_N)
    material = flips[flips["material"]]
    previous = str(changes["previous_run_key"].iloc[0])
    return dg.AssetCheckResult(
        passed=material.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"top {TOP_N} unchanged since {previous}"
            if flips.empty
            else f"top {TOP_N} changed since {previous} within the bootstrap spread of the importances: "
            + ", ".join(f"{r.entered} for {r.left}" for r in flips.itertuples())
            if material.empty
            else f"top {TOP_N} flipped since {previous}: "
            + "; ".join(
                f"{r.entered} replaced {r.left} (mean |SHAP| {r.gap:+.3g} above it, spread {r.spread:.3g})"
                if pd.notna(r.gap)
                else f"{r.entered} replaced {r.left} (no longer a feature)"
                for r in material.itertuples()
            )
        ),
        metadata={
            "previous_run_key": previous,
            "flips": markdown_table(flips) if len(flips) else "none",
            "changes": markdown_table(changes[CHANGE_COLUMNS], 10, "features"),
        },
    )


MONITOR_SHOWN = [
    "feature",
    "ic_before",
    "ic_recent",
    "ic_change",
    "ic_change_t",
    "ic_change_q_value",
    "n_recent_periods",
    "broken_down",
]


@stage_check(
    "feature_alpha",
    description=(
        "The alpha monitor: warns when the trade-weighted IC of a monitored feature (the top_k by |mean IC| "
        "x sqrt(trades), and every feature whose mean IC is significant) over the last "
        "analysis_settings.monitor_recent_periods weeks (8) is significantly weaker than over the weeks "
        "before: a Newey-West test of the change, Benjamini-Hochberg q < "
        "analysis_settings.monitor_level (1%) over the monitored features. Names each feature with its IC "
        "before and now; the table of every monitored feature is in the metadata."
    ),
)
def alpha_has_not_broken_down(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse, model_settings: ModelSettings
) -> dg.AssetCheckResult:
    run_key = run_scope(context, model_settings.kind).run_key
    alpha = cross_run.feature_alpha_rows(run_database(context, warehouse), run_key)
    monitored = alpha[alpha["monitored"].fillna(False).astype(bool)].sort_values(
        ["ic_change_q_value", "feature"], kind="stable"
    )
    broken = monitored[monitored["broken_down"].astype(bool)]
    return dg.AssetCheckResult(
        passed=broken.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=monitor_summary(alpha),
        metadata={
            "n_monitored": len(monitored),
            "broken_down": ", ".join(broken["feature"]) or "none",
            "monitored": markdown_table(monitored[MONITOR_SHOWN]) if len(monitored) else "none",
        },
    )


STAGE_CHECKS: list[StageCheck] = [
    trades_are_valid,
    trades_have_plausible_returns,
    profit_model_is_sane,
    checkpoints_are_intact,
    no_leaky_features,
    oos_performance_is_plausible,
    feature_drift_since_previous_run,
    top_features_unchanged,
    alpha_has_not_broken_down,
]
