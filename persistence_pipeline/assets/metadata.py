"""Small helpers shared by the stage modules: a step's metadata once per run, frames into Dagster
metadata, stage timings into the log."""

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.stage import dagster_run


def markdown_table(frame: pd.DataFrame, limit: int = 20, what: str = "rows") -> dg.MetadataValue:
    """The first `limit` rows as a markdown table, saying how many are hidden."""
    shown = frame.head(limit).to_markdown(index=False, floatfmt=".4g")
    hidden = len(frame) - min(len(frame), limit)
    return dg.MetadataValue.md(shown + (f"\n\n{hidden} more {what} not shown." if hidden else ""))


def finite_or_none(value: float) -> float | None:
    """Dagster float metadata cannot be NaN; NaN becomes None (shown as empty)."""
    return None if pd.isna(value) else float(value)


@contextmanager
def timed(log, what: str) -> Iterator[None]:
    """Log how long a stage of an asset took (shown in the run's log in the UI)."""
    start = time.perf_counter()
    yield
    log.info(f"{what}: {time.perf_counter() - start:.2f} s")


def run_result(
    context: dg.AssetExecutionContext,
    run_key: str,
    metadata: Mapping[str, Any],
    asset_key: dg.AssetKey | None = None,
) -> dg.MaterializeResult:
    """The step's result with its metadata written ONCE per run: a range run records one
    materialization event per daily partition, each with the result's metadata, so the full metadata
    (tables, markdown, the dashboard image) goes on the range's LAST partition only (the asset's
    latest materialization in the UI) and every other partition's event carries the run key and
    where the metadata is. Invoked directly (no run, no event log), the result carries it all."""
    full = {**metadata, "run_key": run_key}
    if dagster_run(context) is None:
        return dg.MaterializeResult(asset_key=asset_key, metadata=full)
    *others, last = context.partition_keys
    for key in others:
        context.add_asset_metadata(
            {"run_key": run_key, "run_metadata_on_partition": last}, asset_key=asset_key, partition_key=key
        )
    context.add_asset_metadata(full, asset_key=asset_key, partition_key=last)
    return dg.MaterializeResult(asset_key=asset_key)
