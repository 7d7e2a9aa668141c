"""What every stage asset shares: the daily partitions definition (history.py gives the same assets
monthly ones), the single-run backfill policy (a date range is one run) and the warehouse
concurrency pool (`STAGE`, spread into every decorator); the run's staged view of the warehouse; and
`finish`, which publishes the run whole when its last selected stage is done (storage/publish.py)."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg
from dagster._core.errors import DagsterInvalidPropertyError  # not re-exported by `dagster`

from persistence_pipeline.core.dataset import TrainingSet, training_set
from persistence_pipeline.core.design import DesignParams
from persistence_pipeline.errors import (
    InputDataError,
    MissingRowsError,
    NotEnoughDataError,
    ReversedRangeError,
)
from persistence_pipeline.partitions import (
    RunRange,
    daily_partitions,
    single_run_backfill,
)
from persistence_pipeline.resources import WAREHOUSE_POOL, Warehouse, partial_override
from persistence_pipeline.storage import run_lock
from persistence_pipeline.storage.database import Database
from persistence_pipeline.storage.publish import discard_staging, finish_stage, staged_runs
from persistence_pipeline.storage.run_reads import forget, read_once
from persistence_pipeline.storage.trade_store import trades_between

STAGE: dict[str, Any] = {
    "partitions_def": daily_partitions,
    "backfill_policy": single_run_backfill,
    "pool": WAREHOUSE_POOL,
}

Context = dg.AssetExecutionContext | dg.AssetCheckExecutionContext


def dagster_run(context: Context) -> dg.DagsterRun | None:
    """The Dagster run of the step (None for an asset invoked directly, outside a run)."""
    try:
        return context.run
    except DagsterInvalidPropertyError:
        return None


def run_database(context: Context, warehouse: Warehouse) -> Database:
    """The warehouse as the step's Dagster run sees it: its own staged rows in place of the public
    rows they replace. The run holds the warehouse from its first stage until it publishes, waiting
    for the run that holds it (storage/run_lock.py), so runs never interleave. A re-execution (from
    failure, or a retry) stages under its root run, so it continues the staging of the run it
    re-executes. Outside a run (direct invocation) a stage writes the public tables."""
    run = dagster_run(context)
    if run is None:
        return warehouse.database(staged_by=None)
    staged_by = run.root_run_id or run.run_id
    try:
        run_lock.hold_for_run(warehouse.path, staged_by, warehouse.run_wait_seconds, context.log.info)
    except run_lock.RunLockTimeout as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    return warehouse.database(staged_by=staged_by)


def discard_dead_staging(context: dg.AssetExecutionContext, db: Database) -> None:
    """Forget the staged rows of runs that failed or were killed and are not being re-executed:
    they can never publish (called by the first stage of a run)."""
    if db.staged_by is None:  # a stage invoked directly stages nothing
        return
    stale = [run for run in staged_runs(db) if run != db.staged_by and _cannot_publish(context, run)]
    if stale:
        discard_staging(db, stale)


IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _cannot_publish(context: Context, staged_by: str) -> bool:
    """Whether the staging of a Dagster run (a root run id) can never be published: the run is
    unknown to this instance, or it has finished and no re-execution of it is in progress."""
    run = context.instance.get_run_by_id(staged_by)
    if run is None:
        return True
    if not run.is_finished:
        return False
    children = context.instance.get_runs(
        filters=dg.RunsFilter(tags={"dagster/root_run_id": staged_by}, statuses=IN_PROGRESS), limit=1
    )
    return not children


def stage_name(key: dg.AssetKey) -> str:
    """The stage an asset key stands for: its last part (`history/trades` is the stage `trades` of
    the history code location)."""
    return key.path[-1]


def stage_keys(context: dg.AssetExecutionContext) -> dict[str, dg.AssetKey]:
    """The asset keys of the step by stage name (a multi-asset yields one result per key)."""
    return {stage_name(key): key for key in context.selected_asset_keys}


def finish(context: dg.AssetExecutionContext, db: Database, run_key: str) -> bool:
    """Mark this step's stages of `run_key` done; publish the run when every stage selected for it
    is. Returns whether the run is published."""
    done = [stage_name(key) for key in context.selected_asset_keys]
    if dagster_run(context) is None:
        return finish_stage(db, done, done, run_key)
    selected = [stage_name(key) for key in context.job_def.asset_layer.selected_asset_keys]
    published = finish_stage(db, done, selected, run_key)
    if published and db.staged_by is not None:
        forget(db.staged_by)
        run_lock.release(db.path, db.staged_by)
    return published


def training_data(db: Database, window: RunRange, design: DesignParams, cost: float) -> TrainingSet:
    """The range's training set (core/dataset.py): the model, importance and priors stages of a run
    build it once, from the range's trades read once (storage/run_reads.py)."""
    return read_once(
        db,
        ("training_set", window.start, window.end, design, cost),
        ["trades"],
        lambda: training_set(trades_between(db, window.start, window.end), window.end, design, cost=cost),
    )


# errors of the user's input or of the order of materializations, not of our code
USER_ERRORS = (InputDataError, NotEnoughDataError, MissingRowsError, ReversedRangeError)
Step = TypeVar("Step", bound=Callable[..., Any])


def user_errors_fail_the_step(step: Step) -> Step:
    """Bad input, too little data and missing upstream rows fail the step with their message as the
    step failure's description (what the UI and the CLI show), without a stack trace of our code;
    so does a run config that sets some fields of a resource whose others the environment sets
    (resources.partial_override), before the step reads anything."""

    @functools.wraps(step)
    def failing_with_the_message(*args: Any, **kwargs: Any) -> Any:
        context = kwargs.get("context", args[0] if args else None)
        if isinstance(context, dg.AssetExecutionContext) and dagster_run(context) is not None:
            bound = {
                name: resource.config_field.default_value
                for name, resource in context.job_def.resource_defs.items()
                if resource.config_field is not None and resource.config_field.default_provided
            }
            problem = partial_override(context.run.run_config, bound)
            if problem:
                raise dg.Failure(description=problem, allow_retries=False)
        try:
            return step(*args, **kwargs)
        except USER_ERRORS as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None

    return failing_with_the_message  # type: ignore[return-value]  # same signature, by functools.wraps
