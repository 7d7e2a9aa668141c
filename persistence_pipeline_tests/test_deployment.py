"""The deployment of the docs page "Scaling past one machine" (docs/how-to/postgres.md), as written
there: its `dagster.yaml` (read out of the page, so the two cannot drift) on a real Postgres, its
commands (the pool limit, the daemon, range runs submitted through the queue), and the `dg` commands.

Marker `deployment`: not in the default run (`pytest -m deployment` runs them; .ci/run does, after
starting a Postgres cluster on 127.0.0.1 and creating the user and database with the page's SQL).
The Postgres test reads DAGSTER_PG_HOST, _PORT, _USER, _PASSWORD and _DB and makes a fresh database
of its own (the role needs CREATEDB); without them, or without the `postgres` extra, it skips and says
why, and with PERSISTENCE_REQUIRE_POSTGRES=1 (set by CI) it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import dagster as dg
import duckdb
import pandas as pd
import pytest

from persistence_pipeline.definitions import ASSETS
from persistence_pipeline.storage.contract import FIXED_TABLES, quote_identifier
from persistence_pipeline.storage.database import Database
from persistence_pipeline.storage.publish import staged_runs
from persistence_pipeline_tests.conftest import dagster_home, materialize_command, project_env

pytestmark = [pytest.mark.deployment, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
QUARTERS = [("2021-01-04", "2021-03-31"), ("2021-04-01", "2021-06-30"), ("2021-07-01", "2021-09-30")]
PG_VARIABLES = [
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
]
# differ between two runs of the same range by construction: the Dagster run and the wall clock
VOLATILE = {"dagster_run_id", "created_at", "loaded_at"}
RUNS_DEADLINE_SECONDS = 600
RUN_LIFECYCLE = [
    dg.DagsterEventType.RUN_ENQUEUED,
    dg.DagsterEventType.RUN_STARTING,
    dg.DagsterEventType.RUN_START,
    dg.DagsterEventType.RUN_SUCCESS,
]


# ---------------------------------------------------------------- the docs page, read as written

DEPLOYMENT_PAGE = REPO / "docs" / "how-to" / "postgres.md"


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", DEPLOYMENT_PAGE.read_text(), flags=re.S | re.M)


def documented_commands(block: str) -> list[list[str]]:
    """The argv of each line of a ```sh block, without its comment and a trailing `&`, with the
    page's `.venv/bin/` being the bin folder of the interpreter running the tests."""
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[-1] == "&":
            words = words[:-1]
        if words:
            assert words[0].startswith(".venv/bin/"), line
            commands.append([str(BIN / Path(words[0]).name), *words[1:]])
    return commands


def with_tags(launch: list[str], first: str, last: str) -> list[str]:
    """The page's `dagster job launch` line for another range: only the range tags change."""
    at = launch.index("--tags") + 1
    assert json.loads(launch[at]) == {RANGE_START: QUARTERS[0][0], RANGE_END: QUARTERS[0][1]}
    return [*launch[:at], json.dumps({RANGE_START: first, RANGE_END: last}), *launch[at + 1 :]]


# ---------------------------------------------------------------- processes


def run_to_end(command: list[str], env: dict[str, str], timeout: float = 900) -> str:
    result = subprocess.run(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{shlex.join(command)} exited {result.returncode}:\n{result.stdout[-4000:]}"
    )
    return result.stdout


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A long-running command (the daemon, the dev server) in its own process group, output to `log`;
    the group (its code servers and run workers too) is terminated at the end."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
        try:
            yield process
        finally:
            _stop_group(process)


def _default_sigint() -> None:
    """Dagster's commands handle SIGTERM as they handle SIGINT, and a process started in the
    background of a shell inherits SIGINT ignored: give them the default, so SIGTERM stops them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_group(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            time.sleep(1)  # the group's other members end on their own (heartbeat) or at the next signal
        except subprocess.TimeoutExpired:
            continue


def wait_until(condition: Callable[[], bool], seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
            raise AssertionError(f"{what} within {seconds} s\n{tail}")
        time.sleep(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- Postgres


def _postgres_unavailable(reason: str) -> NoReturn:
    if os.environ.get("PERSISTENCE_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"the deployment test needs Postgres, but {reason}")
    pytest.skip(reason)


def _admin(settings: dict[str, str], statement: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE), as the page's user, connected to
    its database."""
    import psycopg2

    con = psycopg2.connect(
        host=settings["DAGSTER_PG_HOST"],
        port=int(settings["DAGSTER_PG_PORT"]),
        user=settings["DAGSTER_PG_USER"],
        password=settings["DAGSTER_PG_PASSWORD"],
        dbname=settings["DAGSTER_PG_DB"],
        connect_timeout=10,
    )
    try:
        con.autocommit = True
        with con.cursor() as cursor:
            cursor.execute(statement)
    finally:
        con.close()


@pytest.fixture
def fresh_postgres_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new database on the Postgres of the DAGSTER_PG_* variables, dropped afterwards; the
    variables of this process name it (the instance's `{env: DAGSTER_PG_DB}` reads it here too)."""
    missing = [name for name in PG_VARIABLES if not os.environ.get(name)]
    if missing:
        _postgres_unavailable(f"{', '.join(missing)} not set (.ci/run starts a cluster and sets them)")
    try:
        import psycopg2
    except ImportError:
        _postgres_unavailable("the postgres extra is not installed (pip install -e '.[postgres]')")
    settings = {name: os.environ[name] for name in PG_VARIABLES}
    name = f"persistence_test_{uuid.uuid4().hex[:12]}"
    try:
        _admin(settings, f'CREATE DATABASE "{name}"')
    except psycopg2.OperationalError as error:
        _postgres_unavailable(
            f"Postgres at {settings['DAGSTER_PG_HOST']}:{settings['DAGSTER_PG_PORT']} is unreachable: {error}"
        )
    except psycopg2.errors.InsufficientPrivilege:
        _postgres_unavailable(f"the role {settings['DAGSTER_PG_USER']} cannot create a database (CREATEDB)")
    monkeypatch.setenv("DAGSTER_PG_DB", name)
    try:
        yield name
    finally:
        _admin(settings, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------- the warehouse


def contract_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every contract table, sorted by its key, without the volatile columns; checkpoint paths
    relative to the checkpoint folder."""
    out = {}
    with duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        for table, (_, key) in FIXED_TABLES.items():
            order = ", ".join(quote_identifier(column) for column in key)
            frame = con.execute(f"SELECT * FROM main.{quote_identifier(table)} ORDER BY {order}").df()
            frame = frame.drop(columns=[column for column in frame.columns if column in VOLATILE])
            if "path" in frame:
                frame["path"] = [
                    str(Path(path).relative_to(folder / "checkpoints")) for path in frame["path"]
                ]
            out[table] = frame
    return out


def materialize_sequentially(folder: Path) -> None:
    """The same three ranges, one after the other, each with `dagster asset materialize` (no queue)."""
    home = dagster_home(folder)
    home.mkdir(parents=True)
    for first, last in QUARTERS:
        run_to_end(materialize_command(first, last), project_env(folder, home))


def submit_in_order(
    launch: list[str],
    env: dict[str, str],
    instance: dg.DagsterInstance,
    launches: list[tuple[Path, subprocess.Popen]],
    submitted: list[str],
    logs: Path,
) -> None:
    """The page's `dagster job launch` for each quarter, the next one started as soon as the run of
    the previous one exists (the queue takes runs in the order they were created); the processes go
    to `launches`, the run ids to `submitted`."""
    for index, (first, last) in enumerate(QUARTERS):
        log = logs / f"launch-{index}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                with_tags(launch, first, last), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        launches.append((log, process))

        def runs(first: str = first) -> list[dg.DagsterRun]:
            return list(instance.get_runs(filters=dg.RunsFilter(tags={RANGE_START: first})))

        wait_until(lambda: bool(runs()), 180, f"no run of the range starting {first} was created", log)
        (run,) = runs()
        assert run.tags[RANGE_END] == last and run.job_name == "__ASSET_JOB"
        submitted.append(run.run_id)


# ---------------------------------------------------------------- the tests


def test_range_runs_submitted_at_once_go_through_the_postgres_queue_one_at_a_time_in_order(
    tmp_path: Path, fresh_postgres_database: str
):
    """The page's dagster.yaml verbatim on Postgres, the daemon as documented, and three quarters
    submitted at once with the documented `dagster job launch` (each command starts as soon as the
    previous one's run exists, so the submission order is known): each run is queued, the runs never
    overlap and start in submission order, all succeed, and the warehouse holds exactly what three
    sequential `dagster asset materialize` runs leave: every contract table (but `dagster_run_id`,
    `created_at`, `loaded_at`), the checkpoints (paths and sha256) and the dashboard PNGs."""
    (yaml,) = code_blocks("yaml")
    assert "scheme: postgresql+psycopg2" in yaml and "granularity: run" in yaml
    set_pool_limit, daemon, launch = documented_commands(code_blocks("sh")[0])
    assert set_pool_limit[1:] == ["instance", "concurrency", "set", "warehouse", "1"]
    assert daemon[1:] == ["run", "-m", "persistence_pipeline.definitions"]
    assert launch[1:4] == ["job", "launch", "-j"] and "__ASSET_JOB" in launch

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml)
    queued = tmp_path / "queued"
    env = project_env(queued, home)
    run_to_end(set_pool_limit, env)

    with (
        ThreadPoolExecutor(1) as pool_of_one,
        running(daemon, env, tmp_path / "daemon.log") as daemon_process,
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        sequential = pool_of_one.submit(materialize_sequentially, tmp_path / "sequential")
        submitted: list[str] = []  # run ids, in submission order
        launches: list[tuple[Path, subprocess.Popen]] = []
        try:
            submit_in_order(launch, env, instance, launches, submitted, tmp_path)
            for log, process in launches:
                assert process.wait(timeout=300) == 0, log.read_text()[-4000:]
        finally:
            for _, process in launches:
                if process.poll() is None:
                    process.kill()

        def finished() -> bool:
            assert daemon_process.poll() is None, "the daemon exited"
            statuses = [run.status for run in instance.get_runs(filters=dg.RunsFilter(run_ids=submitted))]
            failed = [
                status
                for status in statuses
                if status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
            ]
            assert not failed, statuses
            return all(status == dg.DagsterRunStatus.SUCCESS for status in statuses)

        wait_until(
            finished, RUNS_DEADLINE_SECONDS, "the three runs did not all succeed", tmp_path / "daemon.log"
        )
        records = {record.dagster_run.run_id: record for record in instance.get_run_records()}
        assert sorted(records) == sorted(submitted)
        for run_id in submitted:  # each run passed through the queue: QUEUED, then launched by the daemon
            lifecycle = [
                event.dagster_event_type
                for event in instance.all_logs(run_id)
                if event.dagster_event_type in RUN_LIFECYCLE
            ]
            assert lifecycle == RUN_LIFECYCLE, (run_id, lifecycle)
        intervals = [(records[run_id].start_time, records[run_id].end_time) for run_id in submitted]
        sequential.result()

    for (start, end), (next_start, _) in zip(intervals, intervals[1:], strict=False):
        assert start is not None and end is not None and next_start is not None
        assert end <= next_start, f"runs overlap or start out of order: {intervals}"

    with duckdb.connect(str(queued / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute(
            "SELECT run_key, dagster_run_id FROM run_metrics ORDER BY range_start"
        ).fetchall() == [
            (f"{first}..{last}/ridge", run_id)
            for (first, last), run_id in zip(QUARTERS, submitted, strict=True)
        ]
        assert con.execute("SELECT count(*) = count(DISTINCT trade_id) FROM trades").fetchone() == (True,)
    assert staged_runs(Database(str(queued / "warehouse.duckdb"))) == []
    expected, stored = contract_tables(tmp_path / "sequential"), contract_tables(queued)
    for table in FIXED_TABLES:
        pd.testing.assert_frame_equal(stored[table], expected[table], obj=table)
    priors_from = stored["run_metrics"]["priors_from_run_key"]
    assert priors_from.astype(object).where(priors_from.notna(), None).tolist() == [
        None,
        f"{QUARTERS[0][0]}..{QUARTERS[0][1]}/ridge",
        f"{QUARTERS[1][0]}..{QUARTERS[1][1]}/ridge",
    ]
    for first, last in QUARTERS:
        png = f"dashboard/{first}..{last}_ridge.png"
        assert (queued / png).read_bytes() == (tmp_path / "sequential" / png).read_bytes()


def test_dg_checks_the_definitions_launches_a_range_run_and_serves_the_code_location(tmp_path: Path):
    """The page's `dg` lines as written: `dg check defs` validates the code location, `dg launch`
    runs the range as ONE run in its own process (the instance's queue is bypassed: no daemon runs,
    the run is never QUEUED), and `dg dev` serves the code location with every asset."""
    check, launch, dev = documented_commands(code_blocks("sh")[1])
    assert check[1:] == ["check", "defs"]
    assert launch[1:] == ["launch", "--assets", "*", "--partition-range", "2021-01-04...2021-03-31"]
    assert dev[1:] == ["dev", "-h", "127.0.0.1"]
    home = dagster_home(tmp_path)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    env = project_env(tmp_path, home)

    assert "All definitions loaded successfully." in run_to_end(check, env)

    run_to_end(launch, env)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert (run.tags[RANGE_START], run.tags[RANGE_END]) == ("2021-01-04", "2021-03-31")
        lifecycle = [
            event.dagster_event_type
            for event in instance.all_logs(run.run_id)
            if event.dagster_event_type in RUN_LIFECYCLE
        ]
        assert lifecycle == RUN_LIFECYCLE[2:]  # started in this process: never QUEUED nor launched
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT run_key, dagster_run_id FROM run_metrics").fetchall() == [
            ("2021-01-04..2021-03-31/ridge", run.run_id)
        ]
        assert con.execute("SELECT count(*) FROM feature_importance_history").fetchone() == (24,)

    port = free_port()
    with running([*dev, "-p", str(port)], env, tmp_path / "dev.log"):
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                    return True
            except OSError:
                return False

        wait_until(answers, 120, "dg dev did not answer", tmp_path / "dev.log")
        query = (
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError {"
            " ... on RepositoryLocation { repositories { assetNodes { assetKey { path } } } } } } } } }"
        )
        request = urllib.request.Request(
            f"{url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            (entry,) = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    assert (entry["name"], entry["loadStatus"]) == ("persistence_pipeline", "LOADED")
    (repository,) = entry["locationOrLoadError"]["repositories"]
    served = {"/".join(node["assetKey"]["path"]) for node in repository["assetNodes"]}
    assert served == {key.to_user_string() for asset in ASSETS for key in asset.keys}
