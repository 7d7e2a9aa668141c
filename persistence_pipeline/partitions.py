"""The daily partitions definition and backfill policy shared by every asset, the monthly one of the
`history` code location (history.py), and the run a partition range stands for.

A partition key is a trade entry date (UTC). Every asset of the main code location uses this one
object and the single-run backfill policy, so a date range (a UI backfill or `--partition-range
A...B`) is one Dagster run. The history code location runs the same assets on months (the key is the
month's first day, the first and last month cut to the daily partitions' days), for ranges of years:
Dagster's bookkeeping grows with the partitions of a run, not with its days.
The partitions span the configured source: they start on the embedded data's first day (users whose
trades start earlier set PERSISTENCE_PARTITIONS_START, YYYY-MM-DD) and, on the embedded data, end on
its last day; on a trade log or bars of the user's they run to yesterday, because those grow every
night (PERSISTENCE_PARTITIONS_END, the last day, fixes the end for any source). Both are read once,
at import, because Dagster needs the partitions definition when the code location loads.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from persistence_pipeline.errors import ReversedRangeError

# Dagster marks two features the project relies on as beta or preview: the single-run backfill policy
# of the assets (declared here) and partitioned asset checks. Their warnings would open every
# command's output; they are silenced once, here, where every code location's definitions start
# (the package itself does not import Dagster, so `report` and `export` start fast).
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

EMBEDDED_DATA_START = "2013-01-02"
EMBEDDED_DATA_END = "2023-09-21"  # the last day of the embedded stocks_daily.parquet


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


def first_of_month(day: str) -> str:
    return str(pd.Timestamp(day).to_period("M").start_time.date())


def monthly_partitions_end(environ: Mapping[str, str]) -> str | None:
    """The (exclusive) `end_date` of the monthly partitions: the first day of the month after the
    daily partitions' last day, so that the month of the source's last day is a partition (partial,
    as the source is); None (up to the last complete month) when the daily partitions run to yesterday."""
    end = partitions_end(environ)
    if end is None:
        return None
    last_day = pd.Timestamp(end) - pd.Timedelta(days=1)
    return str((last_day.to_period("M") + 1).start_time.date())


monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=first_of_month(os.environ.get("PERSISTENCE_PARTITIONS_START", EMBEDDED_DATA_START)),
    end_date=monthly_partitions_end(os.environ),
    timezone="UTC",
)
single_run_backfill = dg.BackfillPolicy.single_run()


def refuse_reversed(first: str, last: str) -> None:
    """ReversedRangeError for partition keys (ISO dates: text order is date order) out of order."""
    if first > last:
        raise ReversedRangeError(
            f"the partition range {first}...{last} is reversed: the first date comes first "
            f"(--partition-range {last}...{first})"
        )


@dataclass(frozen=True)
class RunRange:
    """The date range a run covers: [start, end) in UTC, end exclusive."""

    start: pd.Timestamp
    end: pd.Timestamp

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
    """The days of the partitions the step runs for (a range run, one partition, or an asset invoked
    directly with `build_asset_context(partition_key_range=...)`): from the first partition's first
    day to the last partition's last day, for daily and monthly partitions alike."""
    keys = context.partition_key_range
    refuse_reversed(keys.start, keys.end)
    op_context = (
        context.op_execution_context if isinstance(context, dg.AssetCheckExecutionContext) else context
    )
    partitions = op_context.assets_def.partitions_def
    if not isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        raise TypeError(f"the step is not on daily or monthly partitions: {partitions}")
    first, last = (
        partitions.time_window_for_partition_key(keys.start),
        partitions.time_window_for_partition_key(keys.end),
    )
    return clipped(
        RunRange(pd.Timestamp(first.start).tz_convert("UTC"), pd.Timestamp(last.end).tz_convert("UTC"))
    )


def clipped(window: RunRange) -> RunRange:
    """The range within the daily partitions' days: the first and last month of the monthly
    partitions are cut to the days the source has (a run of them is the run of those days)."""
    start = max(window.start, pd.Timestamp(daily_partitions.start).tz_convert("UTC"))
    end = (
        window.end
        if daily_partitions.end is None
        else min(window.end, pd.Timestamp(daily_partitions.end).tz_convert("UTC"))
    )
    return RunRange(start, end)


def run_scope(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, model_kind: str) -> RunScope:
    return RunScope(run_range(context), model_kind)


def whole_months(first: pd.Timestamp, last: pd.Timestamp) -> tuple[str, str] | None:
    """The monthly partition keys (first..last month) of the days [first, last] when a run of those
    months is the run of these days (whole months, or cut where the daily partitions start or end:
    `clipped`), else None."""
    months = RunRange(
        pd.Timestamp(first_of_month(str(first.date())), tz="UTC"),
        pd.Timestamp(first_of_month(str(last.date())), tz="UTC") + pd.offsets.MonthBegin(1),
    )
    days = RunRange(
        pd.Timestamp(first.date(), tz="UTC"), pd.Timestamp(last.date(), tz="UTC") + pd.Timedelta(days=1)
    )
    if clipped(months) != days:
        return None
    return str(months.start.date()), first_of_month(str(last.date()))
