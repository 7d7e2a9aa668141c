"""The report-only view: the latest run, the features quarantined as possible leakage, its stability
summary and the top alpha features, as text or markdown, from warehouse frames (nothing is trained)."""

from __future__ import annotations

import pandas as pd

from persistence_pipeline.core.dashboard import quarantined_by_feature

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


def render_report(
    latest: pd.Series,
    summary: pd.Series | None,
    alpha: pd.DataFrame,
    n_runs: int,
    markdown: bool,
    top_n: int = 10,
    quarantined: pd.DataFrame | None = None,
) -> str:
    """The report of the latest run (by range end) and what is known as of it. `quarantined` holds
    excluded_features rows (feature, ic, reason and, optionally, run_key: the latest run's when
    absent); empty prints "Quarantined: none", None says it was not read."""
    heading = "## " if markdown else ""
    bullet = "- " if markdown else "  "
    priors = latest["priors_from_run_key"]
    lines = [
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
        f"vs all {_value(latest['oos_mean_return_all'], '+.5f')}",
        f"{bullet}priors from {priors if isinstance(priors, str) else 'none (cold start)'}",
        f"{bullet}{_quarantined_line(quarantined, str(latest['run_key']))}",
        "",
        f"{heading}Stability",
    ]
    if summary is None:
        lines.append(f"{bullet}not computed for this run")
    else:
        lines += [
            f"{bullet}Kendall's W {_value(summary['kendall_w'], '.3f')}, mean pairwise Spearman "
            f"{_value(summary['mean_pairwise_spearman'], '.3f')}, "
            f"latest Spearman {_value(summary['latest_spearman'], '.3f')}",
            f"{bullet}top-{summary['k']} Nogueira stability {_value(summary['nogueira_phi'], '.3f')} "
            f"[{_value(summary['nogueira_ci_low'], '.3f')}, {_value(summary['nogueira_ci_high'], '.3f')}]",
            f"{bullet}{summary['note']}",
        ]
    lines += ["", f"{heading}Top alpha features"]
    scored = alpha.dropna(subset=["alpha_score"])
    if scored.empty:
        lines.append(f"{bullet}alpha scores need at least 2 runs")
    else:
        shown = scored.head(top_n)[
            ["feature", "alpha_score", "ic_mean", "ic_t_stat", "stability", "decaying"]
        ]
        table = (
            shown.to_markdown(index=False, floatfmt=".4f")
            if markdown
            else shown.to_string(index=False, float_format=lambda v: f"{v:.4f}")
        )
        lines.append(table)
        if len(scored) > top_n:
            lines.append(f"{len(scored) - top_n} more features not shown.")
    return "\n".join(lines) + "\n"
