"""The one Dagster code location: every stage's assets, the checks, the resources and the executor."""

import os

import dagster as dg

from persistence_pipeline import checks, schedules
from persistence_pipeline.assets import (
    feature_alpha,
    feature_importance,
    feature_priors,
    feature_stability,
    persistence_dashboard,
    profit_model,
    trades,
)
from persistence_pipeline.resources import (
    AnalysisSettings,
    CheckpointStore,
    DashboardStore,
    ModelSettings,
    RetrainSettings,
    TradeSource,
    Warehouse,
)


def _env(name: str, default: str | int) -> str | int | dg.EnvVar:
    """dg.EnvVar(name) when the variable is set (the UI shows where the value came from), else the default."""
    if name not in os.environ:
        return default
    return dg.EnvVar.int(name) if isinstance(default, int) else dg.EnvVar(name)


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [
            trades,
            profit_model,
            feature_importance,
            feature_stability,
            feature_alpha,
            feature_priors,
            persistence_dashboard,
        ]
    ),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    schedules=[schedules.nightly_retrain],
    resources={
        "warehouse": Warehouse(path=_env("PERSISTENCE_WAREHOUSE", "data/warehouse.duckdb")),
        "checkpoint_store": CheckpointStore(directory=_env("PERSISTENCE_CHECKPOINTS", "data/checkpoints")),
        "trade_source": TradeSource(
            kind=_env("PERSISTENCE_TRADE_SOURCE", "embedded"), path=_env("PERSISTENCE_TRADE_PATH", "")
        ),
        "model_settings": ModelSettings(kind=_env("PERSISTENCE_MODEL_KIND", "ridge")),
        "analysis_settings": AnalysisSettings(),
        "dashboard_store": DashboardStore(directory=_env("PERSISTENCE_DASHBOARDS", "data/dashboard")),
        "retrain_settings": RetrainSettings(window_days=_env("PERSISTENCE_RETRAIN_WINDOW_DAYS", 90)),
    },
    executor=dg.in_process_executor,
)
