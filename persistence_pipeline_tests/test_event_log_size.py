"""What a range run writes per partition to Dagster's event log: the run's metadata and each check's
description once, on the range's last partition; every other partition's materialization and check
evaluation only what the UI shows for it (the partition, its run, the check's status)."""

import dagster as dg
import pytest

from persistence_pipeline.assets.trades import trades
from persistence_pipeline.definitions import ASSETS
from persistence_pipeline_tests.conftest import Project, dagster_home

pytestmark = pytest.mark.e2e

FIRST, LAST = "2021-01-04", "2021-02-28"  # the trades alone: eight weeks, enough trades to train on
DAYS = 56
LATER_STAGES = tuple(key.path[-1] for asset in ASSETS for key in asset.keys if key != trades.key)
HALF_A_PAGE = 2_000  # bytes: two events share a 4 KB SQLite page, with the row's other columns


def test_only_the_last_partition_carries_the_metadata_and_the_check_results(project: Project, tmp_path):
    home = dagster_home(tmp_path)
    home.mkdir(parents=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = project.materialize(FIRST, LAST, without=LATER_STAGES, instance=instance)
        stored = instance.all_logs(
            result.run_id,
            of_type={dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION},
        )
    direct = project.invoke(trades, FIRST, LAST)  # outside a run: the result carries it all
    assert isinstance(direct, dg.MaterializeResult) and direct.metadata is not None

    materialized = {str(e.partition): e.materialization for e in result.get_asset_materialization_events()}
    assert len(materialized) == DAYS and max(materialized) == LAST
    last = materialized.pop(LAST)
    assert set(last.metadata) == set(direct.metadata)
    assert last.metadata["run_key"] == dg.TextMetadataValue(f"{FIRST}..{LAST}/ridge")
    assert all(not m.metadata for m in materialized.values())

    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 2 * DAYS
    for name in ["trades_are_valid", "trades_have_plausible_returns"]:
        *others, final = sorted(
            (e for e in evaluations if e.check_name == name), key=lambda e: str(e.partition)
        )
        assert final.partition == LAST and final.description and final.metadata
        assert final.blocking == (name == "trades_are_valid")
        for evaluation in others:
            assert (evaluation.passed, evaluation.severity) == (final.passed, final.severity)
            assert evaluation.target_materialization_data is not None
            assert evaluation.target_materialization_data.run_id == result.run_id
            assert not evaluation.description and not evaluation.metadata and not evaluation.blocking

    light = [e for e in stored if partition(e) != LAST]
    assert len(light) == 3 * (DAYS - 1)
    assert max(len(dg.serialize_value(e)) for e in light) < HALF_A_PAGE


def partition(entry: dg.EventLogEntry) -> str | None:
    event = entry.get_dagster_event()
    return event.partition if event.is_step_materialization else event.asset_check_evaluation_data.partition
