"""The one Dagster code location: every stage's assets, the checks, the schedule, the sensor, the
resources and the executor. Settings that come from the environment are `dg.EnvVar`s, resolved when a run is
launched; `ENVIRONMENT_DEFAULTS` are the values used when a variable is not set."""

import os

import dagster as dg

from persistence_pipeline import checks, schedules, sensors
from persistence_pipeline.assets import (
    feature_alpha,
    feature_importance,
    feature_priors,
    feature_stability,
    persistence_dashboard,
    profit_model,
    trades,
)
from persistence_pipeline.partitions import daily_partitions
from persistence_pipeline.resources import (
    AnalysisSettings,
    CheckpointStore,
    DashboardStore,
    ModelSettings,
    RetrainSettings,
    TradeSource,
    Warehouse,
)

ENVIRONMENT_DEFAULTS = {
    "PERSISTENCE_WAREHOUSE": "data/warehouse.duckdb",
    "PERSISTENCE_CHECKPOINTS": "data/checkpoints",
    "PERSISTENCE_TRADE_SOURCE": "embedded",
    "PERSISTENCE_TRADE_PATH": "",
    "PERSISTENCE_MODEL_KIND": "ridge",
    "PERSISTENCE_DASHBOARDS": "data/dashboard",
    "PERSISTENCE_RETRAIN_WINDOW_DAYS": "90",
    "PERSISTENCE_REPLAY_DATE": "",
}
# dg.EnvVar has no default (dagster-io/dagster#16232): an unset variable takes its default here, in
# this process's environment, and is still read by Dagster when the run is launched.
for name, value in ENVIRONMENT_DEFAULTS.items():
    os.environ.setdefault(name, value)

ASSETS = [
    trades.trades,
    profit_model.profit_model,
    feature_importance.feature_importance,
    feature_stability.feature_stability,
    feature_alpha.feature_alpha,
    feature_priors.feature_priors,
    persistence_dashboard.persistence_dashboard,
]
ASSET_CHECKS = [check.build(daily_partitions) for check in checks.STAGE_CHECKS]

RESOURCES = {
    "warehouse": Warehouse(path=dg.EnvVar("PERSISTENCE_WAREHOUSE")),
    "checkpoint_store": CheckpointStore(directory=dg.EnvVar("PERSISTENCE_CHECKPOINTS")),
    "trade_source": TradeSource(
        kind=dg.EnvVar("PERSISTENCE_TRADE_SOURCE"), path=dg.EnvVar("PERSISTENCE_TRADE_PATH")
    ),
    "model_settings": ModelSettings(kind=dg.EnvVar("PERSISTENCE_MODEL_KIND")),
    "analysis_settings": AnalysisSettings(),
    "dashboard_store": DashboardStore(directory=dg.EnvVar("PERSISTENCE_DASHBOARDS")),
    "retrain_settings": RetrainSettings(
        window_days=dg.EnvVar.int("PERSISTENCE_RETRAIN_WINDOW_DAYS"),
        replay_date=dg.EnvVar("PERSISTENCE_REPLAY_DATE"),
    ),
}

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    schedules=[schedules.nightly_retrain],
    sensors=[sensors.stale_runs_sensor, sensors.new_trades_sensor],
    resources=RESOURCES,
    executor=dg.in_process_executor,
)
