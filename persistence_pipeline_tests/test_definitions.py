"""The code location loads and every asset shares what makes a range one run."""

from pathlib import Path

import dagster as dg
import pytest

from persistence_pipeline.definitions import ASSET_CHECKS, ASSETS, defs
from persistence_pipeline.partitions import daily_partitions
from persistence_pipeline.resources import partial_override

pytestmark = pytest.mark.assets


def test_every_asset_shares_the_one_partitions_definition_and_single_run_policy():
    assets = list(ASSETS)
    assert {key.to_user_string() for asset in assets for key in asset.keys} == {
        "trades",
        "profit_model",
        "feature_importance",
        "feature_stability",
        "stability_summary",
        "feature_alpha",
        "feature_priors",
        "persistence_dashboard",
    }
    for asset in assets:
        assert asset.partitions_def is daily_partitions
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    for check in ASSET_CHECKS:
        assert check.partitions_def is daily_partitions


def test_definitions_resolve_with_in_process_executor():
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def is dg.in_process_executor
    assert dg.AssetKey("feature_priors") in set(defs.resolve_all_asset_keys())


def test_benchmark_floor_has_the_same_shape_as_the_code_location():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "trivial_definitions.py"
    spec = importlib.util.spec_from_file_location("trivial_definitions", path)
    assert spec is not None and spec.loader is not None
    trivial = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trivial)
    assert trivial.N_ASSETS == len({key for asset in ASSETS for key in asset.keys})
    assert trivial.N_CHECKS == len({key for check in ASSET_CHECKS for key in check.check_keys})
    assert len(trivial.defs.resolve_all_asset_keys()) == trivial.N_ASSETS


def test_every_asset_is_in_the_warehouse_pool():
    from persistence_pipeline.resources import WAREHOUSE_POOL

    assert {asset.op.name: asset.op.pool for asset in ASSETS} == dict.fromkeys(
        [
            "trades",
            "profit_model",
            "feature_importance",
            "feature_stability",
            "feature_alpha",
            "feature_priors",
            "persistence_dashboard",
        ],
        WAREHOUSE_POOL,
    )


def test_environment_variables_are_read_when_a_run_launches_not_at_import(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSISTENCE_WAREHOUSE", str(tmp_path / "elsewhere.duckdb"))
    monkeypatch.setenv("PERSISTENCE_RETRAIN_WINDOW_DAYS", "30")
    assert defs.resources is not None
    wanted = {name: defs.resources[name] for name in ("warehouse", "retrain_settings")}
    with dg.build_resources(wanted) as resources:
        assert resources.warehouse.path == str(tmp_path / "elsewhere.duckdb")
        assert resources.retrain_settings.window_days == 30


def test_the_main_location_has_one_name_whichever_way_the_ui_starts():
    """`dagster dev` (pyproject.toml) and `dagster dev -w workspace.yaml` name the main location
    alike, so its URLs and the on/off state of its schedule and sensors are the same (with the
    modules' default names, the workspace showed `persistence_pipeline.definitions`)."""
    from dagster._core.workspace.load_target import PyProjectFileTarget, WorkspaceFileTarget

    repo = Path(__file__).resolve().parents[1]
    pyproject = [
        o.location_name for o in PyProjectFileTarget(path=str(repo / "pyproject.toml")).create_origins()
    ]
    workspace = [
        o.location_name for o in WorkspaceFileTarget(paths=[str(repo / "workspace.yaml")]).create_origins()
    ]
    assert pyproject == ["persistence_pipeline"]
    assert workspace == ["persistence_pipeline", "persistence_pipeline_history"]


def bound_configs() -> dict[str, dict]:
    """Each resource's config as the code location binds it ({"env": VAR} for a variable)."""
    bound = {}
    for name, resource in (defs.resources or {}).items():
        field = resource.get_resource_definition().config_field
        if field is not None and field.default_provided:
            bound[name] = field.default_value
    return bound


ENV_BOUND = {
    name: [field for field, value in config.items() if isinstance(value, dict) and "env" in value]
    for name, config in bound_configs().items()
}


@pytest.mark.parametrize("name", sorted(name for name, fields in ENV_BOUND.items() if fields))
def test_a_partial_resource_config_is_refused_for_every_resource(name):
    """Dagster replaces a resource's bound config with the run config's: the fields the environment
    sets would take the class defaults. Given some fields, the others must be given too."""
    bound = bound_configs()
    env_fields = ENV_BOUND[name]
    other = [f for f in bound[name] if f not in env_fields]
    if not other:  # its only fields come from the environment: any config of it gives them all
        given = {f: "x" for f in env_fields}
        assert partial_override({"resources": {name: {"config": given}}}, bound) is None
        return
    partial = {other[0]: bound[name][other[0]]}
    problem = partial_override({"resources": {name: {"config": partial}}}, bound)
    missing = [f for f in env_fields if f not in partial]
    assert problem is not None and problem.startswith(f"resources.{name}.config sets ")
    assert all(bound[name][f]["env"] in problem for f in missing)
    whole = {**partial, **{f: bound[name][f] for f in env_fields}}
    assert partial_override({"resources": {name: {"config": whole}}}, bound) is None


def test_the_env_bound_resources_are_the_ones_the_environment_configures():
    assert ENV_BOUND["trade_source"] == ["kind", "path"] and ENV_BOUND["warehouse"] == ["path"]
    assert ENV_BOUND["model_settings"] == ["kind"]


def test_a_run_with_a_partial_trade_source_config_fails_with_the_message(tmp_path, monkeypatch):
    """The measured case: only timestamp_format given, the trade log in the environment; the run
    ran on the embedded data. Now the step fails first, with what to give."""
    monkeypatch.setenv("PERSISTENCE_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("PERSISTENCE_TRADE_SOURCE", "trade_log_dir")
    monkeypatch.setenv("PERSISTENCE_TRADE_PATH", str(tmp_path))
    trades = next(a for a in ASSETS if dg.AssetKey("trades") in a.keys)
    with pytest.raises(dg.Failure) as failure:
        dg.materialize(
            [trades],
            resources=defs.resources,
            partition_key="2021-01-04",
            run_config={"resources": {"trade_source": {"config": {"timestamp_format": "%d/%m/%Y"}}}},
        )
    assert failure.value.description == (
        "resources.trade_source.config sets timestamp_format but not kind, path, which the environment "
        "sets (PERSISTENCE_TRADE_SOURCE, PERSISTENCE_TRADE_PATH): Dagster would replace them with the "
        "defaults, not keep the environment's. Give them too, e.g. "
        '"kind": {"env": "PERSISTENCE_TRADE_SOURCE"}'
    )
    assert not (tmp_path / "w.duckdb").exists()
