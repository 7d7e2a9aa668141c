"""The dashboard (readable at 18, 100 and 300 features, one run and many; alpha tables from simulated
trades through core.evidence and core.alpha), the nightly schedule evaluated at a fixed time and
executed, and the report-only CLI."""

import base64
import datetime as dt
import io
import itertools
import subprocess
import sys
from collections.abc import Mapping
from functools import partial
from types import SimpleNamespace

import dagster as dg
import duckdb
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pydantic
import pytest

from persistence_pipeline.__main__ import main
from persistence_pipeline.assets.persistence_dashboard import persistence_dashboard
from persistence_pipeline.core.alpha import alpha_table
from persistence_pipeline.core.dashboard import DashboardInputs, dashboard_summary, top_features
from persistence_pipeline.core.evidence import EvidenceParams, feature_evidence, period_ic
from persistence_pipeline.core.figure import dashboard_figure, draw_dashboard
from persistence_pipeline.core.monitor import monitor_summary
from persistence_pipeline.core.sizing import sizing_line
from persistence_pipeline.core.stability import effective_runs, per_feature_stability, summarize_stability
from persistence_pipeline.partitions import daily_partitions, partitions_end
from persistence_pipeline.resources import DashboardStore, ModelSettings, RetrainSettings, TradeSource
from persistence_pipeline.schedules import nightly_retrain, retrain_window
from persistence_pipeline.source_files import EMBEDDED_BARS
from persistence_pipeline.storage.database import Database
from persistence_pipeline.storage.explanations import segments_of_runs
from persistence_pipeline_tests.conftest import Q1, Q2, EmbeddedRuns, Project, RunEvents, copy_of
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades

pytestmark = pytest.mark.e2e

LATEST = "2021-04-01..2021-06-30/ridge"  # the newest run of embedded_runs.two


def synthetic_inputs(n_features: int, n_runs: int, seed: int = 0) -> DashboardInputs:
    """`n_runs` quarterly runs from 2021 over simulated trades of `n_features` long-named features:
    two with a steady IC, one that fades (decaying), the rest noise; the alpha table through
    core.evidence and core.alpha as of the last range end."""
    rng = np.random.default_rng(seed)
    names = [f"feature name {i:03d} with a long label" for i in range(n_features)]
    starts = pd.date_range("2021-01-01", periods=n_runs, freq="QS")
    ends = starts + pd.offsets.QuarterEnd(0)
    market = SimulatedMarket(
        end=f"{ends[-1]:%Y-%m-%d}",
        planted={"steady 0": (0.06, 0.06), "steady 1": (0.05, 0.05), "fading": (0.25, -0.05)},
        n_noise=n_features - 3,
    )
    trades = simulated_trades(market, seed).rename(columns=dict(zip(market.features, names, strict=True)))
    ranges = pd.DataFrame(
        {
            "run_key": [f"{s:%Y-%m-%d}..{e:%Y-%m-%d}/ridge" for s, e in zip(starts, ends, strict=True)],
            "range_start": starts.date,
            "range_end": ends.date,
        }
    )
    run_keys = ranges["run_key"].tolist()
    rows = []
    for run in run_keys:
        shap = np.abs(rng.normal(size=n_features)) + np.linspace(2, 0, n_features)
        ranks = pd.Series(-shap).rank(method="first").astype(int).to_numpy()
        for j, name in enumerate(names):
            rows.append(
                {
                    "run_key": run,
                    "feature": name,
                    "rank": ranks[j],
                    "coef": rng.normal(),
                    "shap_mean_abs": shap[j],
                    "ic": 0.05 * (j < 3) + rng.normal(scale=0.02),
                    "perm_importance": 0.0,
                }
            )
    history = pd.DataFrame(rows)
    runs = pd.DataFrame(
        {
            "run_key": run_keys,
            "oos_rank_ic": rng.normal(scale=0.05, size=n_runs),
            "oos_hit_rate": rng.uniform(0.45, 0.6, n_runs),
            "oos_base_rate": rng.uniform(0.45, 0.55, n_runs),
            "n_oos": 600,
            "n_train": 500,
            "priors_from_run_key": None,
        }
    )
    stability = per_feature_stability(history, 5)
    as_of_end = pd.Timestamp(ends[-1], tz="UTC") + pd.Timedelta(days=1)
    params = EvidenceParams()
    entered = trades[trades["entry_time"] < as_of_end]
    alpha = alpha_table(
        feature_evidence(period_ic(entered, names, params, as_of_end), params),
        history,
        ranges,
        runs.set_index("run_key")["oos_rank_ic"],
        stability.set_index("feature")["topk_frequency"],
    )
    summary = summarize_stability(history, ranges, 5, 0.0, effective_runs(ranges))
    return DashboardInputs(runs, history, stability, alpha, summary.__dict__, run_keys[-1], top_n=15)


