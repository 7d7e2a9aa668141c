"""Nightly retraining: at 02:00 UTC, ONE run over the trailing window that ends yesterday."""

import datetime as dt

import dagster as dg
import pandas as pd

from persistence_pipeline.partitions import daily_partitions
from persistence_pipeline.resources import RetrainSettings, TradeSource


def retrain_window(tick: dt.datetime, window_days: int) -> tuple[dt.date, dt.date]:
    """[first, last] day of the window that ends the day before `tick` (clipped to the partitions)."""
    last = (pd.Timestamp(tick).tz_convert("UTC") - pd.Timedelta(days=1)).date()
    first = last - dt.timedelta(days=window_days - 1)
    return max(first, daily_partitions.start.date()), last


@dg.schedule(
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    target=dg.AssetSelection.all(),
    description="Retrains every asset over the trailing window (RetrainSettings.window_days, default 90) "
    "ending yesterday, as one range run; skips the tick when the window holds no trades.",
)
def nightly_retrain(
    context: dg.ScheduleEvaluationContext, trade_source: TradeSource, retrain_settings: RetrainSettings
) -> dg.RunRequest | dg.SkipReason:
    first, last = retrain_window(context.scheduled_execution_time, retrain_settings.window_days)
    if last < first:
        return dg.SkipReason(f"the window ending {last} is before the first partition {first}")
    entries = trade_source.load()["entry_time"]
    start, end = pd.Timestamp(first, tz="UTC"), pd.Timestamp(last, tz="UTC") + pd.Timedelta(days=1)
    n_trades = int(((entries >= start) & (entries < end)).sum())
    if n_trades == 0:
        return dg.SkipReason(
            f"no trades entered between {first} and {last} in {trade_source.describe()}:"
            " nothing to retrain on"
        )
    return dg.RunRequest(
        run_key=f"nightly-{first}..{last}",
        tags={
            "dagster/asset_partition_range_start": str(first),
            "dagster/asset_partition_range_end": str(last),
        },
    )
