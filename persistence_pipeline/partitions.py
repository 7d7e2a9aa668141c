"""THE daily partitions definition and backfill policy shared by every asset, and the run a
partition range stands for.

A partition key is a trade entry date (UTC). Every asset uses this one object and the single-run
backfill policy, so a date range (a UI backfill or `--partition-range A...B`) is one Dagster run.
The partitions span the configured source: they start on the embedded data's first day (users whose
trades start earlier set PERSISTENCE_PARTITIONS_START, YYYY-MM-DD) and, on the embedded data, end on
its last day; on a trade log or bars of the user's they run to yesterday, because those grow every
night (PERSISTENCE_PARTITIONS_END, the last day, fixes the end for any source). Both are read once,
at import, because Dagster needs the partitions definition when the code location loads.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg
import pandas as pd

EMBEDDED_DATA_START = "2013-01-02"
EMBEDDED_DATA_END = "2023-09-21"  # the last day of data/stocks_daily.parquet


def partitions_end(environ: Mapping[str, str]) -> str | None:
    """Dagster's (exclusive) `end_date` of the partitions: the day after PERSISTENCE_PARTITIONS_END,
    or after the embedded data's last day when the trade source is the embedded data (the default);
    None (partitions up to yesterday) for a source of the user's."""
    last = environ.get("PERSISTENCE_PARTITIONS_END") or (
        EMBEDDED_DATA_END if environ.get("PERSISTENCE_TRADE_SOURCE", "embedded") == "embedded" else None
    )
    return None if last is None else str((pd.Timestamp(last) + pd.Timedelta(days=1)).date())


daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("PERSISTENCE_PARTITIONS_START", EMBEDDED_DATA_START),
    end_date=partitions_end(os.environ),
    timezone="UTC",
)
single_run_backfill = dg.BackfillPolicy.single_run()


class ReversedRangeError(ValueError):
    """A partition range whose end comes before its start."""


@dataclass(frozen=True)
class RunRange:
    """The date range a run covers: [start, end) in UTC, end exclusive."""

    start: pd.Timestamp
    end: pd.Timestamp

    @classmethod
    def from_keys(cls, first_key: str, last_key: str) -> RunRange:
        """The range of the daily partitions first_key..last_key (both included)."""
        start = pd.Timestamp(first_key, tz="UTC")
        return cls(start, pd.Timestamp(last_key, tz="UTC") + pd.Timedelta(days=1))

    @property
    def first_day(self) -> dt.date:
        return self.start.date()

    @property
    def last_day(self) -> dt.date:
        return (self.end - pd.Timedelta(days=1)).date()


@dataclass(frozen=True)
class RunScope:
    """One analysis run: a partition range and a model kind. Its `run_key` (e.g.
    `2021-01-04..2021-06-30/ridge`) keys every per-run row, and `as_of_run_key` every cross-run row."""

    window: RunRange
    model_kind: str

    @property
    def run_key(self) -> str:
        return f"{self.window.first_day}..{self.window.last_day}/{self.model_kind}"


def run_range(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> RunRange:
    """The range of the partitions the step runs for (a range run, one partition, or an asset
    invoked directly with `build_asset_context(partition_key_range=...)`)."""
    keys = context.partition_key_range
    if keys.start > keys.end:  # daily keys are ISO dates: text order is date order
        raise ReversedRangeError(
            f"the partition range {keys.start}...{keys.end} is reversed: the first date comes first "
            f"(--partition-range {keys.end}...{keys.start})"
        )
    return RunRange.from_keys(keys.start, keys.end)


def run_scope(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, model_kind: str) -> RunScope:
    return RunScope(run_range(context), model_kind)
