"""The five feature panels of the persistence dashboard and what every panel shares (the view of
the features shown, the colours, the placeholder of a panel with nothing to draw, the legend above
the axes); each panel is drawn by its own function on its own axes from `DashboardInputs`
(core/dashboard.py). The three run panels are core/run_panels.py; core/figure.py lays all eight out.

(1) importance over runs of the top features, (2) rank heatmap features x runs, (3) alpha scores of
the top features, each with the Benjamini-Hochberg q-value of its mean IC beside its bar (the
evidence comes from the IC per period of the distinct trades, see core/evidence.py, so the q-value is
its uncertainty, whatever the number of runs), plus every decaying and every quarantined (possible
leakage) feature whatever the top-N cut, (4) importance vs realized performance, (5) stability:
importance vs rank variability. Views show the top `top_n` features and say how many are hidden; the
stability panel says when it lacks two runs, the alpha panel when no feature has the complete
periods a score needs. With a `segment`, panel (1) draws the segment's mean |SHAP| over runs.
matplotlib is imported by the functions that draw, so importing this module does not load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from persistence_pipeline.core.dashboard import DECAY_UNTESTED, DashboardInputs, top_features
from persistence_pipeline.core.summary import (
    alpha_gate,
    alpha_scored,
    decay_tested,
    floats,
    fmt,
    is_decaying,
    plain,
    q_label,
    quarantined_by_feature,
    segment_names,
)

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# How many features the importance-share panel draws; tab10 gives each its own hue.
IMPORTANCE_LINES = 10
ALPHA_COLOR = "#2e86c1"
DECAYING_COLOR = "#c0392b"
QUARANTINED_COLOR = "#8e44ad"


def _run_label(run_key: str) -> str:
    return run_key.split("/")[0].replace("..", "→")


@dataclass(frozen=True)
class PointLabels:
    """Point labels a panel asks for; placed once every panel is drawn and the layout is final."""

    ax: Axes
    points: pd.DataFrame
    x_column: str
    y_column: str
    features: list[str]


def placeholder(ax: Axes, title: str, message: str) -> None:
    """A panel with nothing to draw: its title and, in its centre, why."""
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def legend_above(ax: Axes, handles: Sequence[Artist], title: str, ncol: int = 2) -> None:
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
class PanelView:
    """What several panels share: the features shown, the run labels and the features' importance shares."""

    features: list[str]
    hidden_note: str  # " (top N; M hidden)", or "" when every feature is shown
    n_runs: int
    labels: list[str]  # one x tick label per run
    history: pd.DataFrame  # feature_importance_history rows of the shown features
    share: pd.DataFrame  # history with `share`: of the run's total mean |SHAP| over ALL features
    quarantined: pd.DataFrame  # quarantined_by_feature over the runs


def panel_view(inputs: DashboardInputs) -> PanelView:
    """What the panels of one figure share, computed once."""
    features = top_features(inputs)
    n_hidden = inputs.history["feature"].nunique() - len(features)
    history = inputs.history[inputs.history["feature"].isin(features)]
    totals = inputs.history.groupby("run_key")["shap_mean_abs"].sum()
    return PanelView(
        features=features,
        hidden_note=f" (top {len(features)}; {n_hidden} hidden)" if n_hidden else "",
        n_runs=len(inputs.runs),
        labels=[_run_label(k) for k in inputs.runs["run_key"]],
        history=history,
        share=history.assign(share=history["shap_mean_abs"] / history["run_key"].map(totals)),
        quarantined=quarantined_by_feature(inputs.quarantined, inputs.runs["run_key"].tolist()),
    )


def _run_ticks(ax: Axes, view: PanelView) -> None:
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
    return rows[np.isfinite(floats(rows["rank"]))]


def segment_top_features(inputs: DashboardInputs) -> list[str]:
    """The features of the segment panel: best mean rank within `inputs.segment` over the runs shown
    (ties by name), at most IMPORTANCE_LINES."""
    rows = segment_history(inputs)
    mean_rank = rows.assign(rank=floats(rows["rank"])).groupby("feature")["rank"].mean().reset_index()
    ordered = mean_rank.sort_values(["rank", "feature"], kind="stable")["feature"].tolist()
    return ordered[: min(inputs.top_n, IMPORTANCE_LINES)]


