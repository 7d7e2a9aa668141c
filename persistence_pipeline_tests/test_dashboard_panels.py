"""The dashboard's panels, headline and summary and the report's alpha, stability and quarantine lines
on synthetic inputs (issue 10, items 11-18): what each panel must show, measured on the figure's
artists. The alpha tables come from simulated trades through core.evidence and core.alpha, or are
written by hand where exact figures are checked. No Dagster, no warehouse."""

import dataclasses
import functools
import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy import stats

from persistence_pipeline.core import dashboard, figure, panels
from persistence_pipeline.core.alpha import alpha_table
from persistence_pipeline.core.dashboard import DashboardInputs, dashboard_summary
from persistence_pipeline.core.ensemble import ensemble_line, rank_agreement
from persistence_pipeline.core.evidence import EvidenceParams, feature_evidence, period_ic
from persistence_pipeline.core.figure import dashboard_figure, draw_dashboard
from persistence_pipeline.core.report import render_report
from persistence_pipeline.core.sizing import SizingParams, book_performance, sizing_line
from persistence_pipeline.core.stability import effective_runs, per_feature_stability, summarize_stability
from persistence_pipeline.core.summary import q_label, q_text, stability_lines
from persistence_pipeline_tests.simulation import SimulatedMarket, simulated_trades

pytestmark = pytest.mark.core


FADING = "zz fading"  # sorts last by name too: a tie at the bottom cannot rescue it
LEAK = "leak"
STEADY = [f"steady {i:02d}" for i in range(20)]
# two years of simulated trades: the steady features keep an IC of 0.06, the fading one falls from
# 0.25 to -0.05 (decaying, persistence 0, so alpha score 0: it sorts last)
MARKET = SimulatedMarket(planted={**dict.fromkeys(STEADY, (0.06, 0.06)), FADING: (0.25, -0.05)}, n_noise=0)
PARAMS = EvidenceParams(decay_level=0.01)  # 20 steady features: none falsely decaying at 1%


@functools.cache
def market_trades() -> pd.DataFrame:
    return simulated_trades(MARKET, seed=0)


@functools.cache
def evidence(features: tuple[str, ...], as_of_end: pd.Timestamp) -> pd.DataFrame:
    """feature_evidence of the simulated trades entered before `as_of_end`."""
    trades = market_trades()
    entered = trades[trades["entry_time"] < as_of_end]
    return feature_evidence(period_ic(entered, list(features), PARAMS, as_of_end), PARAMS)


def run_ranges(n_runs: int) -> pd.DataFrame:
    """Consecutive quarterly runs from 2021-01-01 (run_key, range_start, range_end), in time order."""
    starts = pd.date_range("2021-01-01", periods=n_runs, freq="QS")
    ends = starts + pd.offsets.QuarterEnd(0)
    return pd.DataFrame(
        {
            "run_key": [f"{s:%Y-%m-%d}..{e:%Y-%m-%d}/ridge" for s, e in zip(starts, ends, strict=True)],
            "range_start": starts.date,
            "range_end": ends.date,
        }
    )


def run_keys(n_runs: int) -> list[str]:
    return run_ranges(n_runs)["run_key"].tolist()


def make_inputs(
    n_runs: int = 8,
    n_persistent: int = 20,
    top_n: int = 15,
    fading: bool = True,
    quarantined: pd.DataFrame | None = None,
    runs: pd.DataFrame | None = None,
    ranges: pd.DataFrame | None = None,
    seed: int = 0,
) -> DashboardInputs:
    """`n_runs` quarterly runs (or `ranges`) with an importance history of `n_persistent` steady
    features and, with `fading`, the fading one; their alpha table from the simulated trades entered
    by the last range end (feature_evidence, then alpha_table)."""
    rng = np.random.default_rng(seed)
    ranges = run_ranges(n_runs) if ranges is None else ranges
    keys = ranges["run_key"].tolist()
    names = STEADY[:n_persistent] + ([FADING] if fading else [])
    rows = []
    for run in keys:
        shap = np.linspace(2.0, 0.5, len(names)) + np.abs(rng.normal(scale=0.05, size=len(names)))
        ranks = pd.Series(-shap).rank(method="first").astype(int).to_numpy()
        for j, name in enumerate(names):
            rows.append(
                {
                    "run_key": run,
                    "feature": name,
                    "rank": ranks[j],
                    "coef": 1.0,
                    "shap_mean_abs": shap[j],
                    "ic": rng.normal(0.05, 0.01),
                    "perm_importance": 0.0,
                }
            )
    history = pd.DataFrame(rows)
    if runs is None:
        runs = pd.DataFrame(
            {
                "run_key": keys,
                "oos_rank_ic": rng.normal(0.03, 0.02, len(keys)),
                "n_oos": 600,
                "oos_hit_rate": rng.uniform(0.55, 0.65, len(keys)),
                "oos_base_rate": rng.uniform(0.5, 0.55, len(keys)),
                "n_train": 500,
                "priors_from_run_key": None,
            }
        )
    stability = per_feature_stability(history, 5)
    as_of_end = pd.Timestamp(ranges["range_end"].iloc[-1], tz="UTC") + pd.Timedelta(days=1)
    alpha = alpha_table(
        evidence(tuple(names), as_of_end),
        history,
        ranges,
        runs.set_index("run_key")["oos_rank_ic"],
        stability.set_index("feature")["topk_frequency"],
    )
    summary = summarize_stability(history, ranges, 5, 0.0, effective_runs(ranges)).__dict__
    extra = {} if quarantined is None else {"quarantined": quarantined}
    return DashboardInputs(runs, history, stability, alpha, summary, keys[-1], top_n=top_n, **extra)


def expected_q_label(q: float) -> str:
    """The q label as the brief spells it, independently of the dashboard's formatting."""
    return "q<0.001" if q < 0.001 else f"q={q:.3f}"


def quarantine(keys: list[str], ic: float = 0.912) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_key": keys,
            "feature": LEAK,
            "ic": [ic] * len(keys),
            "reason": "in-sample |rank IC| > 0.300: likely computed after entry",
        }
    )


