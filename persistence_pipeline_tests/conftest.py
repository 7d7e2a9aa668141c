"""Shared fixtures: real warehouses and checkpoint folders under tmp_path, real range runs."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from persistence_pipeline.definitions import ASSET_CHECKS, ASSETS
from persistence_pipeline.history import HISTORY_ASSETS, HISTORY_CHECKS
from persistence_pipeline.resources import AnalysisSettings, ModelSettings, TradeSource, resources_under

# Two pytest-xdist workers share the two cores: scikit-learn's OpenMP threads (gradient-boosted trees)
# would oversubscribe them and spin-wait (a 0.5 s walk-forward took 65 s beside one busy process).
# One thread per worker, here and in the CLI processes the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")
threadpool_limits(1)


# The modules that take longest (seconds on two workers, measured with --durations=0), started
# first: `--dist loadscope --no-loadscope-reorder` hands the workers modules in this order (the first
# four two by two: the first and third to one worker, the second and fourth to the other), so a long
# module collected last cannot leave a worker idle at the end. Those that need the embedded runs
# alternate with those that do not: one worker builds them while the other works.
LONGEST_FIRST = [
    "test_crashes",  # embedded runs
    "test_pipeline",
    "test_whole_or_absent",  # embedded runs
    "test_planted_signal",
    "test_process_safety",
    "test_browser",
    "test_dashboard_schedule_report",
    "test_run_order",
    "test_trust",
    "test_history",
    "test_bad_input",
    "test_assets",
    "test_dashboard_panels",
]


LAYERS = ("core", "storage", "assets", "e2e")
# fixtures that build or copy a pipeline's warehouse: not for the core and storage layers, which
# `pytest -m "core or storage"` runs in seconds
PIPELINE_FIXTURES = {"embedded_runs", "project"}


def layer_problem(item: pytest.Item) -> str | None:
    """Why the test's layer markers do not say what it is: it has one layer, and a core or storage
    test builds no pipeline."""
    layers = [name for name in LAYERS if item.get_closest_marker(name) is not None]
    if len(layers) != 1:
        return f"{item.nodeid}: one layer marker of {LAYERS} is needed, it has {layers}"
    fixtures = PIPELINE_FIXTURES & set(getattr(item, "fixturenames", ()))
    if layers[0] in ("core", "storage") and fixtures:
        return f"{item.nodeid}: a {layers[0]} test uses the pipeline fixture(s) {sorted(fixtures)}"
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects: every collected test is judged
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    problems = [problem for item in items if (problem := layer_problem(item))]
    if problems:
        raise pytest.UsageError("test layer markers:\n" + "\n".join(problems))

    def rank(item: pytest.Item) -> int:
        module = item.path.stem
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module's own order is kept


@dataclass
class Project:
    """A warehouse file and checkpoint folder of one test, and the resources that point at them."""

    root: Path
    trade_source: TradeSource
    model_settings: ModelSettings
    analysis_settings: AnalysisSettings = field(default_factory=AnalysisSettings)

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    def resources(self) -> dict:
        return resources_under(self.root, self.trade_source, self.model_settings, self.analysis_settings)

    def materialize(
        self,
        start: str,
        end: str,
        raise_on_error: bool = True,
        without: tuple[str, ...] = (),
        instance: dg.DagsterInstance | None = None,
        monthly: bool = False,
    ) -> dg.ExecuteInProcessResult:
        """Every asset and check of the code location over [start, end] (but the stages named in
        `without`), as one range run; with `monthly`, of the history code location (start and end
        are then months' first days)."""
        definitions, prefix = (
            ([*HISTORY_ASSETS, *HISTORY_CHECKS], ["history"]) if monthly else ([*ASSETS, *ASSET_CHECKS], [])
        )
        skipped = dg.AssetSelection.assets(*(dg.AssetKey([*prefix, name]) for name in without))
        return dg.materialize(
            definitions,
            selection=dg.AssetSelection.all() - skipped if without else None,
            resources=self.resources(),
            instance=instance,
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
            raise_on_error=raise_on_error,
        )

    def invoke(self, asset: dg.AssetsDefinition, start: str, end: str) -> object:
        """One stage alone, invoked directly over [start, end] (`build_asset_context`), on this
        project's warehouse: the asset layer without a Dagster run."""
        context = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange(start, end))
        resources = self.resources()
        return asset(
            context, **{key: resources[key] for key in asset.required_resource_keys if key in resources}
        )

    def table(self, name: str, order_by: str | None = None) -> pd.DataFrame:
        with duckdb.connect(str(self.warehouse_path), read_only=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(f"SELECT * FROM {name}" + (f" ORDER BY {order_by}" if order_by else "")).df()


class RunEvents:
    """The events of a finished range run, read as from its `ExecuteInProcessResult` (the embedded runs
    are shared by the test workers through files, and a result object cannot be)."""

    def __init__(self, events: list[dg.DagsterEvent]):
        self.all_events = events
        (self.run_id,) = {(e.logging_tags or {}).get("run_id") for e in events} - {None}

    def get_asset_materialization_events(self) -> list[dg.DagsterEvent]:
        return [e for e in self.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]

    def get_asset_check_evaluations(self) -> list[dg.AssetCheckEvaluation]:
        return [
            e.asset_check_evaluation_data
            for e in self.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]


def check_evaluation(
    result: dg.ExecuteInProcessResult | RunEvents, check_name: str
) -> dg.AssetCheckEvaluation:
    """A check's result in a range run as the UI shows it: on every partition of the range, with its
    metadata on the last one (returned here)."""
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == check_name]
    return max(evaluations, key=lambda e: str(e.partition))


