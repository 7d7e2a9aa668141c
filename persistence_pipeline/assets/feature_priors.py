"""Stage 5: what the next run starts from: empirical-Bayes priors of the coefficients (raw units,
pooled over the runs that share no trades) and curriculum weights per regime."""

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.metadata import markdown_table, run_result
from persistence_pipeline.assets.stage import (
    STAGE,
    finish,
    run_database,
    training_data,
    user_errors_fail_the_step,
)
from persistence_pipeline.core.priors import (
    CurriculumParams,
    empirical_bayes_priors,
    oos_regime_weights,
    restated_priors,
)
from persistence_pipeline.core.sizing import label_cost
from persistence_pipeline.core.stability import non_overlapping_runs
from persistence_pipeline.partitions import run_scope
from persistence_pipeline.resources import AnalysisSettings, ModelSettings, Warehouse
from persistence_pipeline.storage import cross_run, explanations, runs


def curriculum_note(weights: pd.DataFrame | None, curriculum: CurriculumParams) -> str:
    if weights is None:
        missing = f"{curriculum.volatility_feature!r} or {curriculum.trend_feature!r}"
        return f"no curriculum: {missing} is not a feature"
    return f"regime weights from {int(weights['n_oos'].sum())} OOS trades"


@dg.asset(
    **STAGE,
    deps=[dg.AssetKey("feature_importance")],
    group_name="cross_run",
    kinds={"duckdb"},
    description="Empirical-Bayes priors of the coefficients in raw units (precision-weighted over the "
    "runs as of the range end whose windows do not overlap, with the between-run spread), and "
    "`regime_weights`: bounded sample weights per volatility-tercile x trend regime from this run's "
    "out-of-sample error, shrunk by the regime's trades. The next profit_model run starts from both.",
)
@user_errors_fail_the_step
def feature_priors(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings,
) -> dg.MaterializeResult:
    scope, db = run_scope(context, model_settings.kind), run_database(context, warehouse)
    stored = runs.runs_as_of(db, scope.window.last_day, model_settings.kind)
    pooled = non_overlapping_runs(stored)
    importance = explanations.importance_history(db, pooled)
    order = {key: i for i, key in enumerate(stored["run_key"])}
    importance = importance.sort_values("run_key", key=lambda keys: keys.map(order), kind="stable")
    # the model's labels are net of the costs it was trained with
    cost = label_cost(stored.set_index("run_key")["cost_bps"].get(scope.run_key))
    data = training_data(db, scope.window, model_settings.design_params(), cost)
    priors = restated_priors(
        empirical_bayes_priors(importance, analysis_settings.prior_params()),
        data.trades[data.features].std(ddof=0),
        float(data.y.var()),
    )
    curriculum = analysis_settings.curriculum_params()
    weights = oos_regime_weights(
        data.trades, data.features, runs.oos_predictions(db, scope.run_key), curriculum
    )
    cross_run.write_priors(db, scope.run_key, priors, weights)
    finish(context, db, scope.run_key)
    notes = [
        f"priors pooled over {len(pooled)} run(s) that share no trades, of {len(stored)} stored"
        if len(priors)
        else "no priors: the model has no coefficients (trees)",
        curriculum_note(weights, curriculum),
    ]
    context.log.info(f"{scope.run_key}: " + "; ".join(notes))
    largest = priors.reindex(priors["prior_coef"].abs().sort_values(ascending=False).index)
    return run_result(
        context,
        scope.run_key,
        {
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes)),
            "n_pooled_runs": len(pooled),
            "median_prior_strength": float(priors["prior_strength"].median()) if len(priors) else None,
            "largest_priors": markdown_table(largest, 10, "features"),
            "regime_weights": markdown_table(weights[["regime", "n_oos", "oos_error", "weight"]])
            if weights is not None
            else "none",
            "dagster/row_count": len(priors),
        },
    )