def panel(fig: Figure, title_start: str) -> Axes:
    found = [ax for ax in fig.axes if ax.get_title().startswith(title_start)]
    assert len(found) == 1, [ax.get_title() for ax in fig.axes]
    return found[0]


def ytick_texts(ax: Axes) -> dict[str, str]:
    """Tick label text -> its colour (hex)."""
    return {t.get_text(): to_hex(t.get_color()) for t in ax.get_yticklabels() if t.get_text()}


def lab(color: tuple[float, float, float]) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB colour: an independent perceptual distance."""
    rgb = np.array(to_rgb(color), dtype="float64")
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = matrix @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def line_collections(ax: Axes) -> list[LineCollection]:
    return [c for c in ax.collections if isinstance(c, LineCollection) and len(c.get_segments())]


# --- 11: the decaying feature is always shown -------------------------------------------------


def test_alpha_panel_shows_the_decaying_feature_whatever_the_cut():
    inputs = make_inputs(top_n=10)
    alpha = inputs.alpha.set_index("feature")
    assert alpha["alpha_score"].notna().all()  # eight quarters: every feature has a score
    assert alpha.loc[alpha["decaying"], :].index.tolist() == [FADING]
    assert inputs.alpha["feature"].tolist().index(FADING) >= inputs.top_n  # below the cut, which hid it
    fig = dashboard_figure(inputs)
    ax = panel(fig, "alpha score")
    ticks = ytick_texts(ax)
    assert FADING in ticks and ticks[FADING] == panels.DECAYING_COLOR
    assert len(ticks) == inputs.top_n  # the cut still holds: 9 best + the decaying one
    assert len(ax.patches) == inputs.top_n
    red = [p for p in ax.patches if to_hex(p.get_facecolor(), keep_alpha=False) == panels.DECAYING_COLOR]
    assert len(red) == 1  # its bar, in its colour
    legend = ax.get_legend()
    assert legend is not None
    assert "decaying IC (1)" in [t.get_text() for t in legend.get_texts()]
    assert (
        ax.get_title()
        == f"alpha score, q-value of the mean IC beside each bar; {len(alpha) - inputs.top_n} hidden"
    )
    labels = {round(t.get_position()[1]): t.get_text() for t in ax.texts if t.get_gid() == "alpha_label"}
    assert labels[0] == expected_q_label(alpha.loc[FADING, "ic_q_value"])  # the bottom row
    plt.close(fig)


# --- the q-value beside each bar -------------------------------------------------------------------


def test_each_alpha_bar_has_the_q_value_of_its_feature_beside_it():
    inputs = make_inputs(n_runs=4)
    q_values = inputs.alpha.set_index("feature")["ic_q_value"]
    fig = dashboard_figure(inputs)
    ax = panel(fig, "alpha score")
    bars = {
        round(p.get_y() + p.get_height() / 2): p.get_width() for p in ax.patches if isinstance(p, Rectangle)
    }
    features = {
        round(float(y)): t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
    }
    labels = [t for t in ax.texts if t.get_gid() == "alpha_label"]
    assert len(labels) == len(bars) == inputs.top_n
    for label in labels:
        x, y = label.get_position()
        row = round(y)
        assert label.get_text() == expected_q_label(q_values[features[row]]), features[row]
        assert x == pytest.approx(bars[row] + 0.025)  # right of its own bar
    assert ax.get_xlim() == (0.0, 1.1)  # room for the label of a bar near 1
    plt.close(fig)


def test_q_labels_read_as_specified():
    assert [q_label(q) for q in [0.0031, 0.0004, 0.001, 0.25, None, float("nan"), pd.NA]] == [
        "q=0.003",
        "q<0.001",
        "q=0.001",
        "q=0.250",
        "q=n/a",
        "q=n/a",
        "q=n/a",
    ]
    assert q_text(0.0004) == "<0.001" and q_text(0.0126) == "0.013"


def test_a_quarantined_feature_with_a_score_shows_its_q_value_and_its_ic():
    inputs = make_inputs(n_runs=4, quarantined=quarantine(run_keys(4)).assign(feature=STEADY[3]))
    rows = panels.alpha_panel_rows(inputs)
    row = rows.set_index("feature").loc[STEADY[3]]
    assert row["kind"] == "quarantined"
    q = inputs.alpha.set_index("feature").loc[STEADY[3], "ic_q_value"]
    assert row["q"] == q
    assert panels.bar_label(rows[rows["feature"] == STEADY[3]].iloc[0]) == (
        f"{expected_q_label(q)}; quarantined, IC +0.912"
    )


# --- 12: point labels ----------------------------------------------------------------------------


def test_label_points_measures_after_the_limits_are_set():
    """Eight points well apart in data but within 7% of the default 0..1 view: measured before the
    axis limits are set, their labels all seem to overlap."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=80, layout="constrained")
    points = pd.DataFrame({"feature": [f"feature {i}" for i in range(8)], "x": np.arange(8) * 0.01})
    points["y"] = points["x"]
    ax.scatter(points["x"], points["y"])
    figure._label_points(ax, points, "x", "y", points["feature"].tolist())
    fig.canvas.draw()
    assert sorted(t.get_text() for t in ax.texts) == points["feature"].tolist()
    frame = ax.get_window_extent()
    for text in ax.texts:
        box = text.get_window_extent()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    plt.close(fig)


def test_stability_panel_labels_every_top_feature_that_fits():
    inputs = make_inputs(n_runs=4, n_persistent=8, fading=False)
    top = dashboard.top_features(inputs)[:8]
    # eight well separated points on a diagonal, in a range small against the default 0..1 view
    shares = inputs.history.assign(
        share=inputs.history["shap_mean_abs"]
        / inputs.history.groupby("run_key")["shap_mean_abs"].transform("sum")
    )
    mean_share = shares.groupby("feature")["share"].mean()
    order = mean_share.sort_values(ascending=False).index
    stability = pd.DataFrame(
        {
            "feature": order,
            "rank_std": np.linspace(0.0, 0.35, len(order)),
            "topk_frequency": np.linspace(1.0, 0.0, len(order)),
        }
    )
    fig = dashboard_figure(
        DashboardInputs(inputs.runs, inputs.history, stability, inputs.alpha, inputs.summary, inputs.run_key)
    )
    ax = panel(fig, "stability")
    fig.canvas.draw()
    assert sorted(t.get_text() for t in ax.texts) == sorted(top)
    plt.close(fig)