def tick_labels_overlap(fig) -> list[tuple[str, str]]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    clashes = []
    for ax in fig.axes:
        labels = [t for t in [*ax.get_yticklabels(), *ax.texts] if t.get_text()]
        boxes = [t.get_window_extent(renderer) for t in labels]
        for (a, box_a), (b, box_b) in itertools.combinations(zip(labels, boxes, strict=True), 2):
            if box_a.overlaps(box_b):
                clashes.append((a.get_text(), b.get_text()))
    return clashes


@pytest.mark.parametrize("n_features", [18, 100, 300])
def test_dashboard_is_readable_with_many_features(n_features):
    inputs = synthetic_inputs(n_features, n_runs=6)
    alpha = inputs.alpha
    assert alpha["alpha_score"].notna().all()
    fading = "feature name 002 with a long label"
    assert bool(alpha.set_index("feature").loc[fading, "decaying"])
    fig = dashboard_figure(inputs)
    assert len(fig.axes) >= 6
    assert tick_labels_overlap(fig) == []  # the q labels beside the bars included
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert f"{n_features - 15} hidden" in titles
    plt.close(fig)
    assert len(top_features(inputs)) == 15
    summary = dashboard_summary(inputs)
    decaying = alpha.loc[alpha["decaying"], "feature"].tolist()
    below_top = [f for f in decaying if f not in alpha["feature"].head(15).tolist()]
    for feature in decaying:  # every decaying feature has a row, whatever its rank
        assert any(line.startswith(f"| {feature} | ") for line in summary.splitlines()), feature
    if below_top:
        assert f"Listed although below the top 15, because they decay: {', '.join(below_top)}." in summary
    hidden = n_features - 15 - len(below_top)
    assert (f"{hidden} more features not shown." in summary) == (hidden > 0)


def test_dashboard_png_is_deterministic():
    inputs = synthetic_inputs(18, n_runs=4)
    first, second = draw_dashboard(inputs), draw_dashboard(inputs)
    assert first == second and first[:8] == b"\x89PNG\r\n\x1a\n"


def markdown_of(metadata: Mapping[str, dg.MetadataValue], name: str) -> str:
    value = metadata[name]
    assert isinstance(value, dg.MarkdownMetadataValue) and value.md_str is not None
    return value.md_str


def alpha_row_text(row: pd.Series) -> str:
    """The start of a feature's row in the summary's alpha table: name, score, mean IC and its interval."""
    return (
        f"| {row['feature']} | {row['alpha_score']:.3f} | "
        f"{row['ic_mean']:+.4f} [{row['ic_ci_low']:+.4f}, {row['ic_ci_high']:+.4f}] |"
    )


def test_heavy_metadata_is_written_once_per_run_on_its_last_partition(embedded_runs: EmbeddedRuns):
    """A range run records a materialization per asset and daily partition; the tables, markdown and
    dashboard image go on the last partition's only (a 91-day run wrote the image 91 times)."""
    events = embedded_runs.first_result.get_asset_materialization_events()
    run_key = dg.TextMetadataValue("2021-01-04..2021-03-31/ridge")
    days = daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(*Q1))
    by_asset: dict[str, list[dg.DagsterEvent]] = {}
    for event in events:
        by_asset.setdefault(str(event.asset_key), []).append(event)
    assert len(by_asset) == 8
    for asset, asset_events in by_asset.items():
        assert sorted(str(e.partition) for e in asset_events) == days, asset
        *others, last = sorted(asset_events, key=lambda e: str(e.partition))
        for event in others:
            assert event.materialization.metadata == {}
        assert last.materialization.metadata["run_key"] == run_key
        assert len(last.materialization.metadata) > 1, asset
    with_image = [e for e in events if "dashboard (image)" in e.materialization.metadata]
    assert [e.partition for e in with_image] == ["2021-03-31"]
    light = [e for e in events if e.partition != "2021-03-31"]
    assert max(len(dg.serialize_value(e.materialization)) for e in light) < 2_000  # the image: 0.4 MB


