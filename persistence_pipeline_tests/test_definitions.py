"""The code location loads and every asset shares what makes a range one run."""

import dagster as dg

from persistence_pipeline.definitions import defs
from persistence_pipeline.partitions import daily_partitions


def test_every_asset_shares_the_one_partitions_definition_and_single_run_policy():
    assets = list(defs.assets)
    assert {key.to_user_string() for asset in assets for key in asset.keys} == {"trades", "profit_model", "feature_importance"}
    for asset in assets:
        assert asset.partitions_def is daily_partitions
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    for check in defs.asset_checks:
        assert check.partitions_def is daily_partitions


def test_definitions_resolve_with_in_process_executor():
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def is dg.in_process_executor
    assert set(defs.resolve_all_asset_keys()) == {dg.AssetKey("trades"), dg.AssetKey("profit_model"), dg.AssetKey("feature_importance")}