# --- 13: distinct line colours -------------------------------------------------------------------


def test_importance_lines_have_distinct_far_apart_colours():
    fig = dashboard_figure(make_inputs(n_runs=6))
    ax = panel(fig, "importance share")
    colors = [to_rgb(line.get_color()) for line in ax.get_lines()]
    assert len(colors) == 10
    assert len(set(colors)) == 10
    tab20 = [to_rgb(c) for c in plt.get_cmap("tab20").colors]  # type: ignore[attr-defined]
    pairs = [{tab20[2 * k], tab20[2 * k + 1]} for k in range(10)]
    for a, b in itertools.combinations(colors, 2):
        assert {a, b} not in pairs, f"{a} and {b} are a dark/light tab20 pair"
        assert np.linalg.norm(lab(a) - lab(b)) > 20, (a, b)
    plt.close(fig)


# --- 14: run performance -------------------------------------------------------------------------


def two_runs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_key": run_keys(2),
            "oos_rank_ic": [-0.021, 0.032],
            "n_oos": [400, 900],
            "oos_hit_rate": [0.601, 0.653],
            "oos_base_rate": [0.598, 0.612],
            "n_train": 500,
            "priors_from_run_key": None,
        }
    )


def test_run_performance_shows_base_rate_zero_line_interval_on_honest_scales():
    runs = two_runs()
    fig = dashboard_figure(make_inputs(n_runs=2, runs=runs))
    fig.canvas.draw()
    # with two runs, both rising, the IC line and the hit-rate line must not land on the same pixels
    pixels = [
        ax.transData.transform(np.asarray(line.get_xydata()))
        for column in ["oos_rank_ic", "oos_hit_rate"]
        for ax in fig.axes
        for line in ax.get_lines()
        if np.asarray(line.get_ydata()).shape == (2,)
        and np.allclose(np.asarray(line.get_ydata(), dtype="float64"), runs[column])
    ]
    assert len(pixels) == 2 and np.abs(pixels[0] - pixels[1]).max() > 20, pixels
    lines = {line.get_gid(): (ax, line) for ax in fig.axes for line in ax.get_lines() if line.get_gid()}
    assert "base_rate" in lines, "no base-rate line"
    hit_ax, base = lines["base_rate"]
    np.testing.assert_allclose(np.asarray(base.get_ydata(), dtype="float64"), runs["oos_base_rate"])
    ic_ax, zero = lines["ic_zero"]
    assert np.allclose(zero.get_ydata(), 0.0)
    assert ic_ax is not hit_ax
    assert ic_ax.get_ylim() != hit_ax.get_ylim()
    ic_low, ic_high = ic_ax.get_ylim()
    hit_low, hit_high = hit_ax.get_ylim()
    assert ic_low < 0 < ic_high
    assert hit_low < runs[["oos_hit_rate", "oos_base_rate"]].min().min()
    assert hit_high > runs[["oos_hit_rate", "oos_base_rate"]].max().max()
    # the IC's ~95% interval per run, Fisher z: tanh(atanh(r) +- 1.96 / sqrt(n - 3))
    z = 0.5 * np.log((1 + runs["oos_rank_ic"]) / (1 - runs["oos_rank_ic"]))
    half = 1.96 / np.sqrt(runs["n_oos"] - 3)
    segments = [c for c in line_collections(ic_ax) if c.get_gid() == "ic_interval"]
    assert len(segments) == 1
    ends = np.array([[seg[0][1], seg[1][1]] for seg in segments[0].get_segments()])
    np.testing.assert_allclose(np.sort(ends, axis=1), np.c_[np.tanh(z - half), np.tanh(z + half)], atol=1e-12)
    assert ic_low < np.tanh(z - half).min() and np.tanh(z + half).max() < ic_high
    # legends cross no data: they sit outside their axes
    for ax in (ic_ax, hit_ax):
        legend = ax.get_legend()
        assert legend is not None
        assert not legend.get_window_extent().overlaps(ax.get_window_extent())
    plt.close(fig)


def test_ic_interval_covers_about_95_percent():
    """The Fisher-z band of a Spearman IC, by simulation (bivariate normal, rho 0.1, n 300): it is an
    approximation (Spearman's z has a slightly larger variance), so coverage is about, not exactly, 95%."""
    rng = np.random.default_rng(1)
    rho, n, reps = 0.1, 300, 600
    true = 6 / np.pi * np.arcsin(rho / 2)  # Spearman's rho of a bivariate normal
    covered = 0
    for _ in range(reps):
        x = rng.normal(size=n)
        y = rho * x + np.sqrt(1 - rho**2) * rng.normal(size=n)
        low, high = dashboard.ic_interval(stats.spearmanr(x, y).statistic, n)
        covered += low <= true <= high
    assert 0.91 <= covered / reps <= 0.98
    assert all(np.isnan(dashboard.ic_interval(v, m)).all() for v, m in [(None, 500), (0.1, None), (0.1, 3)])


# --- 15: quarantined features ---------------------------------------------------------------------


def test_quarantined_feature_is_in_the_alpha_panel_and_the_summary():
    keys = run_keys(8)
    later = pd.DataFrame(
        {"run_key": ["2030-01-01..2030-03-31/ridge"], "feature": ["future leak"], "ic": [0.5], "reason": "x"}
    )
    inputs = make_inputs(quarantined=pd.concat([quarantine(keys[2:]), later], ignore_index=True))
    fig = dashboard_figure(inputs)
    ax = panel(fig, "alpha score")
    ticks = ytick_texts(ax)
    assert ticks.get(LEAK) == panels.QUARANTINED_COLOR
    assert FADING in ticks and len(ticks) == inputs.top_n
    assert "future leak" not in ticks  # a run after the as-of run is not shown
    assert any(t.get_text() == "quarantined, IC +0.912" for t in ax.texts)
    legend = ax.get_legend()
    assert legend is not None and any(t.get_text().startswith("quarantined") for t in legend.get_texts())
    plt.close(fig)
    summary = dashboard_summary(inputs)
    section = summary.split("### Quarantined (possible leakage)")[1]
    assert f"| {LEAK} | `{keys[-1]}` | +0.912 | 6 of 8 |" in section
    assert "future leak" not in summary
    assert "Quarantined (possible leakage): none." in dashboard_summary(make_inputs())


