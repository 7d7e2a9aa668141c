"""The `history` code location: the same stages on monthly partitions. A range of months is the run
of its days, with the same rows, and warm-starts from (and is read by) the daily runs; its checks are
recorded on every month of the range."""

import dagster as dg
import pandas as pd
import pytest

from persistence_pipeline.definitions import ASSETS, defs
from persistence_pipeline.history import HISTORY_ASSETS, HISTORY_CHECKS
from persistence_pipeline.history import defs as history_defs
from persistence_pipeline.partitions import (
    EMBEDDED_DATA_END,
    first_of_month,
    monthly_partitions,
    monthly_partitions_end,
    partitions_end,
    whole_months,
)
from persistence_pipeline.resources import ModelSettings, TradeSource, Warehouse
from persistence_pipeline.sensors import history_months, stale_history_runs_sensor, stale_runs_sensor
from persistence_pipeline.storage.contract import FIXED_TABLES
from persistence_pipeline.storage.database import Database
from persistence_pipeline_tests.conftest import Q1, EmbeddedRuns, Project, copy_of, dagster_home
from persistence_pipeline_tests.test_export import warehouse_tables
from persistence_pipeline_tests.test_process_safety import cli, finish, tables

pytestmark = pytest.mark.e2e

Q1_KEY = f"{Q1[0]}..{Q1[1]}/ridge"


def test_the_history_location_has_every_stage_and_check_on_months_under_its_prefix():
    daily_graph = defs.resolve_asset_graph()
    graph = history_defs.resolve_asset_graph()
    keys = {key for asset in ASSETS for key in asset.keys}
    assert set(graph.get_all_asset_keys()) == {key.with_prefix("history") for key in keys}
    for key in keys:  # the same lineage, under history/
        node = graph.get(key.with_prefix("history"))
        assert node.parent_keys == {
            parent.with_prefix("history") for parent in daily_graph.get(key).parent_keys
        }
        assert node.partitions_def == monthly_partitions and node.group_name == "history"
    checks = {
        (key.asset_key.to_user_string(), key.name) for check in HISTORY_CHECKS for key in check.check_keys
    }
    daily_checks = {(key.asset_key.to_user_string(), key.name) for key in daily_graph.asset_check_keys}
    assert checks == {(f"history/{asset}", name) for asset, name in daily_checks} and len(checks) == 9
    assert all(spec.partitions_def == monthly_partitions for c in HISTORY_CHECKS for spec in c.check_specs)
    assert len(HISTORY_ASSETS) == len(ASSETS)


def test_monthly_partitions_end_with_the_month_of_the_sources_last_day():
    assert monthly_partitions.get_first_partition_key() == "2013-01-01" == first_of_month("2013-01-02")
    assert EMBEDDED_DATA_END == "2023-09-21" and monthly_partitions.get_last_partition_key() == "2023-09-01"
    assert monthly_partitions_end({"PERSISTENCE_PARTITIONS_END": "2024-12-31"}) == "2025-01-01"
    assert monthly_partitions_end({"PERSISTENCE_PARTITIONS_END": "2025-01-01"}) == "2025-02-01"
    user_source = {"PERSISTENCE_TRADE_SOURCE": "trade_log"}
    assert partitions_end(user_source) is None and monthly_partitions_end(user_source) is None