def _segment_importance_panel(ax: Axes, inputs: DashboardInputs, view: PanelView) -> None:
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
    ax.set_title(f"mean |SHAP| within {plain(inputs.segment)} over runs{shown}{gaps}")
    _run_ticks(ax, view)
    ax.set_ylabel("mean |SHAP| over the segment's trades")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def importance_panel(ax: Axes, inputs: DashboardInputs, view: PanelView) -> None:
    """(1) Importance share over runs of the top ten features, one hue each; with a segment, that
    segment's mean |SHAP| instead (the pooled share, with a note in the title, when the latest run
    did not store the segment)."""
    note = ""
    if inputs.segment:
        if inputs.segment in segment_names(inputs.segments, inputs.run_key):
            _segment_importance_panel(ax, inputs, view)
            return
        note = f"\nsegment {plain(inputs.segment)} not stored for the latest run: pooled shown"
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


def rank_heatmap_panel(fig: Figure, ax: Axes, inputs: DashboardInputs, view: PanelView) -> None:
    """(2) Importance rank, features x runs."""
    ranks = view.history.pivot(index="feature", columns="run_key", values="rank").reindex(
        index=view.features, columns=inputs.runs["run_key"]
    )
    image = ax.imshow(ranks.to_numpy(dtype="float64"), aspect="auto", cmap="viridis_r")
    ax.set_yticks(range(len(view.features)), view.features, fontsize=8)
    _run_ticks(ax, view)
    ax.set_title("importance rank, features x runs" + view.hidden_note)
    fig.colorbar(image, ax=ax, label="rank (1 = most important)")


def alpha_panel_rows(inputs: DashboardInputs, view: PanelView | None = None) -> pd.DataFrame:
    """The rows of the alpha panel, top to bottom: feature, alpha_score (NaN for a quarantined feature
    without one), q (its ic_q_value), kind ("quarantined", "decaying" or "alpha"), ic (the quarantining
    run's IC). Every decaying and every quarantined feature is a row whatever the cut; the others fill
    the remaining of the view's top-N places by alpha score."""
    view = view or panel_view(inputs)
    scored = inputs.alpha.dropna(subset=["alpha_score"])
    quarantined = view.quarantined.set_index("feature")
    flags = inputs.alpha.get("suspected_leak", pd.Series(False, index=inputs.alpha.index))
    suspected = [
        f
        for f in inputs.alpha.loc[flags.fillna(False).astype(bool).to_numpy(), "feature"]
        if f not in quarantined.index
    ]
    decaying = set(scored.loc[is_decaying(scored), "feature"])
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
        parts.append(f"quarantined, IC {fmt(row['ic'], '+.3f')}")
    if row["kind"] == "suspected":
        parts.append("suspected leak, not scored")
    return "; ".join(parts)


def alpha_panel(ax: Axes, inputs: DashboardInputs, view: PanelView) -> None:
    """(3) Alpha scores of the top features, each with its q-value beside its bar, and every decaying
    and quarantined feature in its own colour."""
    from matplotlib.patches import Patch

    scored = alpha_scored(inputs.alpha)
    rows = alpha_panel_rows(inputs, view)
    if not scored and not rows["kind"].isin(["quarantined", "suspected"]).any():
        placeholder(ax, "alpha score", alpha_gate(inputs.alpha))
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
    legend_above(ax, handles, title + (f"; {hidden} hidden" if hidden else ""))


def importance_vs_performance_panel(ax: Axes, inputs: DashboardInputs, view: PanelView) -> PointLabels | None:
    """(4) Each feature's mean importance share against the mean of its IC series over the periods
    of the distinct trades (one run is enough)."""
    points = inputs.alpha.dropna(subset=["ic_mean", "importance_share"])
    title = "importance vs realized performance (mean IC per period)"
    if points.empty:
        ax.set_title(title)
        ax.text(0.5, 0.5, "no feature IC", ha="center", va="center", transform=ax.transAxes, color="0.4")
        return None
    decaying = is_decaying(points) if "decaying" in points else pd.Series(False, index=points.index)
    ax.scatter(
        points["importance_share"],
        points["ic_mean"],
        color=np.where(decaying, DECAYING_COLOR, ALPHA_COLOR).tolist(),
    )
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("mean importance share (model's view)")
    ax.set_ylabel("mean IC per period with realized trade return")
    ax.set_title(title + ("" if not decaying.any() else "; red = decaying"))
    return PointLabels(ax, points, "importance_share", "ic_mean", view.features[:8])


def stability_panel(ax: Axes, inputs: DashboardInputs, view: PanelView) -> PointLabels | None:
    """(5) Each feature's mean importance share against its rank variability, coloured by top-k frequency."""
    stability = inputs.stability.dropna(subset=["rank_std"])
    if view.n_runs < 2 or stability.empty:
        placeholder(
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
    return PointLabels(ax, merged, "rank_std", "share", view.features[:8])
