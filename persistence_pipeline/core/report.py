"""The report-only view: the latest run, the features quarantined as possible leakage, its stability
summary and the top alpha features, and optionally one segment's (strategy's or side's) top features,
as text or markdown, from warehouse frames (nothing is trained). The stability lines, the alpha table
and the segment section are shared with the dashboard's summary (core/summary.py).

The run's suspicion, sizing, ensemble and alpha-monitor lines come from core.leakage, core.sizing,
core.ensemble and core.monitor, which import scipy and sklearn: they are imported when the report is
rendered, so that importing this module stays light."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from persistence_pipeline.core.summary import (
    ALPHA_TABLE_NUMBERS,
    alpha_gate,
    alpha_listing,
    alpha_scored,
    interaction_lines,
    listing_lines,
    oos_caveat_of,
    quarantined_by_feature,
    segment_lines,
    segment_names,
    stability_lines,
)

QUARANTINED_LISTED = 10  # quarantined features named in the report before "and N more"


def _value(value: object, spec: str) -> str:
    return "n/a" if value is None or pd.isna(value) else format(value, spec)


def _quarantined_line(quarantined: pd.DataFrame | None, run_key: str) -> str:
    """The quarantine line: "Quarantined (possible leakage): leaky (IC +0.912, run A..B/ridge), ...";
    "Quarantined: none" for an empty frame; for None (the caller read no excluded_features) that it was
    not read, since an unread table is no evidence of no leakage."""
    if quarantined is None:
        return "Quarantined: not read (no excluded_features given)"
    if quarantined.empty:
        return "Quarantined: none"
    rows = quarantined if "run_key" in quarantined.columns else quarantined.assign(run_key=run_key)
    table = quarantined_by_feature(rows.assign(run_key=rows["run_key"].fillna(run_key)))
    listed = [
        f"{' '.join(str(row['feature']).split())} (IC {_value(row['ic'], '+.3f')}, run {row['run_key']})"
        for _, row in table.head(QUARANTINED_LISTED).iterrows()
    ]
    more = len(table) - len(listed)
    return "Quarantined (possible leakage): " + ", ".join(listed) + (f" and {more} more" if more else "")


def _stale_line(stale: pd.DataFrame) -> str:
    """The line naming the stale runs, oldest first, with what changed under each."""
    if stale.empty:
        return "Stale runs: none (every run read the runs stored now)"
    listed = [f"{row['run_key']} ({row['changed']})" for _, row in stale.head(QUARANTINED_LISTED).iterrows()]
    more = len(stale) - len(listed)
    return (
        f"Stale runs: {len(stale)}, read runs that changed since; materialize them again oldest first "
        "(or turn on the stale_runs_sensor): " + ", ".join(listed) + (f" and {more} more" if more else "")
    )


def _segments_line(segments: pd.DataFrame) -> str:
    """The line naming the run's segments: "Segments: side=long, ... (--segment NAME shows one)"."""
    names = segment_names(segments)
    if not names:
        return "Segments: none stored for this run"
    return "Segments: " + ", ".join(" ".join(n.split()) for n in names) + " (--segment NAME shows one)"


