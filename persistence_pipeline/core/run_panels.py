"""The three run panels of the persistence dashboard (core/figure.py lays them out with the feature
panels of core/panels.py): (6) run performance over time: every run's OOS rank IC with an
approximate 95% interval and a zero line above, the hit rate against the base rate below, each on
its own scale, suspect runs marked; (7) the latest run's cumulative OOS PnL net of costs, sized vs
equal vs actual (core/sizing.py); (8) the agreement of the latest run's ensemble members: each
feature's importance rank under the run's model against its rank under each other member
(core/ensemble.py). matplotlib is imported by the functions that draw."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from persistence_pipeline.core.dashboard import DashboardInputs, ic_interval, run_suspicion, suspect_runs
from persistence_pipeline.core.ensemble import ENSEMBLE, member_ranks
from persistence_pipeline.core.panels import (
    ALPHA_COLOR,
    QUARANTINED_COLOR,
    PanelView,
    legend_above,
    placeholder,
)
from persistence_pipeline.core.sizing import SizingParams, books_cost_bps, cumulative_pnl
from persistence_pipeline.core.summary import as_number, floats, plain

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.gridspec import SubplotSpec

BOOK_COLORS = {"sized": "#27ae60", "equal": "#2e86c1", "actual": "0.35"}
MEMBER_COLORS = ["#c0392b", "#8e44ad", "#d35400"]
BASE_RATE_COLOR = "0.35"
HIT_RATE_COLOR = "#e67e22"


def run_performance_panel(fig: Figure, slot: SubplotSpec, inputs: DashboardInputs, view: PanelView) -> None:
    """(6) OOS rank IC of every run with its approximate 95% interval and the zero line (above), and
    the OOS hit rate against the base rate it must beat (below): two axes, each with its own scale."""
    from matplotlib.lines import Line2D

    grid = slot.subgridspec(2, 1, height_ratios=[1, 1])
    ic_ax = fig.add_subplot(grid[0], label="run_ic")
    hit_ax = fig.add_subplot(grid[1], sharex=ic_ax, label="run_hit_rate")
    x = np.arange(view.n_runs, dtype="float64")
    ic = floats(inputs.runs["oos_rank_ic"])
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
    legend_above(
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
        floats(inputs.runs["oos_hit_rate"]),
        marker="s",
        color=HIT_RATE_COLOR,
        gid="hit_rate",
    )
    hit_ax.plot(
        x,
        floats(inputs.runs["oos_base_rate"]),
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


def sizing_panel(ax: Axes, inputs: DashboardInputs) -> None:
    """(7) The latest run's cumulative OOS PnL net of costs: sized vs equal vs actual (core/sizing.py)."""
    cost = books_cost_bps(inputs.sizing)
    title = "cumulative OOS PnL of the latest run, net of costs"
    if inputs.books.empty or cost is None:
        placeholder(ax, title, "no sized OOS trades stored for this run (stored before sizing existed)")
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


def agreement_panel(ax: Axes, inputs: DashboardInputs) -> None:
    """(8) The latest run's ensemble: each feature's importance rank under the run's model (x) against
    its rank under each other member (y), ties averaged (core/ensemble.py), every member's top k
    shaded and the features in all of them named."""
    title = "ensemble agreement of the latest run: importance ranks"
    if inputs.member_ranks.empty or inputs.ensemble.empty or inputs.agreement.empty:
        placeholder(ax, title, "one model in this run\n(model_settings.ensemble adds others)")
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
            label=f"{kind} (OOS rank IC {as_number(ics.get(kind)):+.3f})",
            gid=f"ranks_{kind}",
        )
    shared = inputs.agreement.loc[inputs.agreement["in_all_top_k"].astype(bool), "feature"]
    for feature in shared:
        if feature in wide.index:
            row = wide.loc[feature]
            for kind in kinds[1:]:
                ax.annotate(
                    plain(feature),
                    (row[kinds[0]], row[kind]),
                    textcoords="offset points",
                    xytext=(5, 5),
                    fontsize=8,
                )
    ax.set_xlim(0.5, n + 0.5)
    ax.set_ylim(0.5, n + 0.5)
    ax.set_xlabel(f"rank under {kinds[0]} (OOS rank IC {as_number(ics.get(kinds[0])):+.3f}; 1 = strongest)")
    ax.set_ylabel("rank under the other member")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    spearman = as_number(inputs.agreement["rank_spearman"].iloc[0])
    ax.set_title(
        f"{title}: Spearman {spearman:+.2f}; ensemble OOS rank IC {as_number(ics.get(ENSEMBLE)):+.3f}",
        fontsize=11,
    )
