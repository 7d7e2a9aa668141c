"""The asset layer: each stage invoked alone (`build_asset_context` with a partition range) on a copy
of a warehouse seeded by real range runs. A stage alone gives the rows the whole run gave, refuses to
run without the upstream rows it reads (naming the stage to materialize), and its lineage names
every table it reads."""

import dagster as dg
import pandas as pd
import pytest

from persistence_pipeline.assets.feature_alpha import feature_alpha
from persistence_pipeline.assets.feature_importance import feature_importance
from persistence_pipeline.assets.persistence_dashboard import persistence_dashboard
from persistence_pipeline.assets.profit_model import profit_model
from persistence_pipeline.assets.trades import trades
from persistence_pipeline.definitions import ASSET_CHECKS, ASSETS
from persistence_pipeline.partitions import daily_partitions
from persistence_pipeline.resources import ModelSettings, TradeSource
from persistence_pipeline.storage.database import Database
from persistence_pipeline_tests.conftest import Q1, Q2, EmbeddedRuns, Project, check_evaluation, copy_of

Q1_KEY, Q2_KEY = f"{Q1[0]}..{Q1[1]}/ridge", f"{Q2[0]}..{Q2[1]}/ridge"
VOLATILE = ["dagster_run_id", "created_at"]


@pytest.mark.assets
def test_feature_alpha_alone_gives_the_rows_of_the_whole_run(embedded_runs: EmbeddedRuns, tmp_path):
    project = copy_of(embedded_runs.two, tmp_path)
    expected = project.table("feature_alpha", order_by="as_of_run_key, feature")
    Database(str(project.warehouse_path)).query("DELETE FROM feature_alpha")
    result = project.invoke(feature_alpha, *Q2)
    assert isinstance(result, dg.MaterializeResult) and result.metadata is not None
    assert result.metadata["n_runs"] == 2
    stored = project.table("feature_alpha", order_by="as_of_run_key, feature")
    pd.testing.assert_frame_equal(
        stored, expected[expected["as_of_run_key"] == Q2_KEY].reset_index(drop=True)
    )


@pytest.mark.assets
def test_feature_alpha_refuses_to_run_without_its_feature_stability(embedded_runs: EmbeddedRuns, tmp_path):
    project = copy_of(embedded_runs.two, tmp_path)
    Database(str(project.warehouse_path)).query(
        "DELETE FROM feature_stability WHERE as_of_run_key = ?", [Q2_KEY]
    )
    with pytest.raises(dg.Failure, match="no feature_stability rows as of .*materialize feature_stability"):
        project.invoke(feature_alpha, *Q2)


@pytest.mark.assets
def test_profit_model_alone_warm_starts_like_the_whole_run(embedded_runs: EmbeddedRuns, tmp_path):
    project = copy_of(embedded_runs.one, tmp_path)
    project.invoke(trades, *Q2)
    project.invoke(profit_model, *Q2)
    alone = project.table("run_metrics").set_index("run_key").loc[Q2_KEY]
    whole = embedded_runs.two.table("run_metrics").set_index("run_key").loc[Q2_KEY]
    assert alone["priors_from_run_key"] == f"{Q1[0]}..{Q1[1]}/ridge"
    filled_later = ["explainer", "shap_sample_size", "inputs_digest"]  # by importance; when published
    compared = [c for c in whole.index if c not in [*VOLATILE, *filled_later]]
    pd.testing.assert_series_equal(alone[compared], whole[compared])


@pytest.mark.assets
def test_feature_importance_without_a_checkpoint_says_what_to_materialize(
    embedded_runs: EmbeddedRuns, tmp_path
):
    project = copy_of(embedded_runs.one, tmp_path)
    project.invoke(trades, *Q2)
    with pytest.raises(
        dg.Failure, match=f"no checkpoint is indexed for run {Q2_KEY}: materialize profit_model"
    ):
        project.invoke(feature_importance, *Q2)