def test_quarantined_frame_needs_its_columns():
    with pytest.raises(ValueError, match="run_key"):
        make_inputs(quarantined=pd.DataFrame({"feature": [LEAK], "ic": [0.9], "reason": ["x"]}))
    assert list(make_inputs().quarantined.columns) == ["run_key", "feature", "ic", "reason"]


def latest_row(run_key: str = "2022-10-01..2022-12-31/ridge") -> pd.Series:
    return pd.Series(
        {
            "run_key": run_key,
            "range_start": pd.Timestamp("2022-10-01"),
            "range_end": pd.Timestamp("2022-12-31"),
            "dagster_run_id": "abc",
            "n_train": 766,
            "n_trades": 780,
            "n_unrealized": 14,
            "oos_rank_ic": 0.2306,
            "oos_r2": 0.045,
            "oos_hit_rate": 0.555,
            "oos_base_rate": 0.483,
            "oos_mean_return_taken": 0.009,
            "oos_mean_return_all": -0.0003,
            "priors_from_run_key": None,
        }
    )


@pytest.mark.parametrize("markdown", [False, True])
def test_report_lists_quarantined_features(markdown):
    alpha = make_inputs(n_runs=3).alpha
    leak = pd.DataFrame(
        {"feature": [LEAK, "other"], "ic": [0.912, -0.45], "reason": ["too good", "too good"]}
    )
    text = render_report(latest_row(), None, alpha, 8, markdown, 10, quarantined=leak)
    run = "2022-10-01..2022-12-31/ridge"
    assert (
        f"Quarantined (possible leakage): {LEAK} (IC +0.912, run {run}), other (IC -0.450, run {run})" in text
    )
    assert "Quarantined: not read" in render_report(latest_row(), None, alpha, 8, markdown)
    assert "Quarantined: none" in render_report(latest_row(), None, alpha, 8, markdown, 10, pd.DataFrame())


# --- the alpha table and the stability lines of the summary and the report --------------------------


def hand_alpha() -> pd.DataFrame:
    """Four features, best alpha first; "d" decays and has the lowest score."""
    return pd.DataFrame(
        {
            "feature": ["a", "b", "c", "d"],
            "alpha_score": [0.62, 0.41, 0.12, 0.0],
            "ic_mean": [0.06, 0.045, 0.02, 0.0987],
            "ic_ci_low": [0.04, 0.0212, 0.0011, 0.0309],
            "ic_ci_high": [0.08, 0.0688, 0.0389, 0.1666],
            "ic_q_value": [0.0004, 0.0126, 0.2, 0.0264],
            "n_periods": [104, 104, 52, 103],
            "persistence": [1.0, 0.873, 1.0, 0.0],
            "decaying": [False, False, False, True],
            "half_life_days": [None, None, None, 312.3],
            "ic_slope_p_value": [0.6, 0.3, 0.5, 0.0001],
        }
    )


HAND_ROWS = {
    "a": "| a | 0.620 | +0.0600 [+0.0400, +0.0800] | <0.001 | 104 | 1.00 |  |",
    "b": "| b | 0.410 | +0.0450 [+0.0212, +0.0688] | 0.013 | 104 | 0.87 |  |",
    "d": "| d | 0.000 | +0.0987 [+0.0309, +0.1666] | 0.026 | 103 | 0.00 | yes, half-life 312 days |",
}


def test_summary_lists_top_alpha_with_intervals_and_every_decaying_feature():
    inputs = dataclasses.replace(make_inputs(n_runs=4), alpha=hand_alpha(), top_n=2)
    lines = dashboard_summary(inputs).splitlines()
    header = lines.index(
        "| feature | alpha score | IC mean [95% interval] | q | periods | persistence | decaying |"
    )
    assert lines[header + 1] == "|---|---:|---:|---:|---:|---:|---|"
    assert lines[header + 2 : header + 5] == [HAND_ROWS["a"], HAND_ROWS["b"], HAND_ROWS["d"]]
    assert not lines[header + 5]  # the table ends; "c" is left out
    assert "Listed although below the top 2, because they decay: d." in lines
    assert "1 more features not shown." in lines
    assert "Decaying: d." in lines
    assert not any(line.startswith("| c |") for line in lines)


def test_summary_states_each_decay_verdict_and_lists_the_side_and_strategy_apart():
    """A decay the data cannot tell says so with the fade it would see; the indicators are not
    ranked but listed with their pooled IC."""
    alpha = hand_alpha().assign(
        decay_verdict=["not decaying", "cannot tell", "cannot tell", "decaying"],
        decay_mde=[0.02, 0.2512, None, 0.05],
        indicator=False,
    )
    side = {"feature": "direction", "alpha_score": np.nan, "indicator": True}
    alpha = pd.concat([alpha, pd.DataFrame([side | {"pooled_ic_mean": 0.0412, "pooled_ic_p_value": 0.0004}])])
    inputs = dataclasses.replace(make_inputs(n_runs=4), alpha=alpha, top_n=3)
    lines = dashboard_summary(inputs).splitlines()
    assert HAND_ROWS["a"].replace("|  |", "| no |") in lines
    assert HAND_ROWS["b"].replace("|  |", "| cannot tell (it would see a fade of 0.25) |") in lines
    assert "| c | 0.120 | +0.0200 [+0.0011, +0.0389] | 0.200 | 52 | 1.00 | cannot tell |" in lines
    assert HAND_ROWS["d"] in lines
    note = "Side and strategy, not ranked (IC pooled over the cells the others are measured within): "
    assert note + "direction +0.0412 (p <0.001)." in lines
    assert not any(line.startswith("| direction |") for line in lines)


PAIRS = pd.DataFrame(
    {
        "feature_a": ["steady 01", "steady 02"],
        "feature_b": ["steady 05", "steady 03"],
        "interaction_mean_abs": [0.0012, 0.0004],
        "rank": [1, 2],
    }
)


