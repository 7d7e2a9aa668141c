"""The one Dagster code location: every stage's assets, the checks, the resources and the executor."""

import os

import dagster as dg

from persistence_pipeline import checks
from persistence_pipeline.assets import (
    feature_alpha,
    feature_importance,
    feature_priors,
    feature_stability,
    profit_model,
    trades,
)
from persistence_pipeline.resources import AnalysisSettings, CheckpointStore, ModelSettings, TradeSource, Warehouse


def _env(name: str, default: str) -> str | dg.EnvVar:
    """dg.EnvVar(name) when the variable is set (the UI shows where the value came from), else the default."""
    return dg.EnvVar(name) if name in os.environ else default


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [trades, profit_model, feature_importance, feature_stability, feature_alpha, feature_priors]
    ),
    asset_checks=dg.load_asset_checks_from_modules([checks]),
    resources={
        "warehouse": Warehouse(path=_env("PERSISTENCE_WAREHOUSE", "data/warehouse.duckdb")),
        "checkpoint_store": CheckpointStore(directory=_env("PERSISTENCE_CHECKPOINTS", "data/checkpoints")),
        "trade_source": TradeSource(kind=_env("PERSISTENCE_TRADE_SOURCE", "embedded"), path=_env("PERSISTENCE_TRADE_PATH", "")),
        "model_settings": ModelSettings(kind=_env("PERSISTENCE_MODEL_KIND", "ridge")),
        "analysis_settings": AnalysisSettings(),
    },
    executor=dg.in_process_executor,
)
