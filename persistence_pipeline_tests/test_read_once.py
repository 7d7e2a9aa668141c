"""A run reads each input once: the stages of a range run share the range's trades, its training
set and the runs as of its end (storage/run_reads.py), and what a stage writes is read afresh."""

from collections import Counter

import pandas as pd
import pytest

from persistence_pipeline.core import dataset
from persistence_pipeline.storage.database import Database
from persistence_pipeline_tests.conftest import Q2, EmbeddedRuns, copy_of

pytestmark = pytest.mark.e2e

RANGE_TRADES = "SELECT * FROM trades WHERE entry_time >= ? AND entry_time < ?"
RUNS_AS_OF = "SELECT * FROM run_metrics WHERE model_kind = ? AND range_end <= ?"


def test_a_run_reads_its_trades_training_set_and_runs_once(
    embedded_runs: EmbeddedRuns, tmp_path, monkeypatch
):
    """Every stage and check of the range counted: before, the range's trades were read by six
    steps and the training set built three times."""
    project = copy_of(embedded_runs.one, tmp_path)
    reads: Counter[tuple[str, tuple]] = Counter()
    builds: list[int] = []
    query, build = Database.query, dataset.training_set

    def counted_query(self, sql, params=(), read_only=False):
        reads[(sql, tuple(map(str, params)))] += 1
        return query(self, sql, params, read_only)

    def counted_build(*args, **kwargs):
        builds.append(1)
        return build(*args, **kwargs)

    monkeypatch.setattr(Database, "query", counted_query)
    monkeypatch.setattr("persistence_pipeline.assets.stage.training_set", counted_build)
    assert project.materialize(*Q2).success
    start, end = pd.Timestamp(Q2[0], tz="UTC"), pd.Timestamp(Q2[1], tz="UTC") + pd.Timedelta(days=1)
    range_reads = {params: n for (sql, params), n in reads.items() if sql.startswith(RANGE_TRADES)}
    assert range_reads[(str(start), str(end))] == 1
    assert len(builds) == 1
    runs_reads: Counter[tuple] = Counter()
    for (sql, params), n in reads.items():
        if sql.startswith(RUNS_AS_OF):
            runs_reads[params] += n
    # the runs as of the range end, read by five stages: once, after the importance stage filled
    # this run's row; as of the day before the range (the previous run): once before and once
    # after that write
    assert runs_reads[("ridge", Q2[1])] == 1 and runs_reads[("ridge", "2021-03-31")] == 2
