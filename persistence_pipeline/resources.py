"""The code location's resources: where things are stored (thin wrappers of `storage/`) and how runs
are configured. Defaults work on the embedded data; definitions.py binds the common fields to
environment variables, and every field can be set in a run's config under `resources`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pydantic

from persistence_pipeline.core.design import (
    DIRECTIONAL_FEATURES,
    PER_STRATEGY_FEATURES,
    DesignParams,
)
from persistence_pipeline.core.ensemble import members
from persistence_pipeline.core.evidence import EvidenceParams
from persistence_pipeline.core.explanation import ExplainParams
from persistence_pipeline.core.importance import ImportanceParams
from persistence_pipeline.core.leakage import LeakScreenParams
from persistence_pipeline.core.model import ModelParams
from persistence_pipeline.core.monitor import MonitorParams
from persistence_pipeline.core.priors import CurriculumParams, PriorParams
from persistence_pipeline.core.sizing import SizingParams
from persistence_pipeline.core.strategies import StrategyParams
from persistence_pipeline.core.training import Checkpoint, TrainingParams
from persistence_pipeline.source_files import load_source_trades
from persistence_pipeline.storage import files
from persistence_pipeline.storage.database import Database

# Every asset writes the warehouse; an instance with a limit of 1 on this Dagster concurrency pool
# runs one such step at a time across runs (docs/how-to/postgres.md).
WAREHOUSE_POOL = "warehouse"


class Warehouse(dg.ConfigurableResource):
    """The DuckDB file whose tables are the public data contract (docs/reference/data-contract.md);
    read and written only through the functions of `storage/`."""

    path: str = "data/warehouse.duckdb"
    lock_wait_seconds: float = 300.0  # a connection waits this long for another process's connection
    run_wait_seconds: float = 3600.0  # a run waits this long for the run that holds the warehouse

    def database(self, staged_by: str | None = None) -> Database:
        """The warehouse; `staged_by` (a Dagster run id): that run's staged view (storage/database.py)."""
        return Database(self.path, self.lock_wait_seconds, staged_by)


class CheckpointStore(dg.ConfigurableResource):
    """Model checkpoints as skops files, content-addressed under `directory`; the index is the
    warehouse's `checkpoints` table (storage/files.py)."""

    directory: str = "data/checkpoints"

    def save(self, checkpoint: Checkpoint, run_key: str, staged_by: str | None) -> tuple[str, str]:
        return files.save_checkpoint(Path(self.directory), checkpoint.payload(), run_key, staged_by)

    def load(self, path: str, sha256: str) -> Checkpoint:
        return Checkpoint.from_payload(files.load_checkpoint(path, sha256))

    def problem(self, path: str, sha256: str) -> str | None:
        """What is wrong with an indexed checkpoint ("missing", "sha256 differs"), or None."""
        return files.checkpoint_problem(path, sha256)


class DashboardStore(dg.ConfigurableResource):
    """Where dashboard PNGs go: one per run key and `latest.png` (the newest run's), written before
    the run is published and moved into place after it (storage/files.py). `top_n`: the features each
    view shows; `segment`: one strategy or side (`strategy=mean_reversion`, `side=short`, as stored in
    feature_segments) whose top features the summary lists and whose mean |SHAP| the importance panel
    draws over runs; empty: the pooled importance only."""

    directory: str = "data/dashboard"
    top_n: int = 15
    segment: str = ""

    def stage(self, png: bytes, run_key: str, staged_by: str | None, is_newest: bool) -> list[Path]:
        return files.stage_dashboard(Path(self.directory), png, run_key, staged_by, is_newest)

    def publish(self, staged: list[Path]) -> str:
        return files.publish_dashboard(staged)


class TradeSource(dg.ConfigurableResource):
    """Where trades come from: `embedded` (built-in strategies on the embedded bars), `ohlcv_dir`
    (the same strategies on a directory of the user's OHLCV files) or `trade_log_dir` (a directory
    of the user's trade logs, CSV or Parquet). `timestamp_format`: the strptime format of the user's
    dates and timestamps (e.g. `%d/%m/%Y %H:%M`), ISO 8601 when empty; `max_gap_days`: the longest gap
    in calendar days allowed between two bars of a symbol (0: no limit); `split_check`: refuse bars
    that open at a split-like multiple of the previous close (core/market_data.py)."""

    kind: str = "embedded"
    path: str = ""
    features: list[str] = []
    timestamp_format: str = ""
    max_gap_days: int = 7
    split_check: bool = True
    z_entry: float = 1.0
    breakout_window: int = 20
    stop_atr: float = 2.0
    max_hold: int = 10

    def describe(self) -> str:
        if self.kind == "embedded":
            return "embedded data (stocks_daily.parquet)"
        return f"{self.kind} {self.path}"

    def load(self) -> pd.DataFrame:
        params = StrategyParams(self.z_entry, self.breakout_window, self.stop_atr, self.max_hold)
        return load_source_trades(
            self.kind,
            self.path,
            self.features or None,
            params,
            self.timestamp_format,
            self.max_gap_days,
            self.split_check,
        )


