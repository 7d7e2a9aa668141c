"""A trivial code location shaped like the real one (same partitions, single-run policy, in-process
executor, as many chained assets and checks as persistence_pipeline.definitions, each check's result
recorded on every partition of the range as the real ones are) whose steps do no work: the Dagster
floor the headline CLI run is compared with. The shape is kept equal to the real code location by
persistence_pipeline_tests/test_definitions.py. `defs` is on the daily partitions; `monthly_defs`
(`-a monthly_defs`) builds the same on the monthly partitions of the history code location."""

import dagster as dg

from persistence_pipeline.check_results import evaluated_per_partition
from persistence_pipeline.partitions import daily_partitions, monthly_partitions, single_run_backfill

N_ASSETS = 8
N_CHECKS = 9


def _asset(
    index: int, upstream: dg.AssetsDefinition | None, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"step_{index}",
        deps=[upstream] if upstream else [],
        partitions_def=partitions_def,
        backfill_policy=single_run_backfill,
    )
    def step() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"index": index})

    return step


def _check(
    index: int, asset: dg.AssetsDefinition, partitions_def: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=f"check_{index}", partitions_def=partitions_def)
    @evaluated_per_partition
    def check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    return check


def definitions(partitions_def: dg.PartitionsDefinition) -> dg.Definitions:
    """The chained assets and their checks on `partitions_def`."""
    assets: list[dg.AssetsDefinition] = []
    for i in range(N_ASSETS):
        assets.append(_asset(i, assets[-1] if assets else None, partitions_def))
    checks = [_check(i, assets[i % N_ASSETS], partitions_def) for i in range(N_CHECKS)]
    return dg.Definitions(assets=assets, asset_checks=checks, executor=dg.in_process_executor)


def monthly_defs() -> dg.Definitions:
    """The floor of the history code location (a function, so that `-f` alone still finds `defs`)."""
    return definitions(monthly_partitions)


defs = definitions(daily_partitions)
