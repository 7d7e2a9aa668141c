"""The persistence dashboard: one PNG of eight panels and a markdown summary, from warehouse frames.

Panels: (1) importance over runs of the top features, (2) rank heatmap features x runs, (3) alpha
scores of the top features, each with the Benjamini-Hochberg q-value of its mean IC beside its bar
(the evidence comes from the IC per period of the distinct trades, see core/evidence.py, so the q-value
is its uncertainty, whatever the number of runs), plus every decaying and every quarantined (possible
leakage) feature whatever the top-N cut, (4) importance vs realized performance, (5) stability:
importance vs rank variability, (6) run performance over time: OOS rank IC with an approximate 95%
interval and a zero line above, hit rate against the base rate below, each on its own scale, (7)
the latest run's cumulative OOS PnL net of costs, sized vs equal vs actual (core/sizing.py), (8) the
agreement of the latest run's ensemble members: each feature's importance rank under the run's model
against its rank under each other member (core/ensemble.py). Views
show the top `top_n` features and say how many are hidden; the stability panel says when it lacks two
runs, the alpha panel when no feature has the complete periods a score needs. Each panel is drawn by
its own function; dashboard_figure lays the eight out. dashboard_headline is the summary's one-line
plain-text lead; alpha_listing and stability_lines give the alpha table and the stability lines that
the summary and the report (core/report.py) share. With a `segment` (one strategy or side, e.g.
`strategy=mean_reversion`: the pooled importance mixes strategies whose features mean different
things), panel (1) draws the segment's mean |SHAP| over runs and the summary adds a "Within <segment>"
section (segment_lines, shared with the report), from feature_segments rows.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from persistence_pipeline.core.alpha import suspected_leaks_note
from persistence_pipeline.core.design import is_indicator
from persistence_pipeline.core.ensemble import ENSEMBLE, ensemble_line, member_ranks
from persistence_pipeline.core.evidence import MIN_PERIODS_FOR_TEST, MIN_PERIODS_FOR_TREND, SIGNIFICANCE_LEVEL
from persistence_pipeline.core.importance import INTERACTION_COLUMNS
from persistence_pipeline.core.leakage import suspect_run_line
from persistence_pipeline.core.metrics import oos_caveat
from persistence_pipeline.core.monitor import monitor_summary
from persistence_pipeline.core.sizing import SizingParams, books_cost_bps, cumulative_pnl, sizing_line

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.gridspec import SubplotSpec
    from matplotlib.transforms import Bbox

DECAY_UNTESTED = f"n/a (needs {MIN_PERIODS_FOR_TREND} complete periods)"
# Approximate 95% interval of a run's OOS rank IC r over its n OOS trades: Fisher z = atanh(r) with
# standard error 1/sqrt(n - 3), z +- 1.96/sqrt(n - 3) mapped back with tanh. For a Spearman correlation
# this is a slight underestimate (Fieller, Hartley & Pearson 1957 give 1.06/(n - 3) as the variance of
# z); it ignores that walk-forward folds are fitted by different models. A rough band, not a test.
IC_INTERVAL_Z = 1.96
# How many features the importance-share panel draws; tab10 gives each its own hue.
IMPORTANCE_LINES = 10
QUARANTINED_COLUMNS = ["run_key", "feature", "ic", "reason"]
BOOK_COLUMNS = ["prediction", "position", "gross_return", "entry_time", "exit_time"]
BOOK_COLORS = {"sized": "#27ae60", "equal": "#2e86c1", "actual": "0.35"}
MEMBER_RANK_COLUMNS = ["model_kind", "feature", "rank", "shap_mean_abs"]
AGREEMENT_FRAME_COLUMNS = ["feature", "in_all_top_k", "k", "rank_spearman"]
MEMBER_COLORS = ["#c0392b", "#8e44ad", "#d35400"]
HEADLINE_NAMES = 3  # names listed per category in the headline before "and N more"

ALPHA_COLOR = "#2e86c1"
DECAYING_COLOR = "#c0392b"
QUARANTINED_COLOR = "#8e44ad"
BASE_RATE_COLOR = "0.35"
HIT_RATE_COLOR = "#e67e22"


def _empty_quarantined() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_key": pd.Series(dtype="object"),
            "feature": pd.Series(dtype="object"),
            "ic": pd.Series(dtype="float64"),
            "reason": pd.Series(dtype="object"),
        }
    )


SEGMENT_COLUMNS = ["run_key", "segment", "feature", "n_trades", "ic", "shap_mean_abs", "rank"]


def _empty_segments() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype="object" if c in ("run_key", "segment", "feature") else "float64")
            for c in SEGMENT_COLUMNS
        }
    )


@dataclass(frozen=True)
class DashboardInputs:
    # run_metrics rows, oldest first (the panels use oos_rank_ic, n_oos, oos_hit_rate, oos_base_rate)
    runs: pd.DataFrame
    history: pd.DataFrame  # feature_importance_history of those runs
    stability: pd.DataFrame  # feature_stability as of the latest run
    alpha: pd.DataFrame  # feature_alpha as of the latest run
    summary: dict  # stability_summary row as of the latest run
    run_key: str
    top_n: int = 15
    # excluded_features rows (run_key, feature, ic, reason) of those runs: features quarantined as
    # possible leakage; rows of runs not in `runs` are ignored (a backfill never shows its future)
    quarantined: pd.DataFrame = field(default_factory=_empty_quarantined)
    # feature_interactions rows of the latest run (feature_a, feature_b, interaction_mean_abs, rank):
    # trees only, empty for a linear model
    interactions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INTERACTION_COLUMNS))
    # one strategy or side to look at on its own ("strategy=mean_reversion", "side=short"); "": pooled only
    segment: str = ""
    # feature_segments rows (SEGMENT_COLUMNS): at least the `segment`'s rows of the runs shown and every
    # segment's rows of the latest run (their names are what the summary offers for an unknown segment)
    segments: pd.DataFrame = field(default_factory=_empty_segments)
    # the latest run's OOS trades as core/sizing.py books them (runs.oos_books) and its
    # sizing_performance rows; empty for a run stored before sizing existed
    books: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BOOK_COLUMNS))
    sizing: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["book", "costs", "cost_bps"]))
    # the latest run's ensemble (core/ensemble.py): its ensemble_metrics rows (the run's model first),
    # each member's importance ranks (ensemble_importance) and their model_agreement rows; all empty
    # for a run of one model
    ensemble: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["model_kind", "oos_rank_ic"])
    )
    member_ranks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=MEMBER_RANK_COLUMNS))
    agreement: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=AGREEMENT_FRAME_COLUMNS))

    def __post_init__(self) -> None:
        for name, frame, columns in [
            ("quarantined", self.quarantined, QUARANTINED_COLUMNS),
            ("segments", self.segments, SEGMENT_COLUMNS),
            ("books", self.books, BOOK_COLUMNS),
            ("member_ranks", self.member_ranks, MEMBER_RANK_COLUMNS),
            ("agreement", self.agreement, AGREEMENT_FRAME_COLUMNS),
        ]:
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"DashboardInputs.{name} needs the columns {columns} (missing: {missing})")


def run_suspicion(inputs: DashboardInputs, run_key: str | None = None) -> str | None:
    """The SUSPECT RUN line of a run (the latest by default; core/leakage.py), None when it is not."""
    return suspect_run_line(run_key or inputs.run_key, inputs.history, inputs.quarantined)


def suspect_runs(inputs: DashboardInputs) -> set[str]:
    """The runs shown that quarantined a feature or failed the out-of-sample check."""
    return {key for key in inputs.runs["run_key"] if run_suspicion(inputs, key) is not None}


def top_features(inputs: DashboardInputs) -> list[str]:
    """The features shown: best mean rank over the runs (ties by name)."""
    mean_rank = inputs.history.groupby("feature")["rank"].mean().reset_index()
    ordered = mean_rank.sort_values(["rank", "feature"], kind="stable")["feature"].tolist()
    return ordered[: inputs.top_n]


def _number(value: object) -> float:
    """A float, NaN for None, NA or anything that is no number."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _floats(values: pd.Series) -> np.ndarray:
    """Float64 values, NaN for NULL (nullable dtypes included)."""
    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()


