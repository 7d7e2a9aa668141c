"""Stage 6: the dashboard PNG and summary, shown inline in the Dagster UI."""

import base64

import dagster as dg

from persistence_pipeline.assets.metadata import run_result
from persistence_pipeline.assets.stage import STAGE, finish, run_database, user_errors_fail_the_step
from persistence_pipeline.core.dashboard import DashboardInputs, dashboard_headline, dashboard_summary
from persistence_pipeline.core.figure import draw_dashboard
from persistence_pipeline.partitions import run_scope
from persistence_pipeline.resources import DashboardStore, ModelSettings, Warehouse
from persistence_pipeline.storage import cross_run, explanations, runs


@dg.asset(
    **STAGE,
    deps=[
        dg.AssetKey("feature_importance"),
        dg.AssetKey("feature_stability"),
        dg.AssetKey("stability_summary"),
        dg.AssetKey("feature_alpha"),
        dg.AssetKey("feature_priors"),
    ],
    group_name="report",
    kinds={"matplotlib"},
    description="Eight panels as of the range end (importance over runs, rank heatmap, alpha scores with "
    "the q-value of each, importance vs realized performance, stability, run performance, the latest "
    "run's cumulative OOS PnL sized vs equal vs actual, its ensemble members' agreement) and a markdown "
    "summary; written to data/dashboard/ (per run key, and latest.png for the newest run) and shown here. "
    "With dashboard_store.segment (e.g. strategy=mean_reversion), panel (1) and a summary section show "
    "that strategy or side alone.",
)
@user_errors_fail_the_step
def persistence_dashboard(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    model_settings: ModelSettings,
    dashboard_store: DashboardStore,
) -> dg.MaterializeResult:
    scope, db = run_scope(context, model_settings.kind), run_database(context, warehouse)
    with db.session():  # fourteen reads, one connection
        stored = runs.runs_as_of(db, scope.window.last_day, model_settings.kind)
        inputs = DashboardInputs(
            runs=stored,
            history=explanations.importance_history(db, stored["run_key"].tolist()),
            stability=cross_run.feature_stability_rows(db, scope.run_key),
            alpha=cross_run.feature_alpha_rows(db, scope.run_key),
            summary=cross_run.stability_summary(db, scope.run_key),
            run_key=scope.run_key,
            top_n=dashboard_store.top_n,
            quarantined=runs.quarantined_features(db, stored["run_key"].tolist()),
            interactions=explanations.interactions(db, scope.run_key),
            segment=dashboard_store.segment,
            segments=explanations.segments_of_runs(
                db, stored["run_key"].tolist(), dashboard_store.segment, scope.run_key
            ),
            books=runs.oos_books(db, scope.run_key),
            sizing=runs.sizing_performance(db, scope.run_key),
            ensemble=runs.ensemble_metrics(db, scope.run_key),
            member_ranks=explanations.ensemble_importance(db, scope.run_key),
            agreement=explanations.model_agreement(db, [scope.run_key]),
        )
        newest = runs.newest_range_end(db, model_settings.kind)  # this run's included
    png = draw_dashboard(inputs)
    is_newest = newest is None or newest <= scope.window.last_day
    staged = dashboard_store.stage(png, scope.run_key, db.staged_by, is_newest)
    # the dashboard is the last stage: the run's rows are public from here, then its files
    if not finish(context, db, scope.run_key):
        raise RuntimeError(f"{scope.run_key}: the dashboard ran before a stage of its run finished")
    path = dashboard_store.publish(staged)
    context.log.info(f"{scope.run_key}: dashboard of {len(stored)} runs written to {path}")
    image = f"![persistence dashboard](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
    return run_result(
        context,
        scope.run_key,
        {
            "headline": dashboard_headline(inputs),
            "summary (markdown)": dg.MetadataValue.md(dashboard_summary(inputs)),
            "dashboard (image)": dg.MetadataValue.md(image),
            "path": dg.MetadataValue.path(path),
            "n_runs": len(stored),
        },
    )