@pytest.mark.assets
def test_the_dashboard_of_an_older_range_does_not_replace_the_newest(embedded_runs: EmbeddedRuns, tmp_path):
    project = copy_of(embedded_runs.two, tmp_path)
    folder = project.root / "dashboard"
    newest = (folder / "latest.png").read_bytes()
    (folder / "2021-01-04..2021-03-31_ridge.png").unlink()
    project.invoke(persistence_dashboard, *Q1)  # a backfill of the older range
    assert (folder / "latest.png").read_bytes() == newest
    assert (folder / "2021-01-04..2021-03-31_ridge.png").read_bytes() != newest


@pytest.mark.assets
def test_lineage_names_every_table_a_stage_reads():
    reads = {
        "feature_alpha": {"trades", "feature_importance", "feature_stability"},
        "persistence_dashboard": {
            "feature_importance",
            "feature_stability",
            "stability_summary",
            "feature_alpha",
            "feature_priors",
        },
        "feature_priors": {"feature_importance"},
        "feature_importance": {"profit_model"},
        "profit_model": {"trades"},
    }
    for asset in [feature_alpha, persistence_dashboard, feature_importance, profit_model]:
        key = asset.key
        deps = {dep.to_user_string() for dep in asset.asset_deps[key]}
        assert reads[key.to_user_string()] <= deps, key


@pytest.mark.assets
def test_a_reversed_range_says_it_is_reversed(tmp_path):
    project = Project(tmp_path, TradeSource(), ModelSettings())
    with pytest.raises(dg.Failure, match=r"the partition range 2021-03-31...2021-01-04 is reversed"):
        project.invoke(trades, "2021-03-31", "2021-01-04")
    assert not project.warehouse_path.exists()


@pytest.mark.assets
def test_each_check_records_its_result_on_every_partition_of_the_range(embedded_runs: EmbeddedRuns):
    """A partitioned check's one result of a range run used to be filed under no partition: the UI
    showed every check Skipped over the range. Each partition now has the run's result (passed,
    severity), judged against that partition's materialization in the run; its description, tables
    and blocking flag are on the last partition alone (the check's latest execution in the UI)."""
    result = embedded_runs.first_result
    days = daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(*Q1))
    materialized = {
        (e.asset_key, e.partition): e.event_specific_data for e in result.get_asset_materialization_events()
    }
    assert len(materialized) == 8 * len(days)
    names = {key.name for check in ASSET_CHECKS for key in check.check_keys}
    by_check: dict[str, list[dg.AssetCheckEvaluation]] = {name: [] for name in names}
    for evaluation in result.get_asset_check_evaluations():
        by_check[evaluation.check_name].append(evaluation)
    for name, evaluations in by_check.items():
        assert sorted(str(e.partition) for e in evaluations) == days, name
        outcomes = {(e.passed, e.severity) for e in evaluations}
        assert len(outcomes) == 1, name  # one result for the range, on every day of it
        last = check_evaluation(result, name)
        assert last.partition == Q1[1] and last.description, name
        for evaluation in evaluations:
            target = evaluation.target_materialization_data
            assert target is not None and target.run_id == result.run_id
            assert (evaluation.asset_key, evaluation.partition) in materialized
            if evaluation is not last:
                assert evaluation.metadata == {} and evaluation.description is None, name
    assert "oos_r2" in check_evaluation(result, "profit_model_is_sane").metadata
    blocking = [e for e in by_check["trades_are_valid"] if e.blocking]
    assert [e.partition for e in blocking] == [Q1[1]]


@pytest.mark.assets
def test_a_deleted_or_altered_checkpoint_of_any_run_is_reported_by_a_check(
    embedded_runs: EmbeddedRuns, tmp_path
):
    """A deleted checkpoint was noticed only when a later stage loaded it. The check, run alone as the
    UI's Execute does, names every indexed checkpoint that is missing or whose bytes changed."""
    project = copy_of(embedded_runs.two, tmp_path)
    db = Database(str(project.warehouse_path))
    db.query("UPDATE checkpoints SET path = ? WHERE run_key = ?", [str(tmp_path / "gone.skops"), Q1_KEY])
    db.query("UPDATE checkpoints SET sha256 = 'altered' WHERE run_key = ?", [Q2_KEY])
    result = dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        selection=dg.AssetSelection.checks(
            dg.AssetCheckKey(dg.AssetKey("profit_model"), "checkpoints_are_intact")
        ),
        resources=project.resources(),
        tags={"dagster/asset_partition_range_start": Q2[0], "dagster/asset_partition_range_end": Q2[1]},
    )
    evaluation = check_evaluation(result, "checkpoints_are_intact")
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.description == (
        f"2 of 2 indexed checkpoints unusable: {Q1_KEY} (missing), {Q2_KEY} (sha256 differs); "
        "materialize those ranges again"
    )
    fine = check_evaluation(embedded_runs.first_result, "checkpoints_are_intact")
    assert fine.passed and fine.description == "all 1 indexed checkpoints intact"