FAST_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else None


def dagster_home(folder: Path) -> Path:
    """The DAGSTER_HOME of the CLI runs of a test folder. Dagster's SQLite event log syncs to disk on
    every event (one per partition and asset); on a memory file system (/dev/shm) a quarter's CLI run
    takes 17 s instead of 27 s here. What the tests check is in the warehouse under `folder`."""
    if FAST_ROOT is None:
        return folder / "home"
    return (
        FAST_ROOT / f"persistence-tests-{os.getpid()}" / hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    )


def project_env(folder: Path, home: Path) -> dict[str, str]:
    """The environment of a CLI process whose Dagster instance is `home` and whose warehouse,
    checkpoints and dashboards are under `folder`."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PERSISTENCE_WAREHOUSE": str(folder / "warehouse.duckdb"),
        "PERSISTENCE_CHECKPOINTS": str(folder / "checkpoints"),
        "PERSISTENCE_DASHBOARDS": str(folder / "dashboard"),
    }


def materialize_command(first: str, last: str, module: str = "persistence_pipeline.definitions") -> list[str]:
    """The README's `dagster asset materialize -m module --select '*' --partition-range first...last`."""
    dagster = str(Path(sys.executable).parent / "dagster")
    return [
        dagster,
        "asset",
        "materialize",
        "-m",
        module,
        "--select",
        "*",
        "--partition-range",
        f"{first}...{last}",
    ]


@pytest.fixture(scope="session", autouse=True)
def _remove_fast_dagster_homes() -> Iterator[None]:
    yield
    if FAST_ROOT is not None:
        shutil.rmtree(FAST_ROOT / f"persistence-tests-{os.getpid()}", ignore_errors=True)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path, TradeSource(), ModelSettings())


@dataclass(frozen=True)
class EmbeddedRuns:
    """Two consecutive quarterly runs of the embedded data (Q1 cold, Q2 warm-started from Q1):
    `one` is the project as it was after Q1, `two` after both, `first_result` Q1's events. Tests that
    write work on a copy."""

    one: Project
    two: Project
    first_result: RunEvents


Q1, Q2 = ("2021-01-04", "2021-03-31"), ("2021-04-01", "2021-06-30")


@pytest.fixture(scope="session")
def embedded_runs(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedRuns:
    """Built once per test session: the first pytest-xdist worker to need them builds them in the
    session's shared temporary folder while the other waits for it (17 s saved)."""
    base = tmp_path_factory.getbasetemp()  # a worker's is popen-gwN in the session's own folder
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "embedded_runs"
    root.mkdir(exist_ok=True)
    events = root / "first_events.json"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not events.exists():
            two = Project(root / "two", TradeSource(), ModelSettings())
            first = two.materialize(*Q1)
            shutil.copytree(two.root, root / "one")
            two.materialize(*Q2)
            events.write_text(dg.serialize_value(list(first.all_events)))
    first_events = dg.deserialize_value(events.read_text(), list)
    return EmbeddedRuns(
        Project(root / "one", TradeSource(), ModelSettings()),
        Project(root / "two", TradeSource(), ModelSettings()),
        RunEvents(first_events),
    )


def copy_of(project: Project, destination: Path) -> Project:
    """The project's files copied under `destination` (checkpoint paths still name the originals,
    which are only read)."""
    shutil.copytree(project.root, destination, dirs_exist_ok=True)
    return Project(destination, project.trade_source, project.model_settings, project.analysis_settings)
