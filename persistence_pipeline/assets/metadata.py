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
    """The step's result with its metadata written ONCE per run, on the range's last partition (the
    asset's latest materialization in the UI). A range run records one materialization event per
    partition, each stored twice (the run's event log and the cross-run index), and an event's size
    decides how many share a SQLite page; so every other partition's event carries no metadata at
    all. The UI links each to its run by the run id every event carries, and the run's partition
    range tags give the run key and the partition with the metadata. Invoked directly (no run, no
    event log), the result carries it all."""
    full = {**metadata, "run_key": run_key}
    if dagster_run(context) is None:
        return dg.MaterializeResult(asset_key=asset_key, metadata=full)
    context.add_asset_metadata(full, asset_key=asset_key, partition_key=context.partition_key_range.end)
    return dg.MaterializeResult(asset_key=asset_key)
