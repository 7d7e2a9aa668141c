"""The persistence dashboard: one PNG of six panels and a markdown summary, from warehouse frames.

Panels: (1) importance over runs of the top features, (2) rank heatmap features x runs, (3) alpha
scores of the top features with a bootstrap interval over runs, (4) importance vs realized
performance, (5) stability: importance vs rank variability, (6) run performance over time.
Views show the top `top_n` features and say how many are hidden; panels that need two runs say so.
Each panel is drawn by its own function; dashboard_figure lays the six out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from persistence_pipeline.core.alpha import feature_alpha

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

BOOTSTRAP_ROUNDS = 100


@dataclass(frozen=True)
class DashboardInputs:
    runs: pd.DataFrame  # run_metrics rows, oldest first
    history: pd.DataFrame  # feature_importance_history of those runs
    stability: pd.DataFrame  # feature_stability as of the latest run
    alpha: pd.DataFrame  # feature_alpha as of the latest run
    summary: dict  # stability_summary row as of the latest run
    run_key: str
    top_n: int = 15
    seed: int = 0


def top_features(inputs: DashboardInputs) -> list[str]:
    """The features shown: best mean rank over the runs (ties by name)."""
    mean_rank = inputs.history.groupby("feature")["rank"].mean().reset_index()
    ordered = mean_rank.sort_values(["rank", "feature"], kind="stable")["feature"].tolist()
    return ordered[: inputs.top_n]


def alpha_interval(inputs: DashboardInputs, features: list[str]) -> pd.DataFrame:
    """5th-95th percentile of each feature's alpha score over bootstrap resamples of the runs."""
    order = inputs.runs["run_key"].tolist()
    if len(order) < 2:
        return pd.DataFrame({"feature": features, "low": np.nan, "high": np.nan})
    rng = np.random.default_rng(inputs.seed)
    performance = inputs.runs.set_index("run_key")["oos_rank_ic"]
    topk = inputs.stability.set_index("feature")["topk_frequency"]
    history = inputs.history[inputs.history["feature"].isin(features)]
    scores = []
    for _ in range(BOOTSTRAP_ROUNDS):
        picked = sorted(rng.choice(len(order), size=len(order), replace=True))
        renamed = [f"{order[i]}#{j}" for j, i in enumerate(picked)]
        sample = pd.concat(
            [
                history[history["run_key"] == order[i]].assign(run_key=name)
                for i, name in zip(picked, renamed, strict=True)
            ]
        )
        table = feature_alpha(sample, renamed, pd.Series(performance.to_numpy()[picked], index=renamed), topk)
        scores.append(table.set_index("feature")["alpha_score"].reindex(features))
    stacked = pd.concat(scores, axis=1)
    return pd.DataFrame(
        {
            "feature": features,
            "low": stacked.quantile(0.05, axis=1).to_numpy(),
            "high": stacked.quantile(0.95, axis=1).to_numpy(),
        }
    )


def _run_label(run_key: str) -> str:
    return run_key.split("/")[0].replace("..", "→")


