"""Nightly retraining: at 02:00 UTC, ONE run over the trailing window that ends yesterday (or, with
`retrain_settings.replay_date`, the day before that date: the schedule tried on a fixed history)."""

import datetime as dt

import dagster as dg
import pandas as pd

from persistence_pipeline.partitions import daily_partitions
from persistence_pipeline.resources import RetrainSettings, TradeSource


def retrain_window(tick: dt.datetime, window_days: int, replay_date: str = "") -> tuple[dt.date, dt.date]:
    """[first, last] day of the window that ends the day before `tick`, or before `replay_date`
    (YYYY-MM-DD) when it is set; the first day is clipped to the partitions."""
    today = pd.Timestamp(replay_date, tz="UTC") if replay_date else pd.Timestamp(tick).tz_convert("UTC")
    return window_ending((today - pd.Timedelta(days=1)).date(), window_days)


def window_ending(last: dt.date, window_days: int) -> tuple[dt.date, dt.date]:
    """[first, last] day of the `window_days` days ending on `last`, the first clipped to the partitions
    (the nightly schedule's window, and the new-trades sensor's)."""
    return max(last - dt.timedelta(days=window_days - 1), daily_partitions.start.date()), last


@dg.schedule(
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    target=dg.AssetSelection.all(),
    description="Retrains every asset over the trailing window (RetrainSettings.window_days, default 90) "
    "ending yesterday (or the day before RetrainSettings.replay_date), as one range run; skips the tick "
    "when the window ends after the last partition (the end of the configured source) or holds no trades.",
)
def nightly_retrain(
    context: dg.ScheduleEvaluationContext, trade_source: TradeSource, retrain_settings: RetrainSettings
) -> dg.RunRequest | dg.SkipReason:
    first, last = retrain_window(
        context.scheduled_execution_time, retrain_settings.window_days, retrain_settings.replay_date
    )
    if last < first:
        return dg.SkipReason(f"the window ending {last} is before the first partition {first}")
    final = daily_partitions.get_last_partition_key()
    if final is not None and str(last) > final:
        return dg.SkipReason(
            f"the window {first}..{last} ends after the last partition {final}, where the configured "
            f"source ({trade_source.describe()}) ends: to try the schedule on it, set "
            "retrain_settings.replay_date (env PERSISTENCE_REPLAY_DATE) to a day up to the day after "
            f"{final}, e.g. {final[:8]}01"
        )
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
