"""Shared fixtures: real warehouses and checkpoint folders under tmp_path, real range runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from persistence_pipeline.definitions import defs
from persistence_pipeline.resources import AnalysisSettings, ModelSettings, TradeSource, resources_under


@dataclass
class Project:
    """A warehouse file and checkpoint folder of one test, and the resources that point at them."""

    root: Path
    trade_source: TradeSource
    model_settings: ModelSettings
    analysis_settings: AnalysisSettings = field(default_factory=AnalysisSettings)

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    def resources(self) -> dict:
        return resources_under(self.root, self.trade_source, self.model_settings, self.analysis_settings)

    def materialize(self, start: str, end: str, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        """Every asset and check of the code location over [start, end], as one range run."""
        return dg.materialize(
            [*defs.assets, *defs.asset_checks],
            resources=self.resources(),
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
            raise_on_error=raise_on_error,
        )

    def table(self, name: str, order_by: str | None = None) -> pd.DataFrame:
        with duckdb.connect(str(self.warehouse_path), read_only=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(f"SELECT * FROM {name}" + (f" ORDER BY {order_by}" if order_by else "")).df()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path, TradeSource(), ModelSettings())