def run_metadata(result: dg.ExecuteInProcessResult | RunEvents, asset: str) -> Mapping[str, dg.MetadataValue]:
    """The metadata of `asset` in a range run: on the range's last partition's materialization."""
    *_, last = (e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset))
    return last.materialization.metadata


def test_one_run_dashboard_has_alpha_and_says_stability_needs_two(embedded_runs: EmbeddedRuns):
    metadata = run_metadata(embedded_runs.first_result, "persistence_dashboard")
    summary = markdown_of(metadata, "summary (markdown)")
    alpha = embedded_runs.one.table("feature_alpha").sort_values(
        ["alpha_score", "feature"], ascending=[False, True], na_position="last"
    )
    assert alpha["alpha_score"].notna().any(), "one quarter of weekly periods gives alpha scores"
    assert alpha_row_text(alpha.iloc[0]) in summary
    assert "alpha scores need" not in summary and "alpha needs" not in summary
    assert "cross-run stability needs at least 2 runs whose windows do not overlap" in summary
    assert "runs compared: 1 non-overlapping of 1 stored" in summary
    assert "Kendall's W n/a, mean pairwise Spearman n/a, latest Spearman n/a" in summary
    books = embedded_runs.one.table("sizing_performance")
    assert (
        f"\n{sizing_line(books)}." in summary
        and "OOS net of 5 bps per side, per unit of notional: sized " in summary
    )
    assert "\nAlpha monitor: no feature has enough weeks to be monitored yet." in summary
    headline = metadata["headline"]
    assert isinstance(headline, dg.TextMetadataValue)
    # one quarter: no feature is significant, so none is named "top"; the OOS figures rest on few trades
    assert (alpha["ic_q_value"].dropna() >= 0.05).all()
    run = embedded_runs.one.table("run_metrics").iloc[0]
    assert headline.text is not None and headline.text.startswith(
        "As of 2021-01-04..2021-03-31/ridge: no feature has reliable alpha yet (none with q < 0.05); "
    )
    assert headline.text.endswith(f" [only {run['n_oos']} OOS trades; {run['n_folds']} of 5 folds]")
    assert (
        "No feature has reliable alpha yet (none with q < 0.05): the rows are ordered by evidence." in summary
    )
    image = markdown_of(metadata, "dashboard (image)")
    assert image.startswith("![persistence dashboard](data:image/png;base64,")
    png = base64.b64decode(image.split("base64,")[1].rstrip(")"))
    folder = embedded_runs.one.root / "dashboard"
    assert png == (folder / "latest.png").read_bytes()
    assert png == (folder / "2021-01-04..2021-03-31_ridge.png").read_bytes()
    fig = plt.imread(io.BytesIO(png))
    assert fig.shape[:2] == (1680, 1280)


def test_schedule_requests_one_trailing_window_and_it_runs(tmp_path):
    project = Project(tmp_path, TradeSource(), ModelSettings())
    tick = dt.datetime(2021, 7, 1, 2, 0, tzinfo=dt.timezone.utc)
    assert retrain_window(tick, 90) == (dt.date(2021, 4, 2), dt.date(2021, 6, 30))
    context = dg.build_schedule_context(
        scheduled_execution_time=tick,
        resources={"trade_source": TradeSource(), "retrain_settings": RetrainSettings()},
    )
    request = nightly_retrain(context)
    assert isinstance(request, dg.RunRequest)
    assert request.tags == {
        "dagster/asset_partition_range_start": "2021-04-02",
        "dagster/asset_partition_range_end": "2021-06-30",
    }
    from persistence_pipeline.definitions import ASSET_CHECKS, ASSETS

    result = dg.materialize([*ASSETS, *ASSET_CHECKS], resources=project.resources(), tags=request.tags)
    assert result.success
    assert project.table("run_metrics")["run_key"].tolist() == ["2021-04-02..2021-06-30/ridge"]


def test_schedule_skips_a_window_without_trades():
    tick = dt.datetime(2013, 2, 1, 2, 0, tzinfo=dt.timezone.utc)  # features need a year of bars
    context = dg.build_schedule_context(
        scheduled_execution_time=tick,
        resources={"trade_source": TradeSource(), "retrain_settings": RetrainSettings(window_days=30)},
    )
    skip = nightly_retrain(context)
    assert isinstance(skip, dg.SkipReason) and skip.skip_message is not None
    assert "no trades entered between 2013-01-02 and 2013-01-31" in skip.skip_message


