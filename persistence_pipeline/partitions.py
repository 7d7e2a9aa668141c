"""THE daily partitions definition and backfill policy shared by every asset.

A partition key is a trade entry date (UTC). Every asset uses this one object and the single-run
backfill policy, so a date range (a UI backfill or `--partition-range A...B`) is one Dagster run.
The first date defaults to the embedded data's first day; users whose trades start earlier set
PERSISTENCE_PARTITIONS_START (YYYY-MM-DD). It is read once, at import, because Dagster needs the
partitions definition when the code location loads.
"""

import datetime as dt
import os
from dataclasses import dataclass

import dagster as dg
import pandas as pd

EMBEDDED_DATA_START = "2013-01-02"

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("PERSISTENCE_PARTITIONS_START", EMBEDDED_DATA_START), timezone="UTC"
)
single_run_backfill = dg.BackfillPolicy.single_run()


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

    def run_key(self, model_kind: str) -> str:
        """The key of the analysis run over this range, e.g. `2021-01-04..2021-06-30/ridge`."""
        return f"{self.first_day}..{self.last_day}/{model_kind}"


def run_range(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> RunRange:
    window = context.partition_time_window
    return RunRange(pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC"))
