"""How the checks are declared and recorded: a check of a stage, declared once and built for each
partitions definition (the daily code location's and the history one's), whose one result for its
run's range is recorded on every partition of the range."""

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # not re-exported by `dagster`
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.storage.event_log.base import AssetRecordsFilter  # not re-exported by `dagster`


@dataclass(frozen=True)
class StageCheck:
    """A check of the stage asset `asset`, built for the partitions of a code location by `build`."""

    check_fn: Callable[..., dg.AssetCheckResult]
    asset: str
    description: str
    blocking: bool = False

    @property
    def name(self) -> str:
        return self.check_fn.__name__

    def build(
        self, partitions_def: dg.PartitionsDefinition, key_prefix: Sequence[str] = ()
    ) -> dg.AssetChecksDefinition:
        """The Dagster check on the asset `key_prefix/asset`, partitioned like it."""
        return dg.asset_check(
            asset=dg.AssetKey([*key_prefix, self.asset]),
            name=self.name,
            blocking=self.blocking,
            partitions_def=partitions_def,
            description=self.description,
        )(evaluated_per_partition(self.check_fn))


def stage_check(
    asset: str, description: str, blocking: bool = False
) -> Callable[[Callable[..., dg.AssetCheckResult]], StageCheck]:
    """Declares a check of the stage asset named `asset` (definitions.py and history.py build it)."""

    def declare(check_fn: Callable[..., dg.AssetCheckResult]) -> StageCheck:
        return StageCheck(check_fn, asset, description, blocking)

    return declare


def evaluated_per_partition(
    check_fn: Callable[..., dg.AssetCheckResult],
) -> Callable[..., Any]:  # what dg.asset_check takes: a generator of these events
    """The check's one result for its run's range, recorded on EVERY partition of the range.

    Dagster plans a partitioned check once per partition of a range run but files an
    `AssetCheckResult` under no partition, so the UI showed each check as Skipped (and the range
    as unchecked). So the range's result is written as one evaluation per partition, each against
    that partition's latest materialization: its status (passed or not, and the severity) is what
    the UI shows for the partition. The description, the metadata and the blocking flag go on the
    last partition's only (the check's latest execution in the UI), as the assets' metadata does:
    each evaluation is stored three times (the run's log, the cross-run index, the check's
    executions), and Dagster repeats the description twice more in the event's messages, so a copy
    per partition would make each event too large to share a SQLite page; one failed blocking
    evaluation stops the run's later steps, and one per partition would only repeat the failure."""

    @functools.wraps(check_fn)
    def per_partition(
        context: dg.AssetCheckExecutionContext, *args: Any, **kwargs: Any
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        result = check_fn(context, *args, **kwargs)
        spec = next(iter(context.check_specs))
        *others, last = context.partition_keys
        targets = _latest_materializations(context.instance, spec.asset_key, [*others, last])
        for key in others:
            yield dg.AssetCheckEvaluation(
                asset_key=spec.asset_key,
                check_name=spec.name,
                passed=result.passed,
                severity=result.severity,
                blocking=False,
                partition=key,
                target_materialization_data=targets.get(key),
            )
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=result.passed,
            severity=result.severity,
            description=result.description,
            metadata=result.metadata,
            blocking=spec.blocking,
            partition=last,
            target_materialization_data=targets.get(last),
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