def alpha_scored(alpha: pd.DataFrame) -> bool:
    """Whether any feature has an alpha score."""
    return bool(alpha["alpha_score"].notna().any())


def alpha_gate(alpha: pd.DataFrame) -> str:
    """Why no feature has an alpha score: "alpha needs 3 complete periods of trades, N so far", N the
    most complete periods any feature's IC series has."""
    periods = _floats(alpha["n_periods"])
    most = int(np.nanmax(periods)) if np.isfinite(periods).any() else 0
    return f"alpha needs {MIN_PERIODS_FOR_TEST} complete periods of trades, {most} so far"


def decay_tested(alpha: pd.DataFrame) -> bool:
    """Whether any feature's IC series was long enough for the decay trend."""
    return bool(alpha["ic_slope_p_value"].notna().any())


def q_text(q: object) -> str:
    """A q-value as text: "0.003", "<0.001" below 0.001, "n/a" when missing."""
    value = _number(q)
    if not np.isfinite(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def q_label(q: object) -> str:
    """The q-value label beside an alpha bar: "q=0.003", "q<0.001" or "q=n/a"."""
    text = q_text(q)
    return f"q{text}" if text.startswith("<") else f"q={text}"


def ic_interval(ic: object, n: object) -> tuple[float, float]:
    """Approximate 95% interval of a rank IC over n trades (Fisher z, see IC_INTERVAL_Z); NaNs when
    the IC or n is missing or n < 4."""
    r, trades = _number(ic), _number(n)
    if not (np.isfinite(r) and np.isfinite(trades) and trades >= 4):
        return float("nan"), float("nan")
    z = float(np.arctanh(np.clip(r, -0.999999, 0.999999)))
    half = IC_INTERVAL_Z / np.sqrt(trades - 3.0)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def quarantined_by_feature(quarantined: pd.DataFrame, run_order: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per quarantined feature: its latest quarantining run (by `run_order`, else by run
    key), the IC and reason there, and `n_runs` quarantining it; strongest |IC| first, then by name.
    With `run_order`, rows of other runs are left out."""
    columns = ["feature", "run_key", "ic", "reason", "n_runs"]
    rows = quarantined
    if "run_key" not in rows.columns:
        rows = rows.assign(run_key=None)
    if run_order is not None:
        position = {run_key: i for i, run_key in enumerate(run_order)}
        rows = rows[rows["run_key"].isin(list(position))]
        rows = rows.assign(_order=rows["run_key"].map(position))
    else:
        rows = rows.assign(_order=rows["run_key"].fillna("").astype(str))
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "ic" else "object") for c in columns})
    rows = rows.sort_values(["feature", "_order"], kind="stable")
    latest = rows.groupby("feature", sort=True).tail(1).set_index("feature")
    latest["n_runs"] = rows.groupby("feature")["run_key"].size()
    table = latest.reset_index()[columns]
    order = table.assign(_abs=-table["ic"].abs().fillna(0.0)).sort_values(["_abs", "feature"], kind="stable")
    return order[columns].reset_index(drop=True)


def _run_label(run_key: str) -> str:
    return run_key.split("/")[0].replace("..", "→")


# Where a point's label may go, tried in this order: (dx, dy) in points, horizontal and vertical alignment.
_LABEL_PLACES = (
    (4, 4, "left", "bottom"),
    (-4, 4, "right", "bottom"),
    (4, -4, "left", "top"),
    (-4, -4, "right", "top"),
)
_POINT_RADIUS_PX = 3.0  # half the side of the square a scatter point occupies for labels to avoid


def _label_points(
    ax: Axes,
    points: pd.DataFrame,
    x_column: str,
    y_column: str,
    features: list[str],
    laid_out: bool = False,
) -> int:
    """Label the scatter points of `features` (in that priority order) that `points` holds, each at the
    first of four places around its point that lies inside the axes and overlaps neither a kept label
    nor another point; a label with no such place is left out. Extents are measured after the figure's
    layout and the axis limits are final (a label placed by the default 0..1 limits lands elsewhere);
    the labels do not take part in the layout, so it stays as measured (`laid_out`: the caller has just
    laid the figure out). Returns how many were placed."""
    figure = ax.get_figure(root=True)
    assert figure is not None
    if not laid_out:
        figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    from matplotlib.transforms import Bbox

    def inside(box: Bbox) -> bool:
        return bool(box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1)

    data = points.dropna(subset=[x_column, y_column])
    pixels = ax.transData.transform(data[[x_column, y_column]].to_numpy(dtype="float64"))
    r = _POINT_RADIUS_PX
    others = {
        feature: Bbox.from_extents(px - r, py - r, px + r, py + r)
        for feature, (px, py) in zip(data["feature"], pixels, strict=True)
    }
    shown = data.set_index("feature").reindex([f for f in features if f in others])
    kept: list[Bbox] = []
    for label, x, y in zip(shown.index, shown[x_column], shown[y_column], strict=True):
        obstacles = kept + [box for feature, box in others.items() if feature != label]
        for dx, dy, ha, va in _LABEL_PLACES:
            text = ax.annotate(
                label, (x, y), fontsize=8, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va
            )
            text.set_in_layout(False)
            box = text.get_window_extent(renderer)
            if inside(box) and not any(box.overlaps(other) for other in obstacles):
                kept.append(box)
                break
            text.remove()
    return len(kept)


@dataclass(frozen=True)
class _Labels:
    """Point labels a panel asks for; placed once every panel is drawn and the layout is final."""

    ax: Axes
    points: pd.DataFrame
    x_column: str
    y_column: str
    features: list[str]


def _placeholder(ax: Axes, title: str, message: str) -> None:
    """A panel with nothing to draw: its title and, in its centre, why."""
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _legend_above(ax: Axes, handles: Sequence[Artist], title: str, ncol: int = 2) -> None:
    """A legend between the title and the axes, where it crosses no data; the title is lifted over it."""
    rows = -(-len(handles) // ncol)
    ax.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=ncol,
        fontsize=8,
        frameon=False,
        borderaxespad=0.2,
        handlelength=1.6,
        columnspacing=1.2,
    )
    ax.set_title(title, pad=6 + 12.5 * rows)


@dataclass(frozen=True)
class _View:
    """What several panels share: the features shown, the run labels and the features' importance shares."""

    features: list[str]
    hidden_note: str  # " (top N; M hidden)", or "" when every feature is shown
    n_runs: int
    labels: list[str]  # one x tick label per run
    history: pd.DataFrame  # feature_importance_history rows of the shown features
    share: pd.DataFrame  # history with `share`: of the run's total mean |SHAP| over ALL features
    quarantined: pd.DataFrame  # quarantined_by_feature over the runs


def _view(inputs: DashboardInputs) -> _View:
    features = top_features(inputs)
    n_hidden = inputs.history["feature"].nunique() - len(features)
    history = inputs.history[inputs.history["feature"].isin(features)]
    totals = inputs.history.groupby("run_key")["shap_mean_abs"].sum()
    return _View(
        features=features,
        hidden_note=f" (top {len(features)}; {n_hidden} hidden)" if n_hidden else "",
        n_runs=len(inputs.runs),
        labels=[_run_label(k) for k in inputs.runs["run_key"]],
        history=history,
        share=history.assign(share=history["shap_mean_abs"] / history["run_key"].map(totals)),
        quarantined=quarantined_by_feature(inputs.quarantined, inputs.runs["run_key"].tolist()),
    )


def _run_ticks(ax: Axes, view: _View) -> None:
    ax.set_xticks(range(view.n_runs), view.labels, rotation=45, ha="right", fontsize=8)


def _line_styles(n: int) -> list[tuple[tuple[float, float, float], str, str]]:
    """(colour, line style, marker) of n lines: tab10's ten hues (no light/dark pairs as in tab20),
    then the same hues again with another line style and marker."""
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]
    styles, markers = ["-", "--", ":", "-."], ["o", "s", "^", "D"]
    return [(colors[i % 10], styles[(i // 10) % 4], markers[(i // 10) % 4]) for i in range(n)]


def _draw_lines(ax: Axes, wide: pd.DataFrame, drawn: list[str]) -> None:
    """One line per feature of `drawn` over the runs (the rows of `wide`), one hue each."""
    for feature, (color, style, marker) in zip(drawn, _line_styles(len(drawn)), strict=True):
        ax.plot(
            range(len(wide)),
            wide[feature].to_numpy(dtype="float64"),
            marker=marker,
            linestyle=style,
            color=color,
            label=feature,
        )


def segment_history(inputs: DashboardInputs) -> pd.DataFrame:
    """The ranked feature_segments rows of `inputs.segment` in the runs shown (quarantined features,
    which have no rank, left out)."""
    rows = inputs.segments
    wanted = (rows["segment"] == inputs.segment) & rows["run_key"].isin(inputs.runs["run_key"].tolist())
    rows = rows[wanted]
    return rows[np.isfinite(_floats(rows["rank"]))]


def segment_top_features(inputs: DashboardInputs) -> list[str]:
    """The features of the segment panel: best mean rank within `inputs.segment` over the runs shown
    (ties by name), at most IMPORTANCE_LINES."""
    rows = segment_history(inputs)
    mean_rank = rows.assign(rank=_floats(rows["rank"])).groupby("feature")["rank"].mean().reset_index()
    ordered = mean_rank.sort_values(["rank", "feature"], kind="stable")["feature"].tolist()
    return ordered[: min(inputs.top_n, IMPORTANCE_LINES)]


def _segment_importance_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> None:
    """(1) with a segment the latest run stored: the segment's mean |SHAP| over runs of its top ten
    features; a run that stored no rows of the segment is a gap, and the title counts such runs."""
    rows = segment_history(inputs)
    drawn = segment_top_features(inputs)
    wide = rows.pivot(index="run_key", columns="feature", values="shap_mean_abs").reindex(
        index=inputs.runs["run_key"], columns=drawn
    )
    _draw_lines(ax, wide, drawn)
    missing = view.n_runs - rows["run_key"].nunique()
    gaps = f"; {missing} of {view.n_runs} runs did not store it" if missing else ""
    shown = f" (top {len(drawn)})" if drawn else ""
    ax.set_title(f"mean |SHAP| within {_plain(inputs.segment)} over runs{shown}{gaps}")
    _run_ticks(ax, view)
    ax.set_ylabel("mean |SHAP| over the segment's trades")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _importance_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> None:
    """(1) Importance share over runs of the top ten features, one hue each; with a segment, that
    segment's mean |SHAP| instead (the pooled share, with a note in the title, when the latest run
    did not store the segment)."""
    note = ""
    if inputs.segment:
        if inputs.segment in segment_names(inputs.segments, inputs.run_key):
            _segment_importance_panel(ax, inputs, view)
            return
        note = f"\nsegment {_plain(inputs.segment)} not stored for the latest run: pooled shown"
    wide = view.share.pivot(index="run_key", columns="feature", values="share").reindex(
        inputs.runs["run_key"]
    )
    drawn = view.features[:IMPORTANCE_LINES]
    _draw_lines(ax, wide, drawn)
    shown = f" (top {len(drawn)})" if drawn else ""
    ax.set_title("importance share (mean |SHAP|) over runs" + shown + note)
    _run_ticks(ax, view)
    ax.set_ylabel("share of the run's total mean |SHAP|")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _rank_heatmap_panel(fig: Figure, ax: Axes, inputs: DashboardInputs, view: _View) -> None:
    """(2) Importance rank, features x runs."""
    ranks = view.history.pivot(index="feature", columns="run_key", values="rank").reindex(
        index=view.features, columns=inputs.runs["run_key"]
    )
    image = ax.imshow(ranks.to_numpy(dtype="float64"), aspect="auto", cmap="viridis_r")
    ax.set_yticks(range(len(view.features)), view.features, fontsize=8)
    _run_ticks(ax, view)
    ax.set_title("importance rank, features x runs" + view.hidden_note)
    fig.colorbar(image, ax=ax, label="rank (1 = most important)")


def _decaying(alpha: pd.DataFrame) -> pd.Series:
    return alpha["decaying"].astype("boolean").fillna(False).astype(bool)


def alpha_panel_rows(inputs: DashboardInputs, view: _View | None = None) -> pd.DataFrame:
    """The rows of the alpha panel, top to bottom: feature, alpha_score (NaN for a quarantined feature
    without one), q (its ic_q_value), kind ("quarantined", "decaying" or "alpha"), ic (the quarantining
    run's IC). Every decaying and every quarantined feature is a row whatever the cut; the others fill
    the remaining of the view's top-N places by alpha score."""
    view = view or _view(inputs)
    scored = inputs.alpha.dropna(subset=["alpha_score"])
    quarantined = view.quarantined.set_index("feature")
    flags = inputs.alpha.get("suspected_leak", pd.Series(False, index=inputs.alpha.index))
    suspected = [
        f
        for f in inputs.alpha.loc[flags.fillna(False).astype(bool).to_numpy(), "feature"]
        if f not in quarantined.index
    ]
    decaying = set(scored.loc[_decaying(scored), "feature"])
    forced = decaying | set(quarantined.index)
    ranked = scored.sort_values(["alpha_score", "feature"], ascending=[False, True], kind="stable")
    others = ranked[~ranked["feature"].isin(forced)].head(max(inputs.top_n - len(forced), 0))
    shown = ranked[ranked["feature"].isin(forced) | ranked["feature"].isin(others["feature"])]
    unscored = [f for f in [*quarantined.index, *suspected] if f not in set(scored["feature"])]
    rows = pd.concat(
        [
            shown[["feature", "alpha_score"]],
            pd.DataFrame({"feature": unscored, "alpha_score": np.nan}),
        ],
        ignore_index=True,
    )
    rows["q"] = rows["feature"].map(inputs.alpha.set_index("feature")["ic_q_value"]).astype("float64")
    rows["kind"] = [
        "quarantined"
        if f in quarantined.index
        else "suspected"
        if f in suspected
        else "decaying"
        if f in decaying
        else "alpha"
        for f in rows["feature"]
    ]
    rows["ic"] = rows["feature"].map(quarantined["ic"]).astype("float64")
    return rows


def bar_label(row: pd.Series) -> str:
    """The text beside an alpha bar: the q-value of a scored feature and, for a quarantined one, the
    IC that quarantined it ("q=0.003", "quarantined, IC +0.912", or both joined by "; ")."""
    parts = [] if pd.isna(row["alpha_score"]) else [q_label(row["q"])]
    if row["kind"] == "quarantined":
        parts.append(f"quarantined, IC {_fmt(row['ic'], '+.3f')}")
    if row["kind"] == "suspected":
        parts.append("suspected leak, not scored")
    return "; ".join(parts)


def _alpha_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> None:
    """(3) Alpha scores of the top features, each with its q-value beside its bar, and every decaying
    and quarantined feature in its own colour."""
    from matplotlib.patches import Patch

    scored = alpha_scored(inputs.alpha)
    rows = alpha_panel_rows(inputs, view)
    if not scored and not rows["kind"].isin(["quarantined", "suspected"]).any():
        _placeholder(ax, "alpha score", alpha_gate(inputs.alpha))
        return
    rows = (rows if scored else rows[rows["kind"].isin(["quarantined", "suspected"])]).reset_index(drop=True)
    y = np.arange(len(rows))[::-1].astype("float64")
    colors = {
        "alpha": ALPHA_COLOR,
        "decaying": DECAYING_COLOR,
        "quarantined": QUARANTINED_COLOR,
        "suspected": QUARANTINED_COLOR,
    }
    score = rows["alpha_score"].fillna(0.0).to_numpy()
    ax.barh(y, score, color=[colors[k] for k in rows["kind"]], alpha=0.85)
    flagged = (rows["kind"] != "alpha").to_numpy()
    if flagged.any():  # a marker at the score, so a flagged feature with a score of 0 still shows
        ax.scatter(
            score[flagged],
            y[flagged],
            marker="D",
            s=22,
            color=[colors[k] for k in rows.loc[flagged, "kind"]],
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
            clip_on=False,
            gid="alpha_flagged",
        )
    font = 8 if len(rows) <= 25 else max(4.0, 200 / len(rows))
    for position, at, (_, row) in zip(y, score, rows.iterrows(), strict=True):
        ax.text(
            at + 0.025,
            position,
            bar_label(row),
            va="center",
            fontsize=min(7.0, font),
            color=QUARANTINED_COLOR if row["kind"] in ("quarantined", "suspected") else "0.2",
            gid="alpha_label",
        )
    ax.set_yticks(y, rows["feature"], fontsize=font)
    for tick, kind in zip(ax.get_yticklabels(), rows["kind"], strict=True):
        tick.set_color(colors[kind] if kind != "alpha" else "black")
    ax.set_xlim(0, 1.1)  # room right of a bar near 1 for its q-value
    ax.set_xticks(np.linspace(0.0, 1.0, 6))
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("alpha score (0 = no reliable, persistent IC)")
    handles: list[Artist] = []
    if scored:
        n_decaying = int((rows["kind"] == "decaying").sum())
        handles += [
            Patch(color=ALPHA_COLOR, alpha=0.85, label="alpha score"),
            Patch(
                color=DECAYING_COLOR,
                alpha=0.85,
                label=f"decaying IC ({n_decaying})"
                if decay_tested(inputs.alpha)
                else f"decaying IC: {DECAY_UNTESTED}",
            ),
        ]
    handles.append(
        Patch(
            color=QUARANTINED_COLOR,
            alpha=0.85,
            label="quarantined or suspected, possible leakage "
            f"({int(rows['kind'].isin(['quarantined', 'suspected']).sum())})",
        )
    )
    n_scored = int(inputs.alpha["alpha_score"].notna().sum())
    hidden = n_scored - int(rows["alpha_score"].notna().sum()) if scored else 0
    title = (
        "alpha score, q-value of the mean IC beside each bar"
        if scored
        else f"alpha score ({alpha_gate(inputs.alpha)})"
    )
    _legend_above(ax, handles, title + (f"; {hidden} hidden" if hidden else ""))


def _importance_vs_performance_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> _Labels | None:
    """(4) Each feature's mean importance share against the mean of its IC series over the periods
    of the distinct trades (one run is enough)."""
    points = inputs.alpha.dropna(subset=["ic_mean", "importance_share"])
    title = "importance vs realized performance (mean IC per period)"
    if points.empty:
        ax.set_title(title)
        ax.text(0.5, 0.5, "no feature IC", ha="center", va="center", transform=ax.transAxes, color="0.4")
        return None
    decaying = _decaying(points) if "decaying" in points else pd.Series(False, index=points.index)
    ax.scatter(
        points["importance_share"],
        points["ic_mean"],
        color=np.where(decaying, DECAYING_COLOR, ALPHA_COLOR).tolist(),
    )
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("mean importance share (model's view)")
    ax.set_ylabel("mean IC per period with realized trade return")
    ax.set_title(title + ("" if not decaying.any() else "; red = decaying"))
    return _Labels(ax, points, "importance_share", "ic_mean", view.features[:8])


def _stability_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> _Labels | None:
    """(5) Each feature's mean importance share against its rank variability, coloured by top-k frequency."""
    stability = inputs.stability.dropna(subset=["rank_std"])
    if view.n_runs < 2 or stability.empty:
        _placeholder(
            ax,
            "stability: importance vs rank variability",
            "needs at least 2 runs whose windows do not overlap",
        )
        return None
    mean_share = view.share.groupby("feature")["share"].mean()
    merged = stability.assign(share=stability["feature"].map(mean_share)).dropna(subset=["share"])
    ax.scatter(
        merged["rank_std"], merged["share"], c=merged["topk_frequency"], cmap="viridis", vmin=0, vmax=1
    )
    ax.set_xlabel("rank std across runs (lower = more stable)")
    ax.set_ylabel("mean importance share")
    ax.set_title("stability: importance vs rank variability (colour = top-k frequency)")
    return _Labels(ax, merged, "rank_std", "share", view.features[:8])


def _run_performance_panel(fig: Figure, slot: SubplotSpec, inputs: DashboardInputs, view: _View) -> None:
    """(6) OOS rank IC of every run with its approximate 95% interval and the zero line (above), and
    the OOS hit rate against the base rate it must beat (below): two axes, each with its own scale."""
    from matplotlib.lines import Line2D

    grid = slot.subgridspec(2, 1, height_ratios=[1, 1])
    ic_ax = fig.add_subplot(grid[0], label="run_ic")
    hit_ax = fig.add_subplot(grid[1], sharex=ic_ax, label="run_hit_rate")
    x = np.arange(view.n_runs, dtype="float64")
    ic = _floats(inputs.runs["oos_rank_ic"])
    bands = [ic_interval(r, n) for r, n in zip(inputs.runs["oos_rank_ic"], inputs.runs["n_oos"], strict=True)]
    low = np.array([b[0] for b in bands])
    high = np.array([b[1] for b in bands])
    ic_ax.axhline(0, color="0.3", lw=1.0, linestyle="--", gid="ic_zero")
    has_band = np.isfinite(low) & np.isfinite(high)
    if has_band.any():
        ic_ax.errorbar(
            x[has_band],
            ic[has_band],
            yerr=[ic[has_band] - low[has_band], high[has_band] - ic[has_band]],
            fmt="none",
            ecolor=ALPHA_COLOR,
            elinewidth=1.2,
            capsize=3,
            alpha=0.6,
            gid="ic_interval",
        )
    ic_ax.plot(x, ic, marker="o", color=ALPHA_COLOR, gid="ic_line")
    suspect = inputs.runs["run_key"].isin(suspect_runs(inputs)).to_numpy()
    if suspect.any():
        ic_ax.scatter(
            x[suspect], ic[suspect], marker="X", s=90, color=QUARANTINED_COLOR, zorder=4, gid="suspect_runs"
        )
    ic_ax.set_ylabel("OOS rank IC")
    ic_ax.tick_params(labelbottom=False)
    _legend_above(
        ic_ax,
        [
            Line2D([], [], color=ALPHA_COLOR, marker="o", label="OOS rank IC, ~95% interval (Fisher z)"),
            Line2D([], [], color="0.3", lw=1.0, linestyle="--", label="IC = 0 (no skill)"),
            *(
                [
                    Line2D(
                        [], [], color=QUARANTINED_COLOR, marker="X", lw=0, label="suspect run (possible leak)"
                    )
                ]
                if suspect.any()
                else []
            ),
        ],
        "run performance over time (out of sample)",
    )
    hit_ax.plot(
        x,
        _floats(inputs.runs["oos_hit_rate"]),
        marker="s",
        color=HIT_RATE_COLOR,
        gid="hit_rate",
    )
    hit_ax.plot(
        x,
        _floats(inputs.runs["oos_base_rate"]),
        marker="_",
        markersize=12,
        linestyle="--",
        color=BASE_RATE_COLOR,
        gid="base_rate",
    )
    hit_ax.margins(y=0.25)
    hit_ax.set_ylabel("share of trades that won")
    hit_ax.legend(
        handles=[
            Line2D([], [], color=HIT_RATE_COLOR, marker="s", label="OOS hit rate (trades the model takes)"),
            Line2D(
                [], [], color=BASE_RATE_COLOR, linestyle="--", marker="_", label="base rate (all OOS trades)"
            ),
        ],
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=2,
        fontsize=8,
        frameon=False,
        borderaxespad=0.2,
    )
    hit_ax.set_xticks(range(view.n_runs), view.labels, rotation=45, ha="right", fontsize=8)
    if view.n_runs == 1:
        ic_ax.set_xlim(-0.5, 0.5)


def _sizing_panel(ax: Axes, inputs: DashboardInputs) -> None:
    """(7) The latest run's cumulative OOS PnL net of costs: sized vs equal vs actual (core/sizing.py)."""
    cost = books_cost_bps(inputs.sizing)
    title = "cumulative OOS PnL of the latest run, net of costs"
    if inputs.books.empty or cost is None:
        _placeholder(ax, title, "no sized OOS trades stored for this run (stored before sizing existed)")
        return
    curve = cumulative_pnl(inputs.books, SizingParams(cost_bps=cost))
    labels = {
        "sized": "sized: prediction / predicted sd, capped",
        "equal": "equal: 1 on the trades the model takes",
        "actual": "actual: every strategy trade at 1",
    }
    net = inputs.sizing[inputs.sizing["costs"] == "net"].set_index("book")["mean_return"]
    for book in curve.columns:
        per_unit = f" ({net[book] * 10_000:+.1f} bps per unit of notional)" if book in net.index else ""
        ax.plot(
            curve.index,
            curve[book],
            color=BOOK_COLORS[book],
            lw=1.6,
            label=labels[book] + per_unit,
            gid=f"pnl_{book}",
        )
    ax.axhline(0, color="0.3", lw=1.0, linestyle="--")
    ax.set_ylabel(f"PnL, in trade notionals (net of {cost:g} bps per side)")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    suspect = " - SUSPECT RUN, possible leakage" if run_suspicion(inputs) else ""
    ax.set_title(
        f"{title} ({cost:g} bps per side){suspect}",
        fontsize=11,
        color=QUARANTINED_COLOR if suspect else "black",
    )


def _agreement_panel(ax: Axes, inputs: DashboardInputs) -> None:
    """(8) The latest run's ensemble: each feature's importance rank under the run's model (x) against
    its rank under each other member (y), ties averaged (core/ensemble.py), every member's top k
    shaded and the features in all of them named."""
    title = "ensemble agreement of the latest run: importance ranks"
    if inputs.member_ranks.empty or inputs.ensemble.empty or inputs.agreement.empty:
        _placeholder(ax, title, "one model in this run\n(model_settings.ensemble adds others)")
        return
    kinds = [k for k in inputs.ensemble["model_kind"] if k != ENSEMBLE]
    wide = member_ranks(inputs.member_ranks).dropna()
    ics = inputs.ensemble.set_index("model_kind")["oos_rank_ic"]
    n, k = len(wide), int(inputs.agreement["k"].iloc[0])
    ax.fill_between([0.5, k + 0.5], 0.5, k + 0.5, color="#f9e79f", alpha=0.6, lw=0)
    ax.text(k + 0.7, k + 0.5, f"every model's top {k}", fontsize=8, color="0.4", va="bottom")
    ax.plot([1, n], [1, n], color="0.6", lw=1.0, linestyle="--", label="same rank")
    for color, kind in zip(MEMBER_COLORS, kinds[1:], strict=False):
        ax.scatter(
            wide[kinds[0]],
            wide[kind],
            s=22,
            color=color,
            alpha=0.8,
            label=f"{kind} (OOS rank IC {_number(ics.get(kind)):+.3f})",
            gid=f"ranks_{kind}",
        )
    shared = inputs.agreement.loc[inputs.agreement["in_all_top_k"].astype(bool), "feature"]
    for feature in shared:
        if feature in wide.index:
            row = wide.loc[feature]
            for kind in kinds[1:]:
                ax.annotate(
                    _plain(feature),
                    (row[kinds[0]], row[kind]),
                    textcoords="offset points",
                    xytext=(5, 5),
                    fontsize=8,
                )
    ax.set_xlim(0.5, n + 0.5)
    ax.set_ylim(0.5, n + 0.5)
    ax.set_xlabel(f"rank under {kinds[0]} (OOS rank IC {_number(ics.get(kinds[0])):+.3f}; 1 = strongest)")
    ax.set_ylabel("rank under the other member")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    spearman = _number(inputs.agreement["rank_spearman"].iloc[0])
    ax.set_title(
        f"{title}: Spearman {spearman:+.2f}; ensemble OOS rank IC {_number(ics.get(ENSEMBLE)):+.3f}",
        fontsize=11,
    )


def dashboard_figure(inputs: DashboardInputs) -> Figure:
    """The eight-panel matplotlib figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = _view(inputs)
    fig = plt.figure(figsize=(16, 21), dpi=80, layout="constrained")
    grid = fig.add_gridspec(4, 2, height_ratios=[1, 1, 1, 0.7])
    suspect = run_suspicion(inputs) is not None
    fig.suptitle(
        ("SUSPECT RUN (possible leakage, see the summary): " if suspect else "")
        + f"persistence dashboard as of {inputs.run_key} "
        + f"({view.n_runs} run{'s' if view.n_runs != 1 else ''})",
        fontsize=15,
        color=QUARANTINED_COLOR if suspect else "black",
    )
    _importance_panel(fig.add_subplot(grid[0, 0]), inputs, view)
    _rank_heatmap_panel(fig, fig.add_subplot(grid[0, 1]), inputs, view)
    _alpha_panel(fig.add_subplot(grid[1, 0]), inputs, view)
    labels = [
        _importance_vs_performance_panel(fig.add_subplot(grid[1, 1]), inputs, view),
        _stability_panel(fig.add_subplot(grid[2, 0]), inputs, view),
    ]
    _run_performance_panel(fig, grid[2, 1], inputs, view)
    _sizing_panel(fig.add_subplot(grid[3, 0], label="sizing"), inputs)
    _agreement_panel(fig.add_subplot(grid[3, 1], label="agreement"), inputs)
    fig.draw_without_rendering()  # the layout and axis limits, once, before measuring labels
    for request in labels:
        if request is not None:
            _label_points(
                request.ax,
                request.points,
                request.x_column,
                request.y_column,
                request.features,
                laid_out=True,
            )
    return fig


def draw_dashboard(inputs: DashboardInputs) -> bytes:
    """The eight-panel PNG, byte-identical for the same inputs."""
    import matplotlib.pyplot as plt

    fig = dashboard_figure(inputs)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _fmt(value: object, spec: str = ".3f") -> str:
    """A number formatted by `spec`, "n/a" for None, NA, NaN or anything that is no finite number."""
    number = _number(value)
    return format(number, spec) if np.isfinite(number) else "n/a"


def _count(value: object) -> str:
    """A whole number as text, "n/a" when missing."""
    number = _number(value)
    return str(int(number)) if np.isfinite(number) else "n/a"


def _plain(name: object) -> str:
    """A feature or run name on one line (tabs, newlines and other control characters as spaces)."""
    return re.sub(r"\s+", " ", str(name)).strip()


def _names(names: list[str], none: str = "none") -> str:
    if not names:
        return none
    listed = ", ".join(_plain(n) for n in names[:HEADLINE_NAMES])
    return listed + (f" and {len(names) - HEADLINE_NAMES} more" if len(names) > HEADLINE_NAMES else "")


def dashboard_headline(inputs: DashboardInputs) -> str:
    """One plain-text line (no markdown): the top feature, the decaying and quarantined ones, and the
    latest run's OOS rank IC (with its ~95% interval) and hit rate against the base rate."""
    latest = inputs.runs.set_index("run_key").loc[inputs.run_key]
    scored = by_evidence(inputs.alpha.dropna(subset=["alpha_score"]))
    if len(reliable(scored)):
        best = reliable(scored).iloc[0]
        top = (
            f"top feature {_plain(best['feature'])} "
            f"(alpha {best['alpha_score']:.2f}, {q_label(best['ic_q_value'])})"
        )
    elif len(scored):
        top = NO_RELIABLE_ALPHA
    else:  # no alpha yet: the most important feature, never the side or a strategy indicator
        ranked = [f for f in top_features(inputs) if not is_indicator(f)]
        top = (
            f"no alpha yet ({alpha_gate(inputs.alpha)}); most important to the model: {_plain(ranked[0])}"
            if ranked
            else "no features"
        )
    decaying = (
        _names(inputs.alpha.loc[_decaying(inputs.alpha), "feature"].tolist())
        if decay_tested(inputs.alpha)
        else DECAY_UNTESTED
    )
    quarantined = quarantined_by_feature(inputs.quarantined, inputs.runs["run_key"].tolist())
    low, high = ic_interval(latest["oos_rank_ic"], latest.get("n_oos"))
    band = f" [{low:+.3f}, {high:+.3f}]" if np.isfinite(low) else ""
    line = (
        f"As of {_plain(inputs.run_key)}: {top}; decaying: {decaying}; "
        f"quarantined: {_names(quarantined['feature'].tolist())}; "
        f"OOS rank IC {_fmt(latest['oos_rank_ic'], '+.3f')}{band} vs 0 "
        f"(hit {_fmt(latest['oos_hit_rate'], '.2f')} vs base {_fmt(latest.get('oos_base_rate'), '.2f')})"
        f"{oos_caveat_of(latest)}"
    )
    suspicion = run_suspicion(inputs)
    return _plain(f"{suspicion}. {line}" if suspicion else line)


def _cell(value: object) -> str:
    return _plain(value).replace("|", "\\|")


def interaction_lines(interactions: pd.DataFrame, limit: int = 5) -> list[str]:
    """The strongest feature pairs of the run as plain lines ("a x b: mean |SHAP interaction| 0.0012"),
    or one line saying why there are none."""
    if interactions.empty:
        return ["none recorded (a linear model has no interactions; gradient-boosted trees record them)"]
    shown = interactions.sort_values("rank").head(limit)
    return [
        f"{_plain(row['feature_a'])} x {_plain(row['feature_b'])}: mean |SHAP interaction| "
        f"{_fmt(row['interaction_mean_abs'], '.5f')}"
        for _, row in shown.iterrows()
    ]


def _quarantined_section(inputs: DashboardInputs) -> list[str]:
    table = quarantined_by_feature(inputs.quarantined, inputs.runs["run_key"].tolist())
    if table.empty:
        return ["\nQuarantined (possible leakage): none."]
    lines = [
        "\n### Quarantined (possible leakage)",
        "Left out of the model: in-sample |IC| too high to be real. Latest quarantining run shown.\n",
        "| feature | run | IC | runs quarantined | reason |",
        "|---|---|---:|---:|---|",
    ]
    for _, row in table.head(inputs.top_n).iterrows():
        lines.append(
            f"| {_cell(row['feature'])} | `{row['run_key']}` | {_fmt(row['ic'], '+.3f')} | "
            f"{int(row['n_runs'])} of {len(inputs.runs)} | {_cell(row['reason'])} |"
        )
    if len(table) > inputs.top_n:
        lines.append(f"\n{len(table) - inputs.top_n} more quarantined features not shown.")
    return lines


def stability_lines(summary: Mapping[str, object] | pd.Series) -> list[str]:
    """The stability summary as plain lines: the runs compared (non-overlapping) against the runs
    stored and the trade overlap of consecutive stored runs, the rank agreement, the top-k stability
    with its interval, and the note (left out when empty); "n/a" for a NULL figure."""
    overlap = _number(summary.get("mean_trade_overlap"))
    note = summary.get("note")
    lines = [
        f"runs compared: {_count(summary.get('n_independent_runs'))} non-overlapping of "
        f"{_count(summary.get('n_runs'))} stored (worth {_fmt(summary.get('n_effective_runs'), '.1f')} "
        f"non-overlapping runs); consecutive stored runs share "
        f"{format(overlap, '.0%') if np.isfinite(overlap) else 'n/a'} of their training trades",
        f"Kendall's W {_fmt(summary.get('kendall_w'))}, "
        f"mean pairwise Spearman {_fmt(summary.get('mean_pairwise_spearman'))}, "
        f"latest Spearman {_fmt(summary.get('latest_spearman'))}",
        f"top-{_count(summary.get('k'))} Nogueira stability {_fmt(summary.get('nogueira_phi'))} "
        f"[{_fmt(summary.get('nogueira_ci_low'))}, {_fmt(summary.get('nogueira_ci_high'))}]",
    ]
    return lines + ([_plain(note)] if isinstance(note, str) and note.strip() else [])


def by_evidence(alpha: pd.DataFrame) -> pd.DataFrame:
    """The alpha rows best first: by alpha score, then (ties, e.g. every score 0 before any feature
    is significant) by the p-value of the mean IC, then by name; unscored rows last."""
    p_value = alpha["ic_p_value"] if "ic_p_value" in alpha.columns else pd.Series(np.nan, index=alpha.index)
    ordered = alpha.assign(_p=pd.to_numeric(p_value, errors="coerce")).sort_values(
        ["alpha_score", "_p", "feature"], ascending=[False, True, True], na_position="last", kind="stable"
    )
    return ordered.drop(columns="_p")


def reliable(alpha: pd.DataFrame) -> pd.DataFrame:
    """The scored rows whose mean IC is significant (q < 0.05): the only ones called alpha."""
    q = pd.to_numeric(alpha["ic_q_value"], errors="coerce")
    return alpha[alpha["alpha_score"].notna() & (q < SIGNIFICANCE_LEVEL)]


NO_RELIABLE_ALPHA = "no feature has reliable alpha yet (none with q < 0.05)"


def oos_caveat_of(run: pd.Series) -> str:
    """What a stored run's OOS figures rest on when that is thin (core/metrics.oos_caveat), from its
    run_metrics row; '' when they are not thin or the row predates the figures it needs."""
    try:
        configured = int(json.loads(str(run.get("model_params")))["n_folds"])
    except (ValueError, KeyError, TypeError):
        configured = 0
    n_oos, n_folds = run.get("n_oos"), run.get("n_folds")
    if pd.isna(n_oos) or pd.isna(n_folds):
        return ""
    caveat = oos_caveat(int(n_oos), int(n_folds), configured, None, None)
    return f" [{caveat}]" if caveat else ""


def listed_alpha(alpha: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """The alpha rows a summary lists, by evidence (`by_evidence`): the top_n scored features, then
    every decaying feature below them (decaying features are always listed)."""
    ordered = by_evidence(alpha)
    top = ordered[ordered["alpha_score"].notna()].head(top_n)
    rest = ordered.drop(top.index)
    return pd.concat([top, rest[_decaying(rest)]])


ALPHA_TABLE_NUMBERS = ["alpha score", "IC mean [95% interval]", "q", "periods", "persistence"]


def _decay_cell(decaying: bool, half_life_days: object, verdict: object, mde: object) -> str:
    """'yes, half-life N days', 'no', 'cannot tell (it would see a fade of X)', or '' for a row
    stored without a verdict."""
    if decaying:
        return f"yes, half-life {_fmt(half_life_days, '.0f')} days"
    if verdict == "not decaying":
        return "no"
    if verdict == "cannot tell":
        seen = f" (it would see a fade of {_fmt(mde, '.2f')})" if pd.notna(mde) else ""
        return f"cannot tell{seen}"
    return ""


def indicators_note(alpha: pd.DataFrame) -> str:
    """The side and strategy indicators' pooled IC, apart from the ranked features."""
    rows = alpha[alpha["indicator"].fillna(False).astype(bool)].sort_values("feature")
    parts = ", ".join(
        f"{_plain(f)} {_fmt(ic, '+.4f')} (p {q_text(p)})"
        for f, ic, p in zip(rows["feature"], rows["pooled_ic_mean"], rows["pooled_ic_p_value"], strict=True)
    )
    return (
        f"Side and strategy, not ranked (IC pooled over the cells the others are measured within): {parts}."
    )


def alpha_listing(alpha: pd.DataFrame, top_n: int) -> tuple[pd.DataFrame, list[str]]:
    """The alpha table a summary prints, as text cells (feature, the ALPHA_TABLE_NUMBERS, decaying
    with the half-life in days), over the rows of `listed_alpha`; and the notes below it: which
    decaying features are listed from below the top_n, and how many scored features are not shown."""
    rows = listed_alpha(alpha, top_n)
    table = pd.DataFrame(
        {
            "feature": [_plain(f) for f in rows["feature"]],
            "alpha score": [_fmt(v) for v in rows["alpha_score"]],
            "IC mean [95% interval]": [
                f"{_fmt(m, '+.4f')} [{_fmt(low, '+.4f')}, {_fmt(high, '+.4f')}]"
                for m, low, high in zip(rows["ic_mean"], rows["ic_ci_low"], rows["ic_ci_high"], strict=True)
            ],
            "q": [q_text(q) for q in rows["ic_q_value"]],
            "periods": [_count(n) for n in rows["n_periods"]],
            "persistence": [_fmt(p, ".2f") for p in rows["persistence"]],
            "decaying": [
                _decay_cell(d, h, v, m)
                for d, h, v, m in zip(
                    _decaying(rows),
                    rows["half_life_days"],
                    rows.get("decay_verdict", pd.Series(None, index=rows.index)),
                    rows.get("decay_mde", pd.Series(None, index=rows.index)),
                    strict=True,
                )
            ],
        }
    )
    n_scored = int(alpha["alpha_score"].notna().sum())
    below = rows["feature"].iloc[min(top_n, n_scored) :].tolist()
    notes = (
        []
        if len(reliable(alpha))
        else [f"{NO_RELIABLE_ALPHA.capitalize()}: the rows are ordered by evidence."]
    )
    if below:
        names = ", ".join(_plain(f) for f in below)
        notes.append(f"Listed although below the top {top_n}, because they decay: {names}.")
    hidden = n_scored - int(rows["alpha_score"].notna().sum())
    if hidden:
        notes.append(f"{hidden} more features not shown.")
    if "suspected_leak" in alpha.columns and alpha["suspected_leak"].fillna(False).astype(bool).any():
        notes.append(suspected_leaks_note(alpha))
    if "indicator" in alpha.columns and alpha["indicator"].fillna(False).astype(bool).any():
        notes.append(indicators_note(alpha))
    if "alias_of" in alpha.columns and alpha["alias_of"].notna().any():
        aliased = alpha[alpha["alias_of"].notna()]
        names = ", ".join(
            f"{_plain(f)} (= {_plain(r)})"
            for f, r in zip(aliased["feature"], aliased["alias_of"], strict=True)
        )
        notes.append(
            f"One hypothesis with an earlier feature (|correlation| >= 0.95), not scored apart: {names}."
        )
    return table, notes


def segment_names(segments: pd.DataFrame, run_key: str | None = None) -> list[str]:
    """The segments the feature_segments rows hold (of `run_key` only, when given), by name."""
    rows = segments if run_key is None else segments[segments["run_key"] == run_key]
    return sorted({str(name) for name in rows["segment"].dropna()})


def unknown_segment(segment: str, available: Sequence[str], run_key: str) -> str:
    """One line: the segment is not stored for the run, and the run's segments (or that it has none)."""
    names = ", ".join(_plain(n) for n in available) if available else "none stored"
    return f"segment '{_plain(segment)}' is not stored for run {_plain(run_key)}; its segments: {names}"


SEGMENT_TABLE_NUMBERS = ["rank", "trades", "IC (in-sample)", "mean |SHAP|"]


def segment_listing(rows: pd.DataFrame, top_n: int) -> tuple[pd.DataFrame, list[str]]:
    """The table of one segment of one run (its feature_segments rows) as text cells: the top_n
    ranked features by their rank within the segment (ties by name), with rank, feature, the
    segment's trades, the in-sample IC within the segment and the mean |SHAP| over its trades; and
    the notes below it: how many ranked features are not shown, and the quarantined ones (no rank)
    with their IC within the segment."""
    ranks = _floats(rows["rank"])
    ranked = rows.assign(_rank=ranks)[np.isfinite(ranks)].sort_values(["_rank", "feature"], kind="stable")
    shown = ranked.head(max(top_n, 0))
    table = pd.DataFrame(
        {
            "rank": [_count(r) for r in shown["_rank"]],
            "feature": [_plain(f) for f in shown["feature"]],
            "trades": [_count(n) for n in shown["n_trades"]],
            "IC (in-sample)": [_fmt(ic, "+.4f") for ic in shown["ic"]],
            "mean |SHAP|": [_fmt(v, ".5f") for v in shown["shap_mean_abs"]],
        }
    )
    notes = []
    if len(ranked) > len(shown):
        notes.append(f"{len(ranked) - len(shown)} more features not shown.")
    constant = shown[~np.isfinite(_floats(shown["ic"])) & (_floats(shown["n_trades"]) >= 3)]
    if len(constant):  # an IC of 3 or more trades is n/a only for a feature that does not vary
        names = ", ".join(_plain(f) for f in constant["feature"])
        notes.append(
            f"IC n/a: constant within the segment ({names}); measured from the segment's own average "
            "trade, they carry no effect within it."
        )
    held = rows[~np.isfinite(ranks)].sort_values("feature", kind="stable")
    if len(held):
        listed = ", ".join(
            f"{_plain(f)} (IC {_fmt(ic, '+.3f')})" for f, ic in zip(held["feature"], held["ic"], strict=True)
        )
        notes.append(f"Quarantined, so not ranked: {listed}.")
    return table, notes


def segment_lines(
    segments: pd.DataFrame, segment: str, run_key: str, top_n: int, markdown: bool, bullet: str = ""
) -> list[str]:
    """The body of the "Within <segment>" section of the summary and the report (the caller writes
    the heading): a line with the segment's trades in the run and what the figures are, then the
    segment_listing table (markdown or plain text) and its notes; for a segment the run did not
    store, the unknown_segment line instead. `segments`: feature_segments rows (other runs' and
    segments' rows are ignored); `bullet` starts the lead line."""
    of_run = segments[segments["run_key"] == run_key] if "run_key" in segments.columns else segments
    rows = of_run[of_run["segment"] == segment]
    if rows.empty:
        return [f"{bullet}{unknown_segment(segment, segment_names(of_run), run_key)}"]
    n_trades = _floats(rows["n_trades"])
    trades = f"{int(np.nanmax(n_trades))} trades" if np.isfinite(n_trades).any() else "trades n/a"
    lines = [
        f"{bullet}{trades} of run {_plain(run_key)}; ranked by the model's mean |SHAP| over them; "
        "IC: in-sample Spearman IC of the feature with the trade return within the segment",
        "",
    ]
    table, notes = segment_listing(rows, top_n)
    if table.empty:
        return [*lines, "no ranked feature", *[part for note in notes for part in ("", note)]]
    return lines + listing_lines(table, notes, markdown, SEGMENT_TABLE_NUMBERS)


def listing_lines(table: pd.DataFrame, notes: list[str], markdown: bool, right: Sequence[str]) -> list[str]:
    """A listing as markdown (numbers in `right` right-aligned) or plain text, then its notes, each
    after a blank line (in markdown a line right below a table is one of its rows)."""
    lines = markdown_table(table, right) if markdown else [table.to_string(index=False)]
    for note in notes:
        lines += ["", note]
    return lines


def markdown_table(table: pd.DataFrame, right: Sequence[str] = ()) -> list[str]:
    """The lines of a markdown table of text cells ("|" escaped), the columns in `right` right-aligned."""
    rule = "|" + "|".join("---:" if c in right else "---" for c in table.columns) + "|"
    cells = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return ["| " + " | ".join(_cell(c) for c in table.columns) + " |", rule, *cells]


def dashboard_summary(inputs: DashboardInputs) -> str:
    """The headline (one plain-text line), then markdown: the latest run, stability, the top alpha
    features with every decaying one, the decaying ones, with a segment its top features within it
    (or which segments the latest run stored), the strongest interactions and the quarantined ones."""
    latest = inputs.runs.set_index("run_key").loc[inputs.run_key]
    priors = latest["priors_from_run_key"]
    low, high = ic_interval(latest["oos_rank_ic"], latest.get("n_oos"))
    band = f" (~95% interval [{low:+.4f}, {high:+.4f}])" if np.isfinite(low) else ""
    lines = [
        dashboard_headline(inputs),
        "",
        f"## Persistence as of `{inputs.run_key}`",
        f"- runs: {len(inputs.runs)}; latest OOS rank IC {_fmt(latest['oos_rank_ic'], '+.4f')}{band}, "
        f"hit rate {_fmt(latest['oos_hit_rate'])} (base rate {_fmt(latest.get('oos_base_rate'))})"
        f"{oos_caveat_of(latest)}, trained on {int(latest['n_train'])} trades; "
        f"priors from `{priors if isinstance(priors, str) else 'none (cold start)'}`"
        + (" (**suspect run**: see the first line)" if run_suspicion(inputs) else ""),
        "- stability:",
        *(f"  - {line}" for line in stability_lines(inputs.summary)),
    ]
    if alpha_scored(inputs.alpha):
        table, notes = alpha_listing(inputs.alpha, inputs.top_n)
        lines += ["", *markdown_table(table, ALPHA_TABLE_NUMBERS), *(f"\n{note}" for note in notes)]
    else:
        lines.append(f"- {alpha_gate(inputs.alpha)}")
    decaying = inputs.alpha.loc[_decaying(inputs.alpha), "feature"].tolist()
    listed = ", ".join(_plain(f) for f in decaying) or "none"
    lines.append(f"\nDecaying: {listed if decay_tested(inputs.alpha) else DECAY_UNTESTED}.")
    lines.append(f"\nAlpha monitor: {monitor_summary(inputs.alpha)}.")
    lines.append(f"\n{'Suspect run: ' if run_suspicion(inputs) else ''}{sizing_line(inputs.sizing)}.")
    lines.append(f"\n{ensemble_line(inputs.ensemble, inputs.agreement)}.")
    if inputs.segment:
        lines += [
            f"\n### Within {_plain(inputs.segment)} (latest run)",
            *segment_lines(inputs.segments, inputs.segment, inputs.run_key, inputs.top_n, markdown=True),
        ]
    lines += [
        "\n### Strongest feature interactions (latest run)",
        *(f"- {line}" for line in interaction_lines(inputs.interactions)),
    ]
    lines += _quarantined_section(inputs)
    return "\n".join(lines)
