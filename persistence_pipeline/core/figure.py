"""The persistence dashboard as one page: the five feature panels of core/panels.py and the three
run panels of core/run_panels.py laid out on a grid under a title that flags a suspect run, the
scatter points' labels placed once the layout is final, and the PNG, byte-identical for the same
inputs. matplotlib is imported when a figure is drawn."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pandas as pd

from persistence_pipeline.core.dashboard import DashboardInputs, run_suspicion
from persistence_pipeline.core.panels import (
    QUARANTINED_COLOR,
    alpha_panel,
    importance_panel,
    importance_vs_performance_panel,
    panel_view,
    rank_heatmap_panel,
    stability_panel,
)
from persistence_pipeline.core.run_panels import agreement_panel, run_performance_panel, sizing_panel

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

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


def dashboard_figure(inputs: DashboardInputs) -> Figure:
    """The eight-panel matplotlib figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = panel_view(inputs)
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
    importance_panel(fig.add_subplot(grid[0, 0]), inputs, view)
    rank_heatmap_panel(fig, fig.add_subplot(grid[0, 1]), inputs, view)
    alpha_panel(fig.add_subplot(grid[1, 0]), inputs, view)
    labels = [
        importance_vs_performance_panel(fig.add_subplot(grid[1, 1]), inputs, view),
        stability_panel(fig.add_subplot(grid[2, 0]), inputs, view),
    ]
    run_performance_panel(fig, grid[2, 1], inputs, view)
    sizing_panel(fig.add_subplot(grid[3, 0], label="sizing"), inputs)
    agreement_panel(fig.add_subplot(grid[3, 1], label="agreement"), inputs)
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
