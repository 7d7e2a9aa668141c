"""The `stale_runs` sensor: re-materializes stale runs (storage/staleness.py), oldest first, one run
at a time, so that runs first made out of order end with the tables of running them in order."""

import hashlib

import dagster as dg
import pandas as pd

from persistence_pipeline.assets.stage import IN_PROGRESS
from persistence_pipeline.resources import ModelSettings, Warehouse
from persistence_pipeline.storage.staleness import stale_runs


@dg.sensor(
    minimum_interval_seconds=300,
    target=dg.AssetSelection.all(),
    description="When no run is in progress, requests ONE run over the range of the oldest stale run of "
    "the configured model kind: a run that read runs which have changed or were stored after it (an "
    "older range materialized later, or re-materialized with another result). Its recomputation can "
    "make later runs stale in turn; the next evaluations take them, oldest first.",
)
def stale_runs_sensor(
    context: dg.SensorEvaluationContext, warehouse: Warehouse, model_settings: ModelSettings
) -> dg.RunRequest | dg.SkipReason:
    busy = context.instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS), limit=1)
    if busy:
        return dg.SkipReason(f"run {busy[0].run_id} is in progress: stale runs are judged once it is done")
    stale = stale_runs(warehouse.database(), model_settings.kind)
    if stale.empty:
        return dg.SkipReason(f"no stale {model_settings.kind} run: every run read the runs stored now")
    oldest = stale.iloc[0]
    first, last = oldest["range_start"], oldest["range_end"]
    context.log.info(f"{oldest['run_key']} is stale ({oldest['changed']}); {len(stale)} stale in all")
    return dg.RunRequest(
        # once per state of its inputs: a recomputation that fails is not requested again and again
        run_key=f"stale-{oldest['run_key']}-{hashlib.sha256(oldest['changed'].encode()).hexdigest()[:16]}",
        tags={
            "dagster/asset_partition_range_start": str(pd.Timestamp(first).date()),
            "dagster/asset_partition_range_end": str(pd.Timestamp(last).date()),
        },
    )