def render_report(
    latest: pd.Series,
    summary: Mapping[str, object] | None,
    alpha: pd.DataFrame,
    n_runs: int,
    markdown: bool,
    top_n: int = 10,
    quarantined: pd.DataFrame | None = None,
    interactions: pd.DataFrame | None = None,
    segments: pd.DataFrame | None = None,
    segment: str | None = None,
    stale: pd.DataFrame | None = None,
    sizing: pd.DataFrame | None = None,
    ensemble: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    suspects: pd.DataFrame | None = None,
) -> str:
    """The report of the latest run (by range end) and what is known as of it: the run, its stability
    summary (runs compared vs stored, "n/a" for NULL figures) and the top_n alpha features with every
    decaying one (alpha score, mean IC with its 95% interval, q-value, periods, persistence, decay).
    `quarantined` holds excluded_features rows (feature, ic, reason and, optionally, run_key: the
    latest run's when absent); empty prints "Quarantined: none", None says it was not read.
    `segments`: the latest run's feature_segments rows; given, a line names the run's segments, and
    with `segment` a last section "Within <segment>" lists its top_n features by their rank within it
    (trades, in-sample IC within the segment, mean |SHAP| over its trades), or says the run did not
    store that segment and names those it did. `stale`: the runs whose inputs changed since they ran
    (run_key, changed); given, a line lists them. `sizing`: the latest run's sizing_performance rows;
    given, a line gives each OOS book's Sharpe and total return net of costs. `ensemble`: the latest
    run's ensemble_metrics and model_agreement rows; given, a line gives each member's and the
    ensemble's OOS rank IC and how far the members' importance ranks agree. `suspects`: the latest
    run's feature_importance_history rows of suspected leaks (run_key, feature, suspect,
    suspect_reason); with them or a quarantined feature the report opens with the SUSPECT RUN line
    and marks the run's OOS figures and books."""
    from persistence_pipeline.core.ensemble import ensemble_line
    from persistence_pipeline.core.leakage import suspect_run_line
    from persistence_pipeline.core.monitor import monitor_summary
    from persistence_pipeline.core.sizing import sizing_line

    heading = "## " if markdown else ""
    bullet = "- " if markdown else "  "
    priors = latest["priors_from_run_key"]
    run_key = str(latest["run_key"])
    held = pd.DataFrame() if quarantined is None else quarantined
    suspicion = suspect_run_line(
        run_key,
        pd.DataFrame() if suspects is None else suspects,
        held if "run_key" in held.columns else held.assign(run_key=run_key),
    )
    mark = " [suspect run: see the first line]" if suspicion else ""
    lines = [
        *([suspicion, ""] if suspicion else []),
        f"{heading}Latest run {latest['run_key']} ({n_runs} run{'s' if n_runs != 1 else ''} stored)",
        f"{bullet}range {latest['range_start']:%Y-%m-%d} .. {latest['range_end']:%Y-%m-%d}, "
        f"Dagster run {latest['dagster_run_id']}",
        f"{bullet}trained on {latest['n_train']} of {latest['n_trades']} trades "
        f"({latest['n_unrealized']} not yet exited)",
        f"{bullet}OOS rank IC {_value(latest['oos_rank_ic'], '+.4f')}, "
        f"R^2 {_value(latest['oos_r2'], '+.4f')}, "
        f"hit rate {_value(latest['oos_hit_rate'], '.3f')} "
        f"(base rate {_value(latest.get('oos_base_rate'), '.3f')}), "
        f"mean return taken {_value(latest['oos_mean_return_taken'], '+.5f')} "
        f"vs all {_value(latest['oos_mean_return_all'], '+.5f')}{oos_caveat_of(latest)}{mark}",
        f"{bullet}priors from {priors if isinstance(priors, str) else 'none (cold start)'}",
        f"{bullet}{_quarantined_line(quarantined, str(latest['run_key']))}",
        *([f"{bullet}{_segments_line(segments)}"] if segments is not None else []),
        *([f"{bullet}{_stale_line(stale)}"] if stale is not None else []),
        *([f"{bullet}{sizing_line(sizing)}{mark}"] if sizing is not None else []),
        *([f"{bullet}{ensemble_line(*ensemble)}"] if ensemble is not None else []),
        "",
        f"{heading}Stability",
    ]
    if summary is None:
        lines.append(f"{bullet}not computed for this run")
    else:
        lines += [f"{bullet}{line}" for line in stability_lines(summary)]
    lines += ["", f"{heading}Alpha features, by evidence"]
    if not alpha_scored(alpha):
        lines.append(f"{bullet}{alpha_gate(alpha)}")
    else:
        table, notes = alpha_listing(alpha, top_n)
        lines += listing_lines(table, notes, markdown, ALPHA_TABLE_NUMBERS)
    lines.append(f"{bullet}Alpha monitor: {monitor_summary(alpha)}")
    if interactions is not None:
        lines += [
            "",
            f"{heading}Strongest feature interactions",
            *(f"{bullet}{line}" for line in interaction_lines(interactions)),
        ]
    if segment is not None:
        rows = pd.DataFrame({"segment": pd.Series(dtype="object")}) if segments is None else segments
        lines += [
            "",
            f"{heading}Within {' '.join(segment.split())}",
            *segment_lines(rows, segment, str(latest["run_key"]), top_n, markdown, bullet),
        ]
    return "\n".join(lines) + "\n"
