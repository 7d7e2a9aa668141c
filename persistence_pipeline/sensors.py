"""The new-trades sensor (`new_trades_sensor`, at the end): one run when the user's trade files change.

The stale-runs sensors: re-materialize stale runs (storage/staleness.py), oldest first, one run at a
time, so that runs first made out of order end with the tables of running them in order.

Each code location has one. A stale run of whole months longer than a year is recomputed by the
history location's (`stale_history_runs_sensor`, on months); every other by the daily location's
(`stale_runs_sensor`), which would otherwise write Dagster's bookkeeping for every day of years. The
oldest stale run goes first whichever location takes it: the other sensor waits for it and says so."""

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.stage import IN_PROGRESS
from persistence_pipeline.core.trade_sources import new_or_changed_trades
from persistence_pipeline.errors import InputDataError
from persistence_pipeline.partitions import daily_partitions, whole_months
from persistence_pipeline.resources import ModelSettings, RetrainSettings, TradeSource, Warehouse
from persistence_pipeline.schedules import window_ending
from persistence_pipeline.source_files import source_files_state
from persistence_pipeline.storage.staleness import stale_runs
from persistence_pipeline.storage.trade_store import stored_trade_versions

HISTORY_MIN_DAYS = 366  # a stale run of whole months longer than this is the history location's


def history_months(first: pd.Timestamp, last: pd.Timestamp) -> tuple[str, str] | None:
    """The monthly keys a stale run over [first, last] (days) is recomputed with by the history code
    location; None when the daily location recomputes it."""
    months = whole_months(first, last)
    return months if months is not None and (last - first).days + 1 > HISTORY_MIN_DAYS else None


def _stale_runs_sensor(name: str, on_months: bool) -> dg.SensorDefinition:
    there = "daily" if on_months else "history"
    other = "stale_runs_sensor" if on_months else "stale_history_runs_sensor"

    @dg.sensor(
        name=name,
        minimum_interval_seconds=300,
        target=dg.AssetSelection.all(),
        description="When no run is in progress, requests ONE run over the range of the oldest stale run "
        "of the configured model kind: a run that read runs which have changed or were stored after it (an "
        "older range materialized later, or re-materialized with another result). Its recomputation can "
        "make later runs stale in turn; the next evaluations take them, oldest first. Takes the stale runs "
        + (
            f"of whole months longer than {HISTORY_MIN_DAYS} days"
            if on_months
            else f"but those of whole months longer than {HISTORY_MIN_DAYS} days (the history location's)"
        )
        + ".",
    )
    def stale_runs_sensor(
        context: dg.SensorEvaluationContext, warehouse: Warehouse, model_settings: ModelSettings
    ) -> dg.RunRequest | dg.SkipReason:
        busy = context.instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS), limit=1)
        if busy:
            return dg.SkipReason(
                f"run {busy[0].run_id} is in progress: stale runs are judged once it is done"
            )
        stale = stale_runs(warehouse.database(), model_settings.kind)
        if stale.empty:
            return dg.SkipReason(f"no stale {model_settings.kind} run: every run read the runs stored now")
        oldest = stale.iloc[0]
        first, last = pd.Timestamp(oldest["range_start"]), pd.Timestamp(oldest["range_end"])
        months = history_months(first, last)
        if (months is not None) != on_months:
            return dg.SkipReason(
                f"the oldest stale run, {oldest['run_key']}, is recomputed by the {there} code location's "
                f"sensor ({other}); the later stale runs wait for it"
            )
        context.log.info(f"{oldest['run_key']} is stale ({oldest['changed']}); {len(stale)} stale in all")
        start, end = months or (str(first.date()), str(last.date()))
        return dg.RunRequest(
            # once per state of its inputs: a recomputation that fails is not requested again and again
            run_key=f"stale-{oldest['run_key']}-{hashlib.sha256(oldest['changed'].encode()).hexdigest()[:16]}",
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
        )

    return stale_runs_sensor


stale_runs_sensor = _stale_runs_sensor("stale_runs_sensor", on_months=False)
stale_history_runs_sensor = _stale_runs_sensor("stale_history_runs_sensor", on_months=True)


@dg.sensor(
    minimum_interval_seconds=60,
    target=dg.AssetSelection.all(),
    description="Watches the trade-log or bars directory of the trade source: when files are added or "
    "changed, requests ONE run over the retraining window (RetrainSettings.window_days) that ends on the "
    "newest entry day of the trades the warehouse does not hold as they are (new trade ids, or changed "
    "entry, exit, side or return). Its cursor is every file's modification time and size, so a file is "
    "handled once; every other evaluation says why it requests nothing.",
)
def new_trades_sensor(
    context: dg.SensorEvaluationContext,
    trade_source: TradeSource,
    warehouse: Warehouse,
    retrain_settings: RetrainSettings,
) -> dg.RunRequest | dg.SkipReason:
    if trade_source.kind == "embedded":
        return dg.SkipReason(
            "the trade source is the embedded data, which does not change: this sensor watches a trade-log "
            "or bars directory (PERSISTENCE_TRADE_SOURCE trade_log_dir or ohlcv_dir, PERSISTENCE_TRADE_PATH)"
        )
    try:
        state = source_files_state(Path(trade_source.path))
    except InputDataError as error:
        return dg.SkipReason(f"nothing to watch: {error}")
    handled = json.loads(context.cursor) if context.cursor else {}
    changed = sorted(name for name, version in state.items() if handled.get(name) != version)
    if not changed:
        return dg.SkipReason(f"no file added or changed in {trade_source.path} ({len(state)} files handled)")
    cursor = json.dumps(state, sort_keys=True)
    context.update_cursor(cursor)
    files = ", ".join(changed)
    try:
        trades = trade_source.load()
    except InputDataError as error:
        return dg.SkipReason(f"{files} added or changed, but the source cannot be read: {error}")
    fresh = new_or_changed_trades(trades, stored_trade_versions(warehouse.database()))
    if fresh.empty:
        return dg.SkipReason(f"{files} added or changed, but the warehouse holds every trade as it is")
    newest = fresh["entry_time"].max().date()
    final = daily_partitions.get_last_partition_key()
    first, last = window_ending(
        min(newest, dt.date.fromisoformat(final)) if final else newest, retrain_settings.window_days
    )
    context.log.info(f"{len(fresh)} new or changed trades in {files}, the newest entered {newest}")
    return dg.RunRequest(
        run_key=f"new-trades-{first}..{last}-{hashlib.sha256(cursor.encode()).hexdigest()[:16]}",
        tags={
            "dagster/asset_partition_range_start": str(first),
            "dagster/asset_partition_range_end": str(last),
        },
    )