def test_summary_and_report_list_the_strongest_interactions():
    lines = dashboard_summary(dataclasses.replace(make_inputs(n_runs=2), interactions=PAIRS)).splitlines()
    start = lines.index("### Strongest feature interactions (latest run)")
    assert lines[start + 1 : start + 3] == [
        "- steady 01 x steady 05: mean |SHAP interaction| 0.00120",
        "- steady 02 x steady 03: mean |SHAP interaction| 0.00040",
    ]
    assert "- none recorded (a linear model has no interactions" in dashboard_summary(make_inputs(n_runs=2))
    text = render_report(latest_row(), None, hand_alpha(), 8, False, 2, interactions=PAIRS)
    assert text.endswith(
        "Strongest feature interactions\n  steady 01 x steady 05: mean |SHAP interaction| 0.00120\n"
        "  steady 02 x steady 03: mean |SHAP interaction| 0.00040\n"
    )
    assert "Strongest feature interactions" not in render_report(
        latest_row(), None, hand_alpha(), 8, False, 2
    )


@pytest.mark.parametrize("markdown", [False, True])
def test_report_lists_top_alpha_with_intervals_and_every_decaying_feature(markdown):
    text = render_report(latest_row(), None, hand_alpha(), 8, markdown, 2)
    section = text.split("Alpha features, by evidence\n")[1]
    if markdown:
        assert [line for line in section.splitlines() if line.startswith("| ")][1:] == list(
            HAND_ROWS.values()
        )
    else:
        rows = [line.split() for line in section.splitlines()[1:4]]
        assert [r[0] for r in rows] == ["a", "b", "d"]
        assert rows[0][1:7] == ["0.620", "+0.0600", "[+0.0400,", "+0.0800]", "<0.001", "104"]
        assert rows[2][1:] == [
            "0.000",
            "+0.0987",
            "[+0.0309,",
            "+0.1666]",
            "0.026",
            "103",
            "0.00",
            "yes,",
        ] + [
            "half-life",
            "312",
            "days",
        ]
    assert "\nListed although below the top 2, because they decay: d.\n" in section
    assert "\n1 more features not shown.\n" in section
    empty = hand_alpha().assign(alpha_score=np.nan, n_periods=[2, 2, 1, 2])
    assert "alpha needs 3 complete periods of trades, 2 so far" in render_report(
        latest_row(), None, empty, 1, markdown
    )


def overlapping_nightly_runs(n_runs: int) -> pd.DataFrame:
    """90-day runs stepping one day: every window overlaps the newest, so one run is compared."""
    ends = pd.date_range("2022-06-30", periods=n_runs, freq="D")
    starts = ends - pd.Timedelta(days=89)
    return pd.DataFrame(
        {
            "run_key": [f"{s:%Y-%m-%d}..{e:%Y-%m-%d}/ridge" for s, e in zip(starts, ends, strict=True)],
            "range_start": starts.date,
            "range_end": ends.date,
        }
    )


def test_stability_lines_state_runs_compared_of_stored_and_print_na_for_null_figures():
    ranges = overlapping_nightly_runs(3)
    history = make_inputs(ranges=ranges).history
    summary = summarize_stability(history, ranges, 5, 0.978, effective_runs(ranges))
    assert summary.n_independent_runs == 1 and summary.kendall_w is None
    lines = stability_lines(summary.__dict__)
    assert lines[:3] == [
        "runs compared: 1 non-overlapping of 3 stored (worth 1.0 non-overlapping runs); "
        "consecutive stored runs share 98% of their training trades",
        "Kendall's W n/a, mean pairwise Spearman n/a, latest Spearman n/a",
        f"top-{summary.k} Nogueira stability n/a [n/a, n/a]",
    ]
    assert lines[3] == summary.note
    # as read back from the warehouse: NULL figures are NaN, the report prints them as n/a too
    stored = pd.Series(summary.__dict__).replace({None: np.nan})
    report = render_report(latest_row(), stored, hand_alpha(), 3, False)
    assert "  runs compared: 1 non-overlapping of 3 stored" in report
    assert "  Kendall's W n/a, mean pairwise Spearman n/a, latest Spearman n/a" in report
    # four quarterly runs: all compared, too few for the Nogueira interval
    four = make_inputs(n_runs=4)
    phi = four.summary["nogueira_phi"]
    summary_text = dashboard_summary(four)
    assert (
        "  - runs compared: 4 non-overlapping of 4 stored (worth 4.0 non-overlapping runs); " in summary_text
    )
    assert f"  - top-{four.summary['k']} Nogueira stability {phi:.3f} [n/a, n/a]" in summary_text
    assert f"Kendall's W {four.summary['kendall_w']:.3f}," in summary_text


# --- 17: one run ---------------------------------------------------------------------------------


def test_with_one_run_alpha_is_scored_and_only_stability_says_it_needs_two():
    inputs = make_inputs(n_runs=1, fading=False)
    assert inputs.alpha["alpha_score"].notna().all()  # a quarter of weekly periods is evidence
    assert inputs.alpha["n_periods"].min() >= 3
    fig = dashboard_figure(inputs)
    saying = sorted(
        ax.get_title() for ax in fig.axes if any("needs at least 2 runs" in t.get_text() for t in ax.texts)
    )
    assert saying == ["stability: importance vs rank variability"]
    ax = panel(fig, "alpha score")
    assert ax.get_title().startswith("alpha score, q-value of the mean IC beside each bar")
    assert len([t for t in ax.texts if t.get_gid() == "alpha_label"]) == inputs.top_n
    ax = panel(fig, "importance vs realized performance")
    scatter = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scatter) == 1 and np.asarray(scatter[0].get_offsets()).shape == (len(inputs.alpha), 2)
    plt.close(fig)


def too_short_a_run() -> pd.DataFrame:
    """One run of the first four weeks: trades held up to ten business days leave two complete periods."""
    return pd.DataFrame(
        {
            "run_key": ["2021-01-01..2021-01-27/ridge"],
            "range_start": [pd.Timestamp("2021-01-01").date()],
            "range_end": [pd.Timestamp("2021-01-27").date()],
        }
    )