def _label_points(ax: Axes, points: pd.DataFrame, x_column: str, y_column: str, features: list[str]) -> None:
    """Label the scatter points of `features` (in that priority order) that `points` holds, leaving
    out any label that would overlap a kept one (extents from the figure's own renderer)."""
    shown = points.set_index("feature").reindex([f for f in features if f in set(points["feature"])])
    kept: list[Bbox] = []
    for label, x, y in zip(shown.index, shown[x_column], shown[y_column], strict=True):
        text = ax.annotate(label, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
        box = text.get_window_extent()
        if any(box.overlaps(other) for other in kept):
            text.remove()
        else:
            kept.append(box)


def _needs_two_runs(ax: Axes, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "needs at least 2 runs", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


@dataclass(frozen=True)
class _View:
    """What several panels share: the features shown, the run labels and the features' importance shares."""

    features: list[str]
    hidden_note: str  # " (top N; M hidden)", or "" when every feature is shown
    n_runs: int
    labels: list[str]  # one x tick label per run
    history: pd.DataFrame  # feature_importance_history rows of the shown features
    share: pd.DataFrame  # history with `share`: of the run's total mean |SHAP| over ALL features


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
    )


def _run_ticks(ax: Axes, view: _View) -> None:
    ax.set_xticks(range(view.n_runs), view.labels, rotation=45, ha="right", fontsize=8)


def _importance_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> None:
    """(1) Importance share over runs of the top ten features."""
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    wide = view.share.pivot(index="run_key", columns="feature", values="share").reindex(
        inputs.runs["run_key"]
    )
    for i, feature in enumerate(view.features[:10]):
        ax.plot(range(view.n_runs), wide[feature].to_numpy(), marker="o", color=colors[i % 20], label=feature)
    shown = f" (top {min(10, len(view.features))})" if view.features else ""
    ax.set_title("importance share (mean |SHAP|) over runs" + shown)
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


def _alpha_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> None:
    """(3) Alpha scores of the top features with their bootstrap interval over runs."""
    alpha = inputs.alpha.set_index("feature")
    if view.n_runs < 2 or alpha["alpha_score"].isna().all():
        _needs_two_runs(ax, "alpha score")
        return
    shown = alpha["alpha_score"].dropna().sort_values(ascending=False).index[: len(view.features)].tolist()
    interval = alpha_interval(inputs, shown).set_index("feature")
    score = alpha.loc[shown, "alpha_score"].to_numpy()
    y = np.arange(len(shown))[::-1]
    bar_colors = ["#c0392b" if d else "#2e86c1" for d in alpha.loc[shown, "decaying"]]
    ax.barh(y, score, color=bar_colors, alpha=0.8)
    ax.hlines(y, interval["low"].to_numpy(), interval["high"].to_numpy(), color="black", lw=1.5)
    ax.set_yticks(y, shown, fontsize=8)
    ax.set_xlim(0, 1)
    hidden = len(alpha) - len(shown)
    ax.set_title(
        "alpha score, 5-95% bootstrap over runs (red = decaying)" + (f"; {hidden} hidden" if hidden else "")
    )


def _importance_vs_performance_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> None:
    """(4) Each feature's mean importance share against its mean per-run IC."""
    if view.n_runs < 2:
        _needs_two_runs(ax, "importance vs realized performance")
        return
    points = inputs.alpha.dropna(subset=["ic_mean"])
    ax.scatter(points["importance_share"], points["ic_mean"], color="#2e86c1")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("mean importance share (model's view)")
    ax.set_ylabel("mean per-run IC with realized trade return")
    ax.set_title("importance vs realized performance (feature IC)")
    _label_points(ax, points, "importance_share", "ic_mean", view.features[:8])


def _stability_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> None:
    """(5) Each feature's mean importance share against its rank variability, coloured by top-k frequency."""
    stability = inputs.stability.dropna(subset=["rank_std"])
    if view.n_runs < 2 or stability.empty:
        _needs_two_runs(ax, "stability: importance vs rank variability")
        return
    mean_share = view.share.groupby("feature")["share"].mean()
    merged = stability.assign(share=stability["feature"].map(mean_share)).dropna(subset=["share"])
    ax.scatter(
        merged["rank_std"], merged["share"], c=merged["topk_frequency"], cmap="viridis", vmin=0, vmax=1
    )
    ax.set_xlabel("rank std across runs (lower = more stable)")
    ax.set_ylabel("mean importance share")
    ax.set_title("stability: importance vs rank variability (colour = top-k frequency)")
    _label_points(ax, merged, "rank_std", "share", view.features[:8])


def _run_performance_panel(ax: Axes, inputs: DashboardInputs, view: _View) -> None:
    """(6) OOS rank IC and hit rate of every run, oldest first."""
    ax.plot(range(view.n_runs), inputs.runs["oos_rank_ic"], marker="o", color="#2e86c1", label="OOS rank IC")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylabel("OOS rank IC")
    twin = ax.twinx()
    twin.plot(
        range(view.n_runs), inputs.runs["oos_hit_rate"], marker="s", color="#e67e22", label="OOS hit rate"
    )
    twin.set_ylabel("OOS hit rate")
    _run_ticks(ax, view)
    ax.set_title("run performance over time (out of sample)")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, ["OOS rank IC", "OOS hit rate"], fontsize=8, loc="upper left")


