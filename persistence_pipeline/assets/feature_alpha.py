"""Stage 4b: which features carry persistent alpha and which decay, as of this range's end."""

import dagster as dg

from persistence_pipeline.assets.metadata import markdown_table, run_result
from persistence_pipeline.assets.stage import STAGE, finish, run_database, user_errors_fail_the_step
from persistence_pipeline.core.alpha import alpha_note, alpha_table, suspected_leaks_note, with_leak_flags
from persistence_pipeline.core.design import model_design, stored_feature
from persistence_pipeline.core.ensemble import with_ensemble_view
from persistence_pipeline.core.evidence import feature_evidence, period_ic, redundant_aliases, series_note
from persistence_pipeline.core.monitor import alerts, alpha_monitor
from persistence_pipeline.partitions import run_scope
from persistence_pipeline.resources import AnalysisSettings, ModelSettings, Warehouse
from persistence_pipeline.storage import cross_run, explanations, runs, trade_store

SHOWN = [
    "feature",
    "alpha_score",
    "ic_mean",
    "ic_ci_low",
    "ic_ci_high",
    "ic_q_value",
    "ic_verdict",
    "n_periods",
    "persistence",
    "decay_verdict",
    "decay_mde",
    "half_life_days",
]
INDICATORS_SHOWN = ["feature", "pooled_ic_mean", "pooled_ic_ci_low", "pooled_ic_ci_high", "pooled_ic_p_value"]


ENSEMBLE_SHOWN = [
    "feature",
    "alpha_score",
    "ic_q_value",
    "n_ensemble_runs",
    "all_models_top_k_frequency",
    "mean_rank_gap",
]


@dg.asset(
    **STAGE,
    deps=[dg.AssetKey("trades"), dg.AssetKey("feature_importance"), dg.AssetKey("feature_stability")],
    group_name="cross_run",
    kinds={"duckdb"},
    description="Per feature as of the range end, from the distinct trades stored by then: the IC "
    "per period (weeks, or longer for a sparse log) within side x strategy cells, its mean with a "
    "Newey-West interval, t, p and Benjamini-Hochberg q, a HAC trend test of decay, continuous "
    "persistence, the alpha score in [0, 1] and the smallest effects each test could detect, with "
    "'cannot tell' where the data are too thin (formulas in the docs); the side and strategy "
    "indicators reported apart with their pooled IC; with the runs' importance share, top-k "
    "stability and importance-performance correlation beside it; and the alpha monitor: whether "
    "the IC of the last periods has broken down against the periods before, for the top-k "
    "features by mean IC and every significant one; with an ensemble, the share of runs in which "
    "every model ranked a feature in its top k.",
)
@user_errors_fail_the_step
def feature_alpha(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.MaterializeResult:
    scope, db = run_scope(context, model_settings.kind), run_database(context, warehouse)
    stored = runs.runs_as_of(db, scope.window.last_day, model_settings.kind)
    importance = explanations.importance_history(db, stored["run_key"].tolist())
    design = model_settings.design_params()
    names = sorted(importance["feature"].unique())
    stored_features = sorted({f for f in (stored_feature(n, design) for n in names) if f is not None})
    modelled = model_design(
        trade_store.trades_entered_before(
            db, scope.window.end, stored_features, stored[["range_start", "range_end"]]
        ),
        stored_features,
        design,
    )
    features = [n for n in names if n in set(modelled.features)]  # as every run's model saw them
    params = analysis_settings.evidence_params()
    series = period_ic(modelled.trades, features, params, scope.window.end)
    evidence = feature_evidence(
        series, params, redundant_aliases(modelled.trades[features].to_numpy(dtype="float64"), features)
    )
    monitor = alpha_monitor(
        series, evidence.set_index("feature")["ic_q_value"], analysis_settings.monitor_params()
    )
    table = alpha_table(
        evidence.merge(monitor, on="feature"),
        importance,
        stored[["run_key", "range_start", "range_end"]],
        stored.set_index("run_key")["oos_rank_ic"],
        cross_run.feature_stability_rows(db, scope.run_key).set_index("feature")["topk_frequency"],
    )
    table = with_leak_flags(
        table, explanations.importance_history(db, stored["run_key"].tolist(), with_quarantined=True)
    )
    table = with_ensemble_view(
        table,
        explanations.model_agreement(db, stored["run_key"].tolist()),
        stored[["run_key", "range_start", "range_end"]],
    )
    cross_run.write_alpha(db, scope.run_key, table, series.long())
    finish(context, db, scope.run_key)
    note = alpha_note(table, len(stored), scope.window.last_day)
    context.log.info(f"{scope.run_key}: alpha of {len(table)} features; {note}")
    alert = alerts(table)
    if alert != "none":
        context.log.warning(f"{scope.run_key}: alpha broken down: {alert}")
    return run_result(
        context,
        scope.run_key,
        {
            "n_runs": len(stored),
            "note": note,
            "evidence_series": series_note(series),
            "top_alpha": markdown_table(table.loc[~table["indicator"], SHOWN], 10, "features"),
            "side_and_strategy": markdown_table(
                table.loc[table["indicator"], INDICATORS_SHOWN], 10, "indicators"
            )
            if table["indicator"].any()
            else "one side and one strategy: no indicator",
            "decaying": ", ".join(table.loc[table["decaying"], "feature"]) or "none",
            "suspected_leaks": suspected_leaks_note(table) if table["suspected_leak"].any() else "none",
            "alpha_alerts": alert,
            "ensemble_view": markdown_table(table[ENSEMBLE_SHOWN], 10, "features")
            if table["n_ensemble_runs"].max() > 0
            else "no ensemble run among the runs read (model_settings.ensemble)",
            "dagster/row_count": len(table),
        },
    )