def test_without_complete_periods_the_panel_and_headline_say_what_alpha_needs():
    inputs = make_inputs(ranges=too_short_a_run(), fading=False)
    assert inputs.alpha["alpha_score"].isna().all()
    periods = int(inputs.alpha["n_periods"].max())
    assert periods == 2
    fig = dashboard_figure(inputs)
    ax = panel(fig, "alpha score")
    needs = "alpha needs 3 complete periods of trades, 2 so far"
    assert [t.get_text() for t in ax.texts] == [needs]
    plt.close(fig)
    headline = dashboard.dashboard_headline(inputs)
    top = dashboard.top_features(inputs)[0]
    assert f"no alpha yet ({needs}); most important to the model: {top}; decaying: n/a (needs 4 " in (
        headline
    )
    assert "top feature" not in headline
    summary = dashboard_summary(inputs)
    assert f"- {needs}" in summary and "Decaying: n/a (needs 4 complete periods)." in summary
    assert "needs 2 runs" not in summary + headline and "needs 3 runs" not in summary + headline
    # with a quarantined feature, the alpha panel shows it and says what a score needs
    fig = dashboard_figure(
        make_inputs(ranges=too_short_a_run(), quarantined=quarantine(too_short_a_run()["run_key"].tolist()))
    )
    ax = panel(fig, "alpha score")
    assert ytick_texts(ax) == {LEAK: panels.QUARANTINED_COLOR}
    assert ax.get_title() == f"alpha score ({needs})"
    plt.close(fig)


def test_with_three_periods_alpha_is_scored_and_decay_says_what_it_needs():
    ranges = too_short_a_run().assign(
        run_key="2021-01-01..2021-01-31/ridge", range_end=pd.Timestamp("2021-01-31").date()
    )
    inputs = make_inputs(ranges=ranges)
    assert inputs.alpha["n_periods"].max() == 3 and inputs.alpha["alpha_score"].notna().all()
    assert inputs.alpha["ic_slope_p_value"].isna().all() and not inputs.alpha["decaying"].any()
    fig = dashboard_figure(inputs)
    ax = panel(fig, "alpha score")
    legend = ax.get_legend()
    assert legend is not None
    assert "decaying IC: n/a (needs 4 complete periods)" in [t.get_text() for t in legend.get_texts()]
    plt.close(fig)
    assert "; decaying: n/a (needs 4 complete periods);" in dashboard.dashboard_headline(inputs)


# --- 18: the headline ----------------------------------------------------------------------------


def test_summary_starts_with_a_plain_one_line_headline():
    keys = run_keys(8)
    inputs = make_inputs(quarantined=quarantine(keys))
    headline = dashboard.dashboard_headline(inputs)
    assert "\n" not in headline and "|" not in headline and not headline.startswith(("#", "-", "*"))
    latest = inputs.runs.iloc[-1]
    best = inputs.alpha.sort_values("alpha_score", ascending=False).iloc[0]
    # a run that quarantined a feature is suspect: the headline says so first, naming the feature
    suspicion, rest = headline.split(". As of ", 1)
    assert suspicion == (
        f"SUSPECT RUN {keys[-1]}: possible leaks quarantined (held out of every model): {LEAK}; "
        "its suspected features feed no prior and get no alpha score"
    )
    assert rest.startswith(
        f"{keys[-1]}: top feature {best['feature']} "
        f"(alpha {best['alpha_score']:.2f}, {expected_q_label(best['ic_q_value'])}); "
    )
    assert f"decaying: {FADING};" in headline and f"quarantined: {LEAK};" in headline
    assert f"OOS rank IC {latest['oos_rank_ic']:+.3f} [" in headline and "] vs 0" in headline
    assert f"(hit {latest['oos_hit_rate']:.2f} vs base {latest['oos_base_rate']:.2f})" in headline
    summary = dashboard_summary(inputs)
    assert summary.splitlines()[0] == headline and summary.splitlines()[1] == ""
    one = make_inputs(n_runs=1, fading=False)  # one quarter: nothing significant yet
    assert (one.alpha["ic_q_value"] >= 0.05).all()
    one_line = dashboard.dashboard_headline(one)
    assert one_line.startswith(
        "As of 2021-01-01..2021-03-31/ridge: no feature has reliable alpha yet (none with q < 0.05);"
    )
    assert "top feature" not in one_line
    decaying = one.alpha.loc[one.alpha["decaying"], "feature"].tolist()
    assert f"decaying: {', '.join(decaying[:3]) if decaying else 'none'}" in one_line
    assert "quarantined: none" in one_line and "runs" not in one_line.split("OOS")[0]


def test_headline_is_one_line_whatever_the_names():
    inputs = make_inputs(n_runs=3, quarantined=quarantine(run_keys(3)).assign(feature="tab\there\nnewline"))
    headline = dashboard.dashboard_headline(inputs)
    assert "\n" not in headline and "\t" not in headline and "quarantined: tab here newline;" in headline


def test_png_with_every_new_element_is_deterministic():
    inputs = dataclasses.replace(
        make_inputs(n_runs=6, quarantined=quarantine(run_keys(6))),
        segment=MEAN_REVERSION,  # the segment's importance panel in place of the pooled one
        segments=segment_frame(run_keys(6)),
    )
    first, second = draw_dashboard(inputs), draw_dashboard(inputs)
    assert first == second


# --- one strategy or side (issue 12.2): the "Within <segment>" section and the segment panel ----------

MEAN_REVERSION = "strategy=mean_reversion"
SHORT = "side=short"
# the latest run's rows of mean reversion, in rank order: feature, IC within the segment, mean |SHAP|
WITHIN_LATEST = [
    ("steady 07", -0.1234, 0.04321),
    ("steady 02", 0.0876, 0.03012),
    ("strategy@mean_reversion", None, 0.02005),  # constant within its strategy: no IC
    ("steady 11", 0.0045, 0.00987),
]


