"""The same ranges give the same tables whatever the order of their runs: a run records the runs it
read (storage/staleness.py), a range materialized later that ends before it makes it stale, and the
`stale_runs` sensor re-materializes stale runs oldest first. (Concurrent CLI runs on one warehouse:
test_process_safety.py.)"""

import dagster as dg
import pandas as pd
import pytest

from persistence_pipeline.__main__ import main
from persistence_pipeline.resources import ModelSettings, TradeSource, Warehouse
from persistence_pipeline.sensors import stale_runs_sensor
from persistence_pipeline.storage.database import Database
from persistence_pipeline.storage.staleness import stale_runs
from persistence_pipeline_tests.conftest import Q1, Q2, EmbeddedRuns, Project, copy_of
from persistence_pipeline_tests.test_process_safety import TABLES, tables

pytestmark = pytest.mark.e2e

Q1_KEY, Q2_KEY = f"{Q1[0]}..{Q1[1]}/ridge", f"{Q2[0]}..{Q2[1]}/ridge"


def sensor_says(project: Project, instance: dg.DagsterInstance) -> object:
    warehouse = Warehouse(path=str(project.warehouse_path))
    context = dg.build_sensor_context(
        instance=instance, resources={"warehouse": warehouse, "model_settings": ModelSettings()}
    )
    return stale_runs_sensor(context)


def test_runs_in_reverse_order_are_marked_stale_and_the_sensor_makes_them_sequential(
    embedded_runs: EmbeddedRuns, tmp_path
):
    """Q2 then Q1 left Q2 without Q1's priors and stability (before, silently). Q2 is stale, the
    sensor asks for Q2 again, and then every table equals Q1-then-Q2's."""
    project = Project(tmp_path, TradeSource(), ModelSettings())
    db = Database(str(project.warehouse_path))
    with dg.DagsterInstance.ephemeral() as instance:
        project.materialize(*Q2, instance=instance)
        assert stale_runs(db, "ridge").empty
        assert project.table("run_metrics")["priors_from_run_key"].isna().all()
        project.materialize(*Q1, instance=instance)
        stale = stale_runs(db, "ridge")
        assert stale["run_key"].tolist() == [Q2_KEY]
        assert stale["changed"].tolist() == [f"stored since: {Q1_KEY}"]
        request = sensor_says(project, instance)
        assert isinstance(request, dg.RunRequest)
        assert request.tags == {
            "dagster/asset_partition_range_start": Q2[0],
            "dagster/asset_partition_range_end": Q2[1],
        }
        assert project.materialize(*Q2, instance=instance).success
        assert stale_runs(db, "ridge").empty
        idle = sensor_says(project, instance)
        assert isinstance(idle, dg.SkipReason) and idle.skip_message is not None
        assert idle.skip_message.startswith("no stale ridge run")
    inputs = project.table("run_inputs", order_by="run_key, input_run_key")
    assert inputs[["run_key", "input_run_key"]].values.tolist() == [[Q2_KEY, Q1_KEY]]
    reversed_then_fixed = tables(project.warehouse_path)
    sequential = tables(embedded_runs.two.warehouse_path)
    for name in TABLES:
        pd.testing.assert_frame_equal(reversed_then_fixed[name], sequential[name], obj=name)


def test_a_run_whose_input_changed_is_stale_and_the_report_says_so(
    embedded_runs: EmbeddedRuns, tmp_path, capsys
):
    """A run's version is the sha256 of its checkpoint and of its range's trades: Q1 loaded again
    with other trades (here: its recorded trades digest changed) makes Q2, which read Q1, stale;
    Q1 itself read nothing and stays fresh; another model kind is judged apart."""
    project = copy_of(embedded_runs.two, tmp_path)
    db = Database(str(project.warehouse_path))
    assert stale_runs(db, "ridge").empty
    assert main(["report", "--warehouse", str(project.warehouse_path)]) == 0
    assert "  Stale runs: none (every run read the runs stored now)\n" in capsys.readouterr().out
    digests = project.table("run_metrics", order_by="range_end")["inputs_digest"]
    assert digests.notna().all() and digests.nunique() == 2
    db.query("UPDATE trade_loads SET trades_sha256 = 'other' WHERE range_start = ?", [Q1[0]])
    stale = stale_runs(db, "ridge")
    assert stale["run_key"].tolist() == [Q2_KEY]
    assert stale["changed"].tolist() == [f"re-materialized: {Q1_KEY}"]
    assert stale_runs(db, "gbt").empty
    assert main(["report", "--warehouse", str(project.warehouse_path)]) == 0
    assert (
        f"  Stale runs: 1, read runs that changed since; materialize them again oldest first (or turn on "
        f"the stale_runs_sensor): {Q2_KEY} (re-materialized: {Q1_KEY})\n"
    ) in capsys.readouterr().out
