"""Stage 5: what the next run starts from: EMA priors of the coefficients and curriculum weights per regime."""

import dagster as dg

from persistence_pipeline.assets.feature_importance import feature_importance
from persistence_pipeline.assets.metadata import markdown_table
from persistence_pipeline.core.dataset import training_set
from persistence_pipeline.core.priors import ema_priors, regime_weights, regimes, volatility_cuts
from persistence_pipeline.partitions import daily_partitions, run_range, single_run_backfill
from persistence_pipeline.resources import WAREHOUSE_POOL, AnalysisSettings, ModelSettings, Warehouse


@dg.asset(
    deps=[feature_importance],
    partitions_def=daily_partitions,
    backfill_policy=single_run_backfill,
    pool=WAREHOUSE_POOL,
    group_name="cross_run",
    kinds={"duckdb"},
    description="EMA priors of standardized coefficients over the runs as of the range end (prior strength grows "
    "with the runs), and `regime_weights`: bounded sample weights per volatility-tercile x trend regime from this "
    "run's out-of-sample error. The next profit_model run starts from both.",
)
def feature_priors(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.MaterializeResult:
    window = run_range(context)
    run_key = window.run_key(model_settings.kind)
    runs = warehouse.runs_as_of(window.last_day, model_settings.kind)
    history = warehouse.importance_history(runs)
    coef_by_run = history.pivot(index="run_key", columns="feature", values="coef").reindex(runs["run_key"])
    priors = ema_priors(coef_by_run.dropna(axis=1, how="all"), analysis_settings.prior_params())
    curriculum = analysis_settings.curriculum_params()
    data = training_set(warehouse.trades_between(window.start, window.end), window.end)
    notes = [
        f"priors over {len(runs)} run(s)"
        if len(priors)
        else "no priors: the model has no coefficients (trees)"
    ]
    weights = None
    if {curriculum.volatility_feature, curriculum.trend_feature} <= set(data.features):
        oos = warehouse.query(
            "SELECT trade_id, prediction, realized FROM oos_predictions WHERE run_key = ?", [run_key]
        )
        cuts = volatility_cuts(data.trades[curriculum.volatility_feature])
        scored = data.trades.merge(oos, on="trade_id")
        labels = regimes(scored[curriculum.volatility_feature], scored[curriculum.trend_feature], cuts)
        weights = regime_weights(
            labels, scored["prediction"].to_numpy(), scored["realized"].to_numpy(), curriculum
        ).assign(
            volatility_feature=curriculum.volatility_feature,
            trend_feature=curriculum.trend_feature,
            volatility_cut_low=cuts[0],
            volatility_cut_high=cuts[1],
            as_of_run_key=run_key,
        )
        notes.append(f"regime weights from {int(weights['n_oos'].sum())} OOS trades")
    else:
        notes.append(
            f"no curriculum: {curriculum.volatility_feature!r} or {curriculum.trend_feature!r} is not a feature"
        )
    with warehouse.transaction() as con:
        warehouse.replace_run_rows(
            con, "feature_priors", "as_of_run_key", run_key, priors.assign(as_of_run_key=run_key)
        )
        if weights is not None:
            warehouse.replace_run_rows(con, "regime_weights", "as_of_run_key", run_key, weights)
        else:
            con.execute("DELETE FROM regime_weights WHERE as_of_run_key = ?", [run_key])
    context.log.info(f"{run_key}: " + "; ".join(notes))
    largest = priors.reindex(priors["prior_coef"].abs().sort_values(ascending=False).index)
    return dg.MaterializeResult(
        metadata={
            "as_of_run_key": run_key,
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes)),
            "prior_strength": float(priors["prior_strength"].max()) if len(priors) else None,
            "largest_priors": markdown_table(largest, 10, "features"),
            "regime_weights": markdown_table(weights[["regime", "n_oos", "oos_error", "weight"]])
            if weights is not None
            else "none",
            "dagster/row_count": len(priors),
        }
    )