class ModelSettings(dg.ConfigurableResource):
    """How the profit model is fit, evaluated and explained (shared by profit_model and
    feature_importance). `warm_start`: pull a ridge model toward the latest stored priors;
    `curriculum`: weight training trades by the latest stored regime weights; `cost_bps`: the cost of
    one side of a trade (the label is net of two), `max_position`: the cap of a sized position
    (core/sizing.py); `ensemble`: other model kinds fit beside `kind` in the same run, on the same
    trades and folds (core/ensemble.py; empty: `kind` alone, the default). The docs'
    walk-forward table (benchmarks/walk_forward.py) is why priors are on and the curriculum is off
    by default."""

    kind: str = "ridge"
    warm_start: bool = True
    curriculum: bool = False
    ridge_alpha: float = 10.0
    n_folds: int = 5
    embargo_days: float = 1.0
    min_train_trades: int = 50
    seed: int = 0
    perm_repeats: int = 5
    shap_sample_size: int = 2000
    interaction_sample_size: int = 500
    interaction_top: int = 10
    perm_sample_size: int = 20000
    bootstrap_rounds: int = 20
    bootstrap_sample_size: int = 50000
    correlation_threshold: float = 0.7
    directional_features: list[str] = list(DIRECTIONAL_FEATURES)
    per_strategy_features: list[str] = list(PER_STRATEGY_FEATURES)
    centre_directional_features: bool = True
    cost_bps: float = 5.0
    max_position: float = 3.0
    ensemble: list[str] = []

    @pydantic.model_validator(mode="after")
    def _valid_ensemble(self) -> ModelSettings:
        for kind in self.ensemble:
            ModelParams(kind=kind)  # raises for an unknown kind
        members(self.kind, self.ensemble)  # raises for kind itself or a repeated kind
        return self

    @pydantic.field_validator("cost_bps")
    @classmethod
    def _valid_cost(cls, cost_bps: float) -> float:
        SizingParams(cost_bps=cost_bps)  # raises below 0
        return cost_bps

    @pydantic.field_validator("max_position")
    @classmethod
    def _valid_max_position(cls, max_position: float) -> float:
        SizingParams(max_position=max_position)  # raises at 0 or below
        return max_position

    def sizing_params(self) -> SizingParams:
        return SizingParams(self.cost_bps, self.max_position)

    def design_params(self) -> DesignParams:
        return DesignParams(
            tuple(self.directional_features),
            tuple(self.per_strategy_features),
            self.centre_directional_features,
        )

    def members(self) -> list[str]:
        """The model kinds the run fits: `kind`, then the ensemble's others."""
        return members(self.kind, self.ensemble)

    def model_params(self, kind: str | None = None) -> ModelParams:
        """The model's parameters (of `kind`, an ensemble member, when given)."""
        return ModelParams(
            kind=kind or self.kind,
            ridge_alpha=self.ridge_alpha,
            n_folds=self.n_folds,
            embargo_days=self.embargo_days,
            min_train_trades=self.min_train_trades,
            seed=self.seed,
        )

    def importance_params(self) -> ImportanceParams:
        return ImportanceParams(
            perm_repeats=self.perm_repeats,
            shap_sample_size=self.shap_sample_size,
            perm_sample_size=self.perm_sample_size,
            bootstrap_rounds=self.bootstrap_rounds,
            bootstrap_sample_size=self.bootstrap_sample_size,
            interaction_sample_size=self.interaction_sample_size,
            interaction_top=self.interaction_top,
            seed=self.seed,
        )


class AnalysisSettings(dg.ConfigurableResource):
    """How the cross-run assets and checks judge features (defaults: docs/reference/configuration.md)."""

    top_k: int = 5
    prior_decay: float = 1.0
    prior_min_z: float = 0.0
    volatility_feature: str = "volatility_20"
    trend_feature: str = "momentum_20"
    min_regime_weight: float = 0.5
    max_regime_weight: float = 2.0
    regime_shrinkage_trades: float = 100.0
    leakage_max_abs_ic: float = 0.15
    leakage_level: float = 0.001
    drift_max_psi: float = 0.25
    max_abs_trade_return: float = 0.5
    max_plausible_oos_rank_ic: float = 0.5
    max_plausible_hit_rate: float = 0.8
    ic_period_days: int | None = None
    neutral_evidence: bool = True
    min_trades_per_period: int = 10
    decay_level: float = 0.05
    reference_ic: float = 0.05
    monitor_recent_periods: int = 8
    monitor_level: float = 0.01

    @pydantic.field_validator("prior_decay")
    @classmethod
    def _valid_prior_decay(cls, decay: float) -> float:
        PriorParams(decay=decay)  # raises for a decay outside (0, 1]
        return decay

    @pydantic.model_validator(mode="after")
    def _valid_leak_screen(self) -> AnalysisSettings:
        self.leak_screen_params()  # raises for a ceiling outside (0, 1) or a level outside (0, 0.5)
        return self

    @pydantic.field_validator("monitor_recent_periods")
    @classmethod
    def _valid_recent_periods(cls, periods: int) -> int:
        MonitorParams(recent_periods=periods)  # raises below 2
        return periods

    @pydantic.field_validator("monitor_level")
    @classmethod
    def _valid_monitor_level(cls, level: float) -> float:
        MonitorParams(level=level)  # raises outside (0, 1)
        return level

    def evidence_params(self) -> EvidenceParams:
        return EvidenceParams(
            self.ic_period_days,
            self.min_trades_per_period,
            self.decay_level,
            self.reference_ic,
            self.neutral_evidence,
        )

    def leak_screen_params(self) -> LeakScreenParams:
        return LeakScreenParams(ceiling=self.leakage_max_abs_ic, level=self.leakage_level)

    def prior_params(self) -> PriorParams:
        return PriorParams(decay=self.prior_decay, min_z=self.prior_min_z)

    def monitor_params(self) -> MonitorParams:
        return MonitorParams(self.monitor_recent_periods, self.monitor_level, self.top_k)

    def curriculum_params(self) -> CurriculumParams:
        return CurriculumParams(
            self.volatility_feature,
            self.trend_feature,
            self.min_regime_weight,
            self.max_regime_weight,
            self.regime_shrinkage_trades,
        )