def test_schedule_on_the_embedded_data_skips_after_its_end_and_replays_a_date():
    """A tick today asked for partitions the embedded data does not have; `replay_date` tries the
    schedule on it: the window ending the day before that date, under the same run key every tick."""
    tick = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.timezone.utc)
    skip = nightly_retrain(
        dg.build_schedule_context(
            scheduled_execution_time=tick,
            resources={"trade_source": TradeSource(), "retrain_settings": RetrainSettings(window_days=30)},
        )
    )
    assert isinstance(skip, dg.SkipReason) and skip.skip_message is not None
    assert skip.skip_message.startswith(
        "the window 2026-10-26..2026-11-24 ends after the last partition 2023-09-21, where the configured "
        "source (embedded data (stocks_daily.parquet)) ends: to try the schedule on it, set "
        "retrain_settings.replay_date (env PERSISTENCE_REPLAY_DATE)"
    )
    replayed = [
        nightly_retrain(
            dg.build_schedule_context(
                scheduled_execution_time=tick + dt.timedelta(days=day),
                resources={
                    "trade_source": TradeSource(),
                    "retrain_settings": RetrainSettings(window_days=30, replay_date="2023-07-01"),
                },
            )
        )
        for day in (0, 1)
    ]
    for request in replayed:
        assert isinstance(request, dg.RunRequest)
        assert request.run_key == "nightly-2023-06-01..2023-06-30"
        assert request.tags["dagster/asset_partition_range_end"] == "2023-06-30"
    with pytest.raises(pydantic.ValidationError, match="replay_date must be a date"):
        RetrainSettings(replay_date="July 1st")


def test_the_partitions_end_where_the_configured_source_ends():
    """The UI offered 5,076 daily partitions up to today over data that ends on 2023-09-21."""
    bars = pd.read_parquet(EMBEDDED_BARS, columns=["date"])
    assert daily_partitions.get_last_partition_key() == str(bars["date"].max().date()) == "2023-09-21"
    assert partitions_end({}) == "2023-09-22"  # Dagster's end_date is exclusive
    assert partitions_end({"PERSISTENCE_TRADE_SOURCE": "trade_log_dir"}) is None  # grows every night
    fixed = {"PERSISTENCE_TRADE_SOURCE": "trade_log_dir", "PERSISTENCE_PARTITIONS_END": "2022-12-31"}
    assert partitions_end(fixed) == "2023-01-01"


def test_schedule_is_nightly_at_two_utc():
    assert nightly_retrain.cron_schedule == "0 2 * * *" and nightly_retrain.execution_timezone == "UTC"