def segment_frame(keys: list[str]) -> pd.DataFrame:
    """feature_segments rows: mean reversion in every run but the second (a run from before segments
    were stored), with the features of WITHIN_LATEST in the latest run (shuffled: the rank orders them)
    and LEAK quarantined (no rank); side=short in the latest run, where steady 00 leads."""
    rows: list[tuple[object, ...]] = []
    for i, run in enumerate(keys):
        if i == 1:
            continue
        listed = WITHIN_LATEST if run == keys[-1] else list(reversed(WITHIN_LATEST))
        for rank, (feature, ic, shap) in enumerate(listed, start=1):
            rows.append((run, MEAN_REVERSION, feature, 812, ic, shap * (1 + i / 10), rank))
        rows.append((run, MEAN_REVERSION, LEAK, 812, 0.731, 0.0, None))
    rows += [
        (keys[-1], SHORT, "steady 00", 300, 0.05, 0.01, 1),
        (keys[-1], SHORT, "steady 07", 300, -0.02, 0.005, 2),
    ]
    frame = pd.DataFrame(rows, columns=dashboard.SEGMENT_COLUMNS)
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)  # the order stored is no help


def with_segment(segment: str, n_runs: int = 3, top_n: int = 3) -> DashboardInputs:
    inputs = make_inputs(n_runs=n_runs, top_n=top_n)
    return dataclasses.replace(inputs, segment=segment, segments=segment_frame(run_keys(n_runs)))


WITHIN_ROWS = [
    "| rank | feature | trades | IC (in-sample) | mean \\|SHAP\\| |",
    "|---:|---|---:|---:|---:|",
    "| 1 | steady 07 | 812 | -0.1234 | 0.05185 |",  # the latest run's mean |SHAP|, x 1.2 (third run)
    "| 2 | steady 02 | 812 | +0.0876 | 0.03614 |",
    "| 3 | strategy@mean_reversion | 812 | n/a | 0.02406 |",
]


def test_summary_lists_the_segment_top_features_in_rank_order_with_their_ic():
    inputs = with_segment(MEAN_REVERSION)
    lines = dashboard_summary(inputs).splitlines()
    start = lines.index(f"### Within {MEAN_REVERSION} (latest run)")
    assert lines[start + 1].startswith(
        f"812 trades of run {inputs.run_key}; ranked by the model's mean |SHAP|"
    )
    assert lines[start + 2] == ""
    assert lines[start + 3 : start + 8] == WITHIN_ROWS
    notes = lines[start + 8 : lines.index("### Strongest feature interactions (latest run)")]
    assert [n for n in notes if n] == [
        "1 more features not shown.",  # steady 11, fourth
        "IC n/a: constant within the segment (strategy@mean_reversion); measured from the segment's own "
        "average trade, they carry no effect within it.",
        f"Quarantined, so not ranked: {LEAK} (IC +0.731).",
    ]
    assert "### Within" not in dashboard_summary(make_inputs(n_runs=3))  # no segment: no section


def test_an_unknown_segment_names_the_latest_runs_segments_and_the_panel_falls_back_to_pooled():
    inputs = with_segment("strategy=pairs")
    summary = dashboard_summary(inputs)
    section = summary.split("### Within strategy=pairs (latest run)\n")[1].splitlines()[0]
    assert section == (
        f"segment 'strategy=pairs' is not stored for run {inputs.run_key}; "
        f"its segments: {SHORT}, {MEAN_REVERSION}"
    )
    fig = dashboard_figure(inputs)
    ax = panel(fig, "importance share")
    assert ax.get_title() == (
        "importance share (mean |SHAP|) over runs (top 3)\n"
        "segment strategy=pairs not stored for the latest run: pooled shown"
    )
    pooled = inputs.history.assign(
        share=inputs.history["shap_mean_abs"]
        / inputs.history.groupby("run_key")["shap_mean_abs"].transform("sum")
    )
    top = dashboard.top_features(inputs)
    assert [line.get_label() for line in ax.get_lines()] == top
    for line in ax.get_lines():
        expected = pooled[pooled["feature"] == line.get_label()].set_index("run_key")["share"]
        y = np.asarray(line.get_ydata(), dtype="float64")
        np.testing.assert_allclose(y, expected.reindex(run_keys(3)).to_numpy())
    plt.close(fig)
    # a latest run that stored no segment at all (older than the table) says so
    none = dataclasses.replace(inputs, segments=segment_frame(run_keys(3)).iloc[0:0])
    assert f"is not stored for run {inputs.run_key}; its segments: none stored" in dashboard_summary(none)


def test_segment_panel_draws_its_mean_shap_per_run_with_a_gap_for_a_run_without_it():
    inputs = with_segment(MEAN_REVERSION, top_n=15)
    fig = dashboard_figure(inputs)
    ax = panel(fig, f"mean |SHAP| within {MEAN_REVERSION}")
    assert (
        ax.get_title()
        == f"mean |SHAP| within {MEAN_REVERSION} over runs (top 4); 1 of 3 runs did not store it"
    )
    # mean rank over the two runs that stored it: every feature 2.5, so by name; LEAK has no rank
    assert [line.get_label() for line in ax.get_lines()] == [
        "steady 02",
        "steady 07",
        "steady 11",
        "strategy@mean_reversion",
    ]
    shap = {feature: value for feature, _, value in WITHIN_LATEST}
    for line in ax.get_lines():
        y = np.asarray(line.get_ydata(), dtype="float64")
        base = shap[str(line.get_label())]
        np.testing.assert_allclose(y[[0, 2]], [base, base * 1.2])  # runs 1 and 3, as stored
        assert np.isnan(y[1])  # the second run stored no segment rows
    assert ax.get_ylabel() == "mean |SHAP| over the segment's trades"
    plt.close(fig)


def test_segments_frame_needs_its_columns():
    with pytest.raises(ValueError, match="segments needs the columns"):
        dataclasses.replace(make_inputs(n_runs=2), segments=pd.DataFrame({"segment": [SHORT]}))