class RetrainSettings(dg.ConfigurableResource):
    """The nightly retraining window: `window_days` days ending the day before the tick, or before
    `replay_date` (YYYY-MM-DD) when it is set: every tick then requests the window ending the day
    before that date (once: its run key repeats), to try the schedule on a history that has ended,
    such as the embedded data."""

    window_days: int = 90
    replay_date: str = ""

    @pydantic.field_validator("replay_date", mode="before")
    @classmethod
    def _a_date(cls, value: str) -> str:
        if isinstance(value, dg.EnvVar):  # checked when the run resolves it
            return value
        if value and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"replay_date must be a date YYYY-MM-DD or empty, not {value!r}")
        if value:
            pd.Timestamp(value)  # a real day: 2023-02-30 fails here
        return value


def resources_under(
    folder: Path,
    trade_source: TradeSource,
    model_settings: ModelSettings,
    analysis_settings: AnalysisSettings | None = None,
) -> dict[str, dg.ConfigurableResource]:
    """Every resource of the code location, with the warehouse, checkpoints and dashboards under one
    folder (warehouse.duckdb, checkpoints/, dashboard/): for tests, benchmarks and side experiments."""
    return {
        "warehouse": Warehouse(path=str(folder / "warehouse.duckdb")),
        "checkpoint_store": CheckpointStore(directory=str(folder / "checkpoints")),
        "trade_source": trade_source,
        "model_settings": model_settings,
        "analysis_settings": analysis_settings or AnalysisSettings(),
        "dashboard_store": DashboardStore(directory=str(folder / "dashboard")),
        "retrain_settings": RetrainSettings(),
    }


def partial_override(run_config: Mapping[str, Any], bound: Mapping[str, Any]) -> str | None:
    """What is wrong with the run config's resource configs, or None: a resource given some of its
    fields while others are bound to the environment (`bound`: each resource's config as the code
    location binds it, {"field": {"env": "VAR"}} for an environment variable). Dagster replaces the
    whole bound config with the given one, so the fields left out would silently take the class
    defaults (a trade source given only `timestamp_format` ran on the embedded data)."""
    given = run_config.get("resources") or {}
    for name in sorted(given):
        config = (given[name] or {}).get("config")
        defaults = bound.get(name)
        if not isinstance(config, Mapping) or not isinstance(defaults, Mapping):
            continue
        from_env = {
            field: value["env"]
            for field, value in defaults.items()
            if isinstance(value, Mapping) and "env" in value and field not in config
        }
        if from_env:
            fields = ", ".join(from_env)
            variables = ", ".join(from_env.values())
            field, variable = next(iter(from_env.items()))
            return (
                f"resources.{name}.config sets {', '.join(sorted(config))} but not {fields}, which the "
                f"environment sets ({variables}): Dagster would replace them with the defaults, not "
                f'keep the environment\'s. Give them too, e.g. "{field}": {{"env": "{variable}"}}'
            )
    return None


def training_params(model: ModelSettings, analysis: AnalysisSettings) -> TrainingParams:
    """What the model stage fits with (core/training.py), from the two settings resources."""
    return TrainingParams(
        model=model.model_params(),
        members=tuple(model.model_params(kind) for kind in model.members()[1:]),
        design=model.design_params(),
        sizing=model.sizing_params(),
        leak=analysis.leak_screen_params(),
        warm_start=model.warm_start,
        curriculum=model.curriculum,
        volatility_feature=analysis.volatility_feature,
    )


def explain_params(model: ModelSettings, analysis: AnalysisSettings) -> ExplainParams:
    """How the importance stage explains the run's model (core/explanation.py)."""
    return ExplainParams(
        importance=model.importance_params(),
        correlation_threshold=model.correlation_threshold,
        max_plausible_oos_rank_ic=analysis.max_plausible_oos_rank_ic,
        max_plausible_hit_rate=analysis.max_plausible_hit_rate,
        top_k=analysis.top_k,
    )