def run_report(*args):
    """`python -m persistence_pipeline report` as a user runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "persistence_pipeline", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def report_here(capsys: pytest.CaptureFixture[str], *args: str) -> SimpleNamespace:
    """The same command's `main` in this process (what it prints and returns), for the variants of a
    call already run once as a process: a process costs about 1.5 s of imports."""
    capsys.readouterr()
    code = main(["report", *args])
    printed = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=printed.out, stderr=printed.err)


def test_report_prints_latest_run_stability_and_alpha(embedded_runs: EmbeddedRuns, capsys):
    project = embedded_runs.two
    done = run_report("--warehouse", str(project.warehouse_path))
    assert done.returncode == 0, done.stderr
    latest = project.table("run_metrics", order_by="range_end").iloc[-1]
    assert "Latest run 2021-04-01..2021-06-30/ridge (2 runs stored)" in done.stdout
    assert f"OOS rank IC {latest['oos_rank_ic']:+.4f}" in done.stdout
    assert "priors from 2021-01-04..2021-03-31/ridge" in done.stdout
    segments = sorted(project.table("feature_segments").query("run_key == @LATEST")["segment"].unique())
    assert f"  Segments: {', '.join(segments)} (--segment NAME shows one)" in done.stdout.splitlines()
    assert "Within" not in done.stdout  # no --segment: no segment section
    summary = (
        project.table("stability_summary").set_index("as_of_run_key").loc["2021-04-01..2021-06-30/ridge"]
    )
    assert f"Kendall's W {summary['kendall_w']:.3f}" in done.stdout
    excluded = project.table("excluded_features")
    latest_excluded = excluded[excluded["run_key"] == "2021-04-01..2021-06-30/ridge"]
    assert ("Quarantined: none" in done.stdout) == latest_excluded.empty
    assert f"runs compared: {summary['n_independent_runs']} non-overlapping of 2 stored" in done.stdout
    books = project.table("sizing_performance").query("run_key == @LATEST")
    assert f"  {sizing_line(books)}" in done.stdout.splitlines()
    monitor = monitor_summary(project.table("feature_alpha").query("as_of_run_key == @LATEST"))
    assert monitor.startswith(("none of the", "alpha broken down")), monitor  # half a year: monitored
    assert f"  Alpha monitor: {monitor}" in done.stdout.splitlines()
    alpha = (
        project.table("feature_alpha")
        .query("as_of_run_key == '2021-04-01..2021-06-30/ridge'")
        .sort_values(["alpha_score", "feature"], ascending=[False, True], na_position="last")
    )
    best = alpha.iloc[0]
    interval = f"{best['ic_mean']:+.4f} [{best['ic_ci_low']:+.4f}, {best['ic_ci_high']:+.4f}]"
    assert any(
        line.split()[:1] == [best["feature"]] and interval in line for line in done.stdout.splitlines()
    )
    markdown = report_here(capsys, "--warehouse", str(project.warehouse_path), "--markdown", "--top", "3")
    assert markdown.stdout.startswith("## Latest run")
    assert "| feature | alpha score | IC mean [95% interval] | q | periods | persistence | decaying |" in (
        markdown.stdout
    )
    assert alpha_row_text(best) in markdown.stdout
    rest = alpha.iloc[3:]
    below = rest[rest["decaying"]]  # decaying features below the top 3 are listed too
    for feature in below["feature"]:
        assert f"| {feature} | " in markdown.stdout
    hidden = int(alpha["alpha_score"].notna().sum()) - 3 - len(below)
    assert (f"{hidden} more features not shown." in markdown.stdout) == (hidden > 0)


def test_report_while_a_run_writes_waits_for_it_within_a_bound(embedded_runs: EmbeddedRuns, tmp_path, capsys):
    """4 of 23 reports during concurrent runs failed at once with a 13-line lock traceback. A writer
    holding the file: the report waits for it (here 3 s) and prints; with a shorter --wait it says in
    one line that a run is writing and how to wait longer."""
    project = copy_of(embedded_runs.one, tmp_path)
    holder = (
        "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); c.execute('BEGIN');"
        " c.execute('CREATE TABLE held (a INTEGER)'); print('held', flush=True);"
        " time.sleep(float(sys.argv[2]))"
    )

    def hold(seconds: float) -> subprocess.Popen:
        writer = subprocess.Popen(
            [sys.executable, "-c", holder, str(project.warehouse_path), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdout.readline() == "held\n"
        return writer

    writer = hold(3)
    waited = report_here(capsys, "--warehouse", str(project.warehouse_path))
    writer.wait(timeout=30)
    assert waited.returncode == 0 and "Latest run 2021-01-04..2021-03-31/ridge" in waited.stdout
    writer = hold(10)
    refused = report_here(capsys, "--warehouse", str(project.warehouse_path), "--wait", "0.5")
    writer.kill()
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        f"{project.warehouse_path} is locked by another process writing it (a run publishing); waited 0.5 s:"
        " report again when it is done, or wait longer with --wait SECONDS\n"
    )


def test_report_on_a_path_that_is_no_warehouse_says_so_in_one_line(tmp_path, capsys):
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    duckdb.connect(str(tmp_path / "fresh.duckdb")).close()
    for path, problem in [
        (tmp_path / "none.duckdb", "no warehouse at"),
        (tmp_path, "is a directory, not a DuckDB warehouse file"),
        (tmp_path / "empty.bin", "is an empty file, not a DuckDB warehouse"),
        (tmp_path / "notes.txt", "cannot be read as a DuckDB warehouse"),
        (tmp_path / "fresh.duckdb", "holds no run yet"),
    ]:
        # the first as a process (one line, no stack trace), the others through main
        done = (run_report if problem == "no warehouse at" else partial(report_here, capsys))(
            "--warehouse", str(path)
        )
        assert done.returncode == 1 and done.stdout == "", path
        assert len(done.stderr.splitlines()) == 1 and str(path) in done.stderr and problem in done.stderr, (
            done.stderr
        )


def segment_rows_text(stored: pd.DataFrame, segment: str, top_n: int) -> list[str]:
    """The markdown rows a segment's section must hold, from the feature_segments table: its top_n
    ranked features by rank, with the segment's trades, the IC within it and the mean |SHAP|."""
    rows = stored[(stored["segment"] == segment) & stored["rank"].notna()].sort_values("rank").head(top_n)
    return [
        f"| {int(r['rank'])} | {r['feature']} | {int(r['n_trades'])} | "
        f"{'n/a' if pd.isna(r['ic']) else format(r['ic'], '+.4f')} | {r['shap_mean_abs']:.5f} |"
        for _, r in rows.iterrows()
    ]