@pytest.mark.assets
def test_a_negative_oos_r2_is_recorded_not_failed(embedded_runs: EmbeddedRuns):
    """The first embedded quarter predicts worse than the mean (R^2 < 0), which is ordinary for
    trade-return forecasts: the sanity check records it and passes (it failed on every run before,
    which trains users to ignore red); it fails only when the OOS rank IC is significantly below
    zero, which this quarter's is not."""
    evaluations = {e.check_name: e for e in embedded_runs.first_result.get_asset_check_evaluations()}
    sane = evaluations["profit_model_is_sane"]
    assert float(sane.metadata["oos_r2"].value) < 0  # type: ignore[arg-type]
    assert sane.metadata["r2_below_zero"].value is True
    assert float(sane.metadata["oos_rank_ic_upper_99"].value) > 0  # type: ignore[arg-type]
    assert sane.passed
    assert evaluations["oos_performance_is_plausible"].passed


EVIDENCE_COLUMNS = [
    "n_periods",
    "n_trades",
    "hac_lag",
    "ic_mean",
    "ic_hac_se",
    "ic_t_stat",
    "ic_p_value",
    "ic_q_value",
    "ic_ci_low",
    "ic_ci_high",
    "ic_slope",
    "ic_slope_p_value",
    "decaying",
    "persistence",
    "half_life_days",
    "alpha_score",
]


@pytest.mark.e2e  # a whole range run beside the seeded quarterly ones
def test_one_long_run_knows_what_two_quarterly_runs_know(embedded_runs: EmbeddedRuns, tmp_path):
    """The same trades seen by one run over the half-year give the same evidence as the two
    quarterly runs, exactly: both come from the same distinct trades. (Before, a single run had
    every alpha, significance and decay field NULL, and the run was the unit of evidence.)"""
    project = Project(tmp_path, TradeSource(), ModelSettings())
    project.materialize(Q1[0], Q2[1], without=("feature_priors", "persistence_dashboard"))
    single = project.table("feature_alpha").set_index("feature")
    quarterly = embedded_runs.two.table("feature_alpha")
    two = quarterly[quarterly["as_of_run_key"] == f"{Q2[0]}..{Q2[1]}/ridge"].set_index("feature")
    common = sorted(set(single.index) & set(two.index))
    assert len(common) >= 10
    pd.testing.assert_frame_equal(single.loc[common, EVIDENCE_COLUMNS], two.loc[common, EVIDENCE_COLUMNS])
    # one hypothesis per redundant group: the strategy indicators are exact negations of each other
    assert single["alias_of"].dropna().to_dict() == {"strategy@momentum_breakout": "strategy@mean_reversion"}
    scored = single[single["alias_of"].isna() & ~single["indicator"]]
    assert scored["alpha_score"].notna().all()
    # within cells, a per-strategy feature of the rarer strategy has fewer periods
    assert scored.loc[~scored.index.str.contains("@"), "n_periods"].min() >= 15
    # the side and strategy indicators: no score, their pooled evidence beside
    indicators = single[single["indicator"]]
    assert sorted(indicators.index) == ["direction", "strategy@mean_reversion", "strategy@momentum_breakout"]
    assert indicators["alpha_score"].isna().all() and indicators["pooled_ic_mean"].notna().all()
    assert single["n_runs"].max() == 1 and two["n_runs"].max() == 2
    assert single["n_effective_runs"].iloc[0] == 1.0 and two["n_effective_runs"].iloc[0] == 2.0
    series = project.table("feature_ic_series")
    assert series.groupby("feature").size().max() == single["n_periods"].max()
