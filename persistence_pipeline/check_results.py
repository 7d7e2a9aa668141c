"""A check's one result for its run's range, recorded on every daily partition of the range."""

import functools
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # not re-exported by `dagster`
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.storage.event_log.base import AssetRecordsFilter  # not re-exported by `dagster`

from persistence_pipeline.partitions import daily_partitions


def evaluated_per_partition(
    check_fn: Callable[..., dg.AssetCheckResult],
) -> Callable[..., Any]:  # what dg.asset_check takes: a generator of these events
    """The check's one result for its run's range, recorded on EVERY daily partition of the range.

    Dagster plans a partitioned check once per partition of a range run but files an
    `AssetCheckResult` under no partition, so the UI showed each check as Skipped (and the range
    as unchecked). So the range's result is written as one evaluation per partition, each against
    that partition's latest materialization; the metadata (tables) goes on the last partition's only,
    as the assets' does, and so does the blocking flag (one failed blocking evaluation stops the run's
    later steps; one per day would only repeat the failure)."""

    @functools.wraps(check_fn)
    def per_partition(
        context: dg.AssetCheckExecutionContext, *args: Any, **kwargs: Any
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        result = check_fn(context, *args, **kwargs)
        spec = next(iter(context.check_specs))
        *others, last = daily_partitions.get_partition_keys_in_range(context.partition_key_range)
        pointer = {"metadata_on_partition": last}
        targets = _latest_materializations(context.instance, spec.asset_key, [*others, last])
        for key in [*others, last]:
            yield dg.AssetCheckEvaluation(
                asset_key=spec.asset_key,
                check_name=spec.name,
                passed=result.passed,
                severity=result.severity,
                description=result.description,
                metadata=result.metadata if key == last or not result.metadata else pointer,
                blocking=spec.blocking and key == last,
                partition=key,
                target_materialization_data=targets.get(key),
            )
        yield dg.Output(None)

    return per_partition


def _latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The latest materialization of each partition in `keys` (what each evaluation judged)."""
    latest: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    cursor = None
    while True:  # newest first, a page at a time, until every partition's latest is seen
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=keys), limit=len(keys), cursor=cursor
        )
        for record in page.records:
            partition = record.partition_key
            if partition is not None and partition not in latest:
                latest[partition] = AssetCheckEvaluationTargetMaterializationData(
                    run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
                )
        if len(latest) == len(keys) or not page.has_more:
            return latest
        cursor = page.cursor