def test_report_shows_one_segment_and_refuses_an_unknown_one(embedded_runs: EmbeddedRuns, capsys):
    project = embedded_runs.two
    stored = project.table("feature_segments").query("run_key == @LATEST")
    names = sorted(stored["segment"].unique())
    assert {"side=long", "side=short", "strategy=mean_reversion", "strategy=momentum_breakout"} <= set(names)
    done = report_here(
        capsys, "--warehouse", str(project.warehouse_path), "--segment", "strategy=mean_reversion"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("Within strategy=mean_reversion")
    n_trades = int(stored.query("segment == 'strategy=mean_reversion'")["n_trades"].iloc[0])
    assert lines[start + 1].startswith(
        f"  {n_trades} trades of run {LATEST}; ranked by the model's mean |SHAP|"
    )
    assert lines[start + 3].split() == ["rank", "feature", "trades", "IC", "(in-sample)", "mean", "|SHAP|"]
    expected = segment_rows_text(stored, "strategy=mean_reversion", 10)  # --top's default
    assert [line.split() for line in lines[start + 4 : start + 14]] == [
        row.replace("|", " ").split() for row in expected
    ]
    markdown = report_here(
        capsys,
        "--warehouse",
        str(project.warehouse_path),
        "--markdown",
        "--top",
        "4",
        "--segment",
        "side=short",
    )
    assert markdown.returncode == 0, markdown.stderr
    section = markdown.stdout.split("## Within side=short\n")[1].splitlines()
    assert section[2:4] == [
        "| rank | feature | trades | IC (in-sample) | mean \\|SHAP\\| |",
        "|---:|---|---:|---:|---:|",
    ]
    assert section[4:8] == segment_rows_text(stored, "side=short", 4)
    unknown = report_here(capsys, "--warehouse", str(project.warehouse_path), "--segment", "strategy=pairs")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr == (
        f"segment 'strategy=pairs' is not stored for run {LATEST}; its segments: {', '.join(names)}\n"
    )


def test_dashboard_with_a_segment_shows_it_or_names_the_stored_ones(embedded_runs: EmbeddedRuns, tmp_path):
    project = copy_of(embedded_runs.two, tmp_path)
    db = Database(str(project.warehouse_path))
    rows = segments_of_runs(db, project.table("run_metrics")["run_key"].tolist(), "side=short", LATEST)
    stored = project.table("feature_segments")
    expected = stored[(stored["segment"] == "side=short") | (stored["run_key"] == LATEST)]
    key = ["run_key", "segment", "feature"]
    assert rows[key].sort_values(key).values.tolist() == expected[key].sort_values(key).values.tolist()
    assert set(rows["segment"]) == set(stored["segment"])  # the latest run's names are all there
    folder = project.root / "dashboard"

    def summary_with(segment: str) -> str:
        """The dashboard asset invoked with the segment: its summary (markdown)."""
        resources = {
            **project.resources(),
            "dashboard_store": DashboardStore(directory=str(folder), top_n=5, segment=segment),
        }
        context = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange(*Q2))
        keys = [k for k in persistence_dashboard.required_resource_keys if k in resources]
        result = persistence_dashboard(context, **{k: resources[k] for k in keys})
        assert isinstance(result, dg.MaterializeResult) and result.metadata is not None
        summary = result.metadata["summary (markdown)"]
        assert isinstance(summary, dg.MarkdownMetadataValue) and summary.md_str is not None
        return summary.md_str

    summary_with("")
    pooled = (folder / "latest.png").read_bytes()  # the same view (top 5) without a segment
    summary = summary_with("side=short")
    section = summary.split("### Within side=short (latest run)\n")[1].splitlines()
    assert section[4:9] == segment_rows_text(stored[stored["run_key"] == LATEST], "side=short", 5)
    assert (folder / "latest.png").read_bytes() != pooled  # panel (1) is the segment's
    summary = summary_with("side=flat")
    names = ", ".join(sorted(stored.loc[stored["run_key"] == LATEST, "segment"].unique()))
    assert f"segment 'side=flat' is not stored for run {LATEST}; its segments: {names}" in summary