@pytest.mark.parametrize("markdown", [False, True])
def test_report_shows_one_segment_of_the_latest_run(markdown):
    run = "2022-10-01..2022-12-31/ridge"
    latest_rows = segment_frame([run]).assign(run_key=run)  # the rows LatestRun reads: one run
    text = render_report(latest_row(run), None, hand_alpha(), 8, markdown, 3, segments=latest_rows)
    bullet = "- " if markdown else "  "
    assert f"{bullet}Segments: {SHORT}, {MEAN_REVERSION} (--segment NAME shows one)\n" in text
    assert "Within" not in text
    text = render_report(
        latest_row(run), None, hand_alpha(), 8, markdown, 3, segments=latest_rows, segment=MEAN_REVERSION
    )
    section = text.split(("## " if markdown else "") + f"Within {MEAN_REVERSION}\n")[1].splitlines()
    assert section[0].startswith(f"{bullet}812 trades of run {run}; ranked by the model's mean |SHAP|")
    expected = [
        ("1", "steady 07", "812", "-0.1234", "0.04321"),
        ("2", "steady 02", "812", "+0.0876", "0.03012"),
        ("3", "strategy@mean_reversion", "812", "n/a", "0.02005"),
    ]
    if markdown:
        assert section[2:4] == WITHIN_ROWS[:2]
        assert section[4:7] == [f"| {' | '.join(row)} |" for row in expected]
    else:
        assert section[2].split() == ["rank", "feature", "trades", "IC", "(in-sample)", "mean", "|SHAP|"]
        assert [line.split() for line in section[3:6]] == [" ".join(row).split() for row in expected]
    assert (
        "\n1 more features not shown.\n" in text
        and f"\nQuarantined, so not ranked: {LEAK} (IC +0.731).\n" in text
    )
    # the report of a run without segment rows: the line says so; the section names none
    empty = latest_rows.iloc[0:0]
    assert "Segments: none stored for this run" in render_report(
        latest_row(run), None, hand_alpha(), 8, markdown, segments=empty
    )
    assert f"segment '{SHORT}' is not stored for run {run}; its segments: none stored" in render_report(
        latest_row(run), None, hand_alpha(), 8, markdown, segments=empty, segment=SHORT
    )


def test_the_sizing_panel_draws_each_books_cumulative_net_pnl_ending_at_its_total():
    """Panel (7): the latest run's cumulative OOS PnL net of costs, one line per book, each ending at
    the book's net total; without books (a run from before sizing), a placeholder says so."""
    rng = np.random.default_rng(4)
    entry = pd.Timestamp("2021-03-01 14:30", tz="UTC") + pd.to_timedelta(np.arange(60) // 3, unit="D")
    books = pd.DataFrame(
        {
            "prediction": rng.normal(size=60),
            "position": np.abs(rng.normal(size=60)),
            "gross_return": rng.normal(0.001, 0.01, size=60),
            "entry_time": entry,
            "exit_time": entry + pd.Timedelta(days=2),
        }
    )
    sizing = book_performance(books, SizingParams(cost_bps=5)).assign(cost_bps=5.0)
    inputs = dataclasses.replace(make_inputs(), books=books, sizing=sizing)
    fig = dashboard_figure(inputs)
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}
    net = sizing[sizing["costs"] == "net"].set_index("book")["total_return"]
    per_unit = sizing[sizing["costs"] == "net"].set_index("book")["mean_return"]
    for book in ["sized", "equal", "actual"]:
        assert np.asarray(lines[f"pnl_{book}"].get_ydata())[-1] == pytest.approx(net[book])
        label = str(lines[f"pnl_{book}"].get_label())
        assert label.endswith(f"({per_unit[book] * 1e4:+.1f} bps per unit of notional)")
    assert f"\n{sizing_line(sizing)}." in dashboard_summary(inputs)
    plt.close(fig)
    empty = dashboard_figure(make_inputs())
    sizing_ax = next(ax for ax in empty.axes if ax.get_label() == "sizing")
    assert "stored before sizing existed" in " ".join(t.get_text() for t in sizing_ax.texts)
    assert "OOS sizing: not computed for this run" in dashboard_summary(make_inputs())
    plt.close(empty)


def test_the_agreement_panel_places_each_feature_at_its_tie_averaged_ranks_and_names_the_shared_top():
    """Panel (8): each feature at (rank under the run's model, rank under the other member), ties
    averaged as the agreement ranks them; the features in every member's top k named; Spearman and
    the ensemble's OOS rank IC in the title. Without an ensemble, a placeholder says how to add one."""
    shap = {"ridge": [0.5, 0.4, 0.3, 0.2, 0.1, 0.05], "gbt": [0.4, 0.0, 0.6, 0.3, 0.0, 0.0]}
    member_importance = pd.DataFrame(
        [
            {"model_kind": kind, "feature": f"f{i}", "rank": i + 1, "shap_mean_abs": value}
            for kind, values in shap.items()
            for i, value in enumerate(values)
        ]
    )
    agreement = rank_agreement(member_importance, top_k=2)
    ensemble = pd.DataFrame({"model_kind": ["ridge", "gbt", "ensemble"], "oos_rank_ic": [0.03, 0.01, 0.025]})
    inputs = dataclasses.replace(
        make_inputs(), member_ranks=member_importance, ensemble=ensemble, agreement=agreement
    )
    fig = dashboard_figure(inputs)
    ax = next(ax for ax in fig.axes if ax.get_label() == "agreement")
    points = next(c for c in ax.collections if c.get_gid() == "ranks_gbt").get_offsets()
    by_feature = dict(zip([f"f{i}" for i in range(6)], map(tuple, np.asarray(points)), strict=True))
    assert (
        by_feature["f0"] == (1, 2) and by_feature["f2"] == (3, 1) and by_feature["f1"] == (2, 5)
    )  # 0s tie at 5
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("f")] == ["f0"]  # in both top 2
    spearman = stats.spearmanr(shap["ridge"], shap["gbt"])[0]
    assert f"Spearman {spearman:+.2f}; ensemble OOS rank IC +0.025" in ax.get_title()
    assert f"\n{ensemble_line(ensemble, agreement)}." in dashboard_summary(inputs)
    plt.close(fig)
    empty = dashboard_figure(make_inputs())
    agreement_ax = next(ax for ax in empty.axes if ax.get_label() == "agreement")
    assert "model_settings.ensemble adds others" in " ".join(t.get_text() for t in agreement_ax.texts)
    assert "Ensemble: none (the run fit one model" in dashboard_summary(make_inputs())
    plt.close(empty)