def test_a_range_of_months_through_the_cli_is_the_run_of_its_days(embedded_runs: EmbeddedRuns, tmp_path):
    """The second embedded quarter (2021-04-01..2021-06-30, whole months) as three monthly partitions
    of the history location, after the daily first quarter: ONE run whose tables, checkpoint and
    dashboard equal those of the daily run of the same days (warm-started from the same daily run),
    with each check's result on each month."""
    project = copy_of(embedded_runs.one, tmp_path)
    output = finish(cli(tmp_path, "2021-04-01", "2021-06-01", module="persistence_pipeline.history"))
    assert "RUN_SUCCESS" in output
    history, daily = tables(project.warehouse_path), tables(embedded_runs.two.warehouse_path)
    assert history.keys() == daily.keys()
    for name in daily:
        pd.testing.assert_frame_equal(history[name], daily[name], obj=name)
    history_all, daily_all = (
        warehouse_tables(project.warehouse_path),
        warehouse_tables(embedded_runs.two.warehouse_path),
    )
    for name in set(FIXED_TABLES) - set(
        daily
    ):  # the tables the helper leaves out: when each range was loaded
        volatile = ["loaded_at"] if name == "trade_loads" else []
        pd.testing.assert_frame_equal(
            history_all[name].drop(columns=volatile), daily_all[name].drop(columns=volatile), obj=name
        )
    png = "2021-04-01..2021-06-30_ridge.png"
    assert (tmp_path / "dashboard" / png).read_bytes() == (
        embedded_runs.two.root / "dashboard" / png
    ).read_bytes()
    with dg.DagsterInstance.from_config(str(dagster_home(tmp_path))) as instance:
        (run,) = instance.get_run_records()
        months = ["2021-04-01", "2021-05-01", "2021-06-01"]
        for check in HISTORY_CHECKS:
            (key,) = check.check_keys
            evaluations = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
            assert sorted(str(e.partition) for e in evaluations) == months, key
            (status,) = {e.status.value for e in evaluations}  # the range's one result, decided on each month
            assert status in {"SUCCEEDED", "FAILED"}, key
            for record in evaluations:  # each judged that month's materialization in this run
                assert record.event is not None and record.event.dagster_event is not None
                evaluation = record.event.dagster_event.asset_check_evaluation_data
                target = evaluation.target_materialization_data
                assert target is not None and target.run_id == run.dagster_run.run_id, key
        materialized = instance.get_materialized_partitions(dg.AssetKey(["history", "persistence_dashboard"]))
        assert materialized == set(months)


def test_a_stale_run_of_years_of_months_is_recomputed_by_the_history_sensor(
    embedded_runs: EmbeddedRuns, tmp_path
):
    """A history run of 15 months after the daily first quarter, which then changes (its checkpoint
    re-materialized with another result): the history run is stale; the daily location's sensor
    leaves it to the history location's, which requests its months (not 456 daily partitions)."""
    project = copy_of(embedded_runs.one, tmp_path)
    assert project.materialize("2021-04-01", "2022-06-01", monthly=True).success
    Database(str(project.warehouse_path)).query(
        "UPDATE checkpoints SET sha256 = 'another result' WHERE run_key = ?", [Q1_KEY]
    )
    resources = {"warehouse": Warehouse(path=str(project.warehouse_path)), "model_settings": ModelSettings()}
    with dg.DagsterInstance.ephemeral() as instance:
        daily = stale_runs_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        history = stale_history_runs_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(daily, dg.SkipReason) and daily.skip_message == (
        "the oldest stale run, 2021-04-01..2022-06-30/ridge, is recomputed by the history code location's "
        "sensor (stale_history_runs_sensor); the later stale runs wait for it"
    )
    assert isinstance(history, dg.RunRequest) and history.tags == {
        "dagster/asset_partition_range_start": "2021-04-01",
        "dagster/asset_partition_range_end": "2022-06-01",
    }
    day = pd.Timestamp
    assert history_months(day("2021-04-01"), day("2022-06-30")) == ("2021-04-01", "2022-06-01")
    assert not history_months(day("2021-04-01"), day("2021-06-30"))  # a quarter: the daily sensor's
    assert not history_months(day("2021-04-02"), day("2022-06-30"))  # not whole months
    assert not history_months(day("2021-04-01"), day("2022-06-29"))
    # where the daily partitions start and end, a month is cut to their days (partitions.clipped)
    assert whole_months(day("2013-01-02"), day("2014-03-31")) == ("2013-01-01", "2014-03-01")
    assert whole_months(day("2022-07-01"), day("2023-09-21")) == ("2022-07-01", "2023-09-01")
    assert whole_months(day("2022-07-01"), day("2023-09-20")) is None


def test_the_first_and_last_months_are_cut_to_the_sources_days(tmp_path):
    """The monthly partitions start on the month of the daily partitions' first day and end with the
    month of their last: a run of those months is the run of the days the source has."""
    project = Project(tmp_path, TradeSource(), ModelSettings())
    assert project.invoke(HISTORY_ASSETS[0], "2023-07-01", "2023-09-01") is not None
    assert project.table("trade_loads")[["range_start", "range_end"]].astype(str).values.tolist() == [
        ["2023-07-01", "2023-09-21"]
    ]
