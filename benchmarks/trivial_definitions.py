"""A trivial code location shaped like the real one (same partitions, single-run policy, in-process
executor, three chained assets and two checks) whose steps do no work: the Dagster floor."""

import dagster as dg

from persistence_pipeline.partitions import daily_partitions, single_run_backfill

PARTITIONED = {"partitions_def": daily_partitions, "backfill_policy": single_run_backfill}


@dg.asset(**PARTITIONED)
def first() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"n": 1})


@dg.asset(deps=[first], **PARTITIONED)
def second() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"n": 2})


@dg.asset(deps=[second], **PARTITIONED)
def third() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"n": 3})


@dg.asset_check(asset=first, partitions_def=daily_partitions)
def first_ok() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=second, partitions_def=daily_partitions)
def second_ok() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


defs = dg.Definitions(assets=[first, second, third], asset_checks=[first_ok, second_ok], executor=dg.in_process_executor)