def dashboard_figure(inputs: DashboardInputs) -> Figure:
    """The six-panel matplotlib figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = _view(inputs)
    fig, axes = plt.subplots(3, 2, figsize=(16, 17), dpi=80, layout="constrained")
    fig.suptitle(
        f"persistence dashboard as of {inputs.run_key} ({view.n_runs} run{'s' if view.n_runs != 1 else ''})",
        fontsize=15,
    )
    _importance_panel(axes[0, 0], inputs, view)
    _rank_heatmap_panel(fig, axes[0, 1], inputs, view)
    _alpha_panel(axes[1, 0], inputs, view)
    _importance_vs_performance_panel(axes[1, 1], inputs, view)
    _stability_panel(axes[2, 0], inputs, view)
    _run_performance_panel(axes[2, 1], inputs, view)
    return fig


def draw_dashboard(inputs: DashboardInputs) -> bytes:
    """The six-panel PNG, byte-identical for the same inputs."""
    import matplotlib.pyplot as plt

    fig = dashboard_figure(inputs)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _fmt(value: object, spec: str = ".3f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, spec)


def dashboard_summary(inputs: DashboardInputs) -> str:
    """Markdown: the latest run, stability, the top alpha features and the decaying ones."""
    latest = inputs.runs.set_index("run_key").loc[inputs.run_key]
    s = inputs.summary
    priors = latest["priors_from_run_key"]
    lines = [
        f"## Persistence as of `{inputs.run_key}`",
        f"- runs: {len(inputs.runs)}; latest OOS rank IC {_fmt(latest['oos_rank_ic'], '+.4f')}, "
        f"hit rate {_fmt(latest['oos_hit_rate'])} (base rate {_fmt(latest.get('oos_base_rate'))}), "
        f"trained on {int(latest['n_train'])} trades; "
        f"priors from `{priors if isinstance(priors, str) else 'none (cold start)'}`",
        f"- stability: Kendall's W {_fmt(s.get('kendall_w'))}, "
        f"latest Spearman {_fmt(s.get('latest_spearman'))}, "
        f"top-{s.get('k')} Nogueira {_fmt(s.get('nogueira_phi'))} "
        f"[{_fmt(s.get('nogueira_ci_low'))}, {_fmt(s.get('nogueira_ci_high'))}]; {s.get('note', '')}",
    ]
    alpha = inputs.alpha.dropna(subset=["alpha_score"]).head(inputs.top_n)
    if alpha.empty:
        lines.append("- alpha scores need at least 2 runs")
    else:
        lines.append(
            "\n| feature | alpha score | IC mean | t-stat | stability | decaying |"
            "\n|---|---:|---:|---:|---:|---|"
        )
        for _, row in alpha.iterrows():
            lines.append(
                f"| {row['feature']} | {row['alpha_score']:.3f} | {row['ic_mean']:+.4f} | "
                f"{_fmt(row['ic_t_stat'], '+.2f')} | {_fmt(row['stability'], '.2f')} | "
                f"{'yes' if row['decaying'] else ''} |"
            )
        hidden = int(inputs.alpha["alpha_score"].notna().sum()) - len(alpha)
        if hidden:
            lines.append(f"\n{hidden} more features not shown.")
    decaying = inputs.alpha.loc[inputs.alpha["decaying"].fillna(False).astype(bool), "feature"].tolist()
    lines.append(f"\nDecaying: {', '.join(decaying) if decaying else 'none'}.")
    return "\n".join(lines)
