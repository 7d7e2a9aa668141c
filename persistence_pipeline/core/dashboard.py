"""The persistence dashboard's inputs and its words: `DashboardInputs` (the warehouse frames the
dashboard is drawn from), the selections the panels and the summary share (the features shown, the
suspect runs, the interval of a run's OOS rank IC), the one-line plain-text headline and the
markdown summary. The panels are core/panels.py and core/run_panels.py, the figure and its PNG
core/figure.py; the text the summary shares with the report is core/summary.py.

With a `segment` (one strategy or side, e.g. `strategy=mean_reversion`: the pooled importance mixes
strategies whose features mean different things), panel (1) draws the segment's mean |SHAP| over
runs and the summary adds a "Within <segment>" section (core/summary.segment_lines, shared with the
report), from feature_segments rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from persistence_pipeline.core.design import is_indicator
from persistence_pipeline.core.ensemble import ensemble_line
from persistence_pipeline.core.evidence import MIN_PERIODS_FOR_TREND
from persistence_pipeline.core.importance import INTERACTION_COLUMNS
from persistence_pipeline.core.leakage import suspect_run_line
from persistence_pipeline.core.monitor import monitor_summary
from persistence_pipeline.core.sizing import sizing_line
from persistence_pipeline.core.summary import (
    ALPHA_TABLE_NUMBERS,
    NO_RELIABLE_ALPHA,
    alpha_gate,
    alpha_listing,
    alpha_scored,
    as_number,
    by_evidence,
    cell,
    decay_tested,
    fmt,
    interaction_lines,
    is_decaying,
    markdown_lines,
    oos_caveat_of,
    plain,
    q_label,
    quarantined_by_feature,
    reliable,
    segment_lines,
    stability_lines,
)

DECAY_UNTESTED = f"n/a (needs {MIN_PERIODS_FOR_TREND} complete periods)"
# Approximate 95% interval of a run's OOS rank IC r over its n OOS trades: Fisher z = atanh(r) with
# standard error 1/sqrt(n - 3), z +- 1.96/sqrt(n - 3) mapped back with tanh. For a Spearman correlation
# this is a slight underestimate (Fieller, Hartley & Pearson 1957 give 1.06/(n - 3) as the variance of
# z); it ignores that walk-forward folds are fitted by different models. A rough band, not a test.
IC_INTERVAL_Z = 1.96
QUARANTINED_COLUMNS = ["run_key", "feature", "ic", "reason"]
BOOK_COLUMNS = ["prediction", "position", "gross_return", "entry_time", "exit_time"]
MEMBER_RANK_COLUMNS = ["model_kind", "feature", "rank", "shap_mean_abs"]
AGREEMENT_FRAME_COLUMNS = ["feature", "in_all_top_k", "k", "rank_spearman"]
HEADLINE_NAMES = 3  # names listed per category in the headline before "and N more"


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


def ic_interval(ic: object, n: object) -> tuple[float, float]:
    """Approximate 95% interval of a rank IC over n trades (Fisher z, see IC_INTERVAL_Z); NaNs when
    the IC or n is missing or n < 4."""
    r, trades = as_number(ic), as_number(n)
    if not (np.isfinite(r) and np.isfinite(trades) and trades >= 4):
        return float("nan"), float("nan")
    z = float(np.arctanh(np.clip(r, -0.999999, 0.999999)))
    half = IC_INTERVAL_Z / np.sqrt(trades - 3.0)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def _names(names: list[str], none: str = "none") -> str:
    if not names:
        return none
    listed = ", ".join(plain(n) for n in names[:HEADLINE_NAMES])
    return listed + (f" and {len(names) - HEADLINE_NAMES} more" if len(names) > HEADLINE_NAMES else "")


def dashboard_headline(inputs: DashboardInputs) -> str:
    """One plain-text line (no markdown): the top feature, the decaying and quarantined ones, and the
    latest run's OOS rank IC (with its ~95% interval) and hit rate against the base rate."""
    latest = inputs.runs.set_index("run_key").loc[inputs.run_key]
    scored = by_evidence(inputs.alpha.dropna(subset=["alpha_score"]))
    if len(reliable(scored)):
        best = reliable(scored).iloc[0]
        top = (
            f"top feature {plain(best['feature'])} "
            f"(alpha {best['alpha_score']:.2f}, {q_label(best['ic_q_value'])})"
        )
    elif len(scored):
        top = NO_RELIABLE_ALPHA
    else:  # no alpha yet: the most important feature, never the side or a strategy indicator
        ranked = [f for f in top_features(inputs) if not is_indicator(f)]
        top = (
            f"no alpha yet ({alpha_gate(inputs.alpha)}); most important to the model: {plain(ranked[0])}"
            if ranked
            else "no features"
        )
    decaying = (
        _names(inputs.alpha.loc[is_decaying(inputs.alpha), "feature"].tolist())
        if decay_tested(inputs.alpha)
        else DECAY_UNTESTED
    )
    quarantined = quarantined_by_feature(inputs.quarantined, inputs.runs["run_key"].tolist())
    low, high = ic_interval(latest["oos_rank_ic"], latest.get("n_oos"))
    band = f" [{low:+.3f}, {high:+.3f}]" if np.isfinite(low) else ""
    line = (
        f"As of {plain(inputs.run_key)}: {top}; decaying: {decaying}; "
        f"quarantined: {_names(quarantined['feature'].tolist())}; "
        f"OOS rank IC {fmt(latest['oos_rank_ic'], '+.3f')}{band} vs 0 "
        f"(hit {fmt(latest['oos_hit_rate'], '.2f')} vs base {fmt(latest.get('oos_base_rate'), '.2f')})"
        f"{oos_caveat_of(latest)}"
    )
    suspicion = run_suspicion(inputs)
    return plain(f"{suspicion}. {line}" if suspicion else line)


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
            f"| {cell(row['feature'])} | `{row['run_key']}` | {fmt(row['ic'], '+.3f')} | "
            f"{int(row['n_runs'])} of {len(inputs.runs)} | {cell(row['reason'])} |"
        )
    if len(table) > inputs.top_n:
        lines.append(f"\n{len(table) - inputs.top_n} more quarantined features not shown.")
    return lines


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
        f"- runs: {len(inputs.runs)}; latest OOS rank IC {fmt(latest['oos_rank_ic'], '+.4f')}{band}, "
        f"hit rate {fmt(latest['oos_hit_rate'])} (base rate {fmt(latest.get('oos_base_rate'))})"
        f"{oos_caveat_of(latest)}, trained on {int(latest['n_train'])} trades; "
        f"priors from `{priors if isinstance(priors, str) else 'none (cold start)'}`"
        + (" (**suspect run**: see the first line)" if run_suspicion(inputs) else ""),
        "- stability:",
        *(f"  - {line}" for line in stability_lines(inputs.summary)),
    ]
    if alpha_scored(inputs.alpha):
        table, notes = alpha_listing(inputs.alpha, inputs.top_n)
        lines += ["", *markdown_lines(table, ALPHA_TABLE_NUMBERS), *(f"\n{note}" for note in notes)]
    else:
        lines.append(f"- {alpha_gate(inputs.alpha)}")
    decaying = inputs.alpha.loc[is_decaying(inputs.alpha), "feature"].tolist()
    listed = ", ".join(plain(f) for f in decaying) or "none"
    lines.append(f"\nDecaying: {listed if decay_tested(inputs.alpha) else DECAY_UNTESTED}.")
    lines.append(f"\nAlpha monitor: {monitor_summary(inputs.alpha)}.")
    lines.append(f"\n{'Suspect run: ' if run_suspicion(inputs) else ''}{sizing_line(inputs.sizing)}.")
    lines.append(f"\n{ensemble_line(inputs.ensemble, inputs.agreement)}.")
    if inputs.segment:
        lines += [
            f"\n### Within {plain(inputs.segment)} (latest run)",
            *segment_lines(inputs.segments, inputs.segment, inputs.run_key, inputs.top_n, markdown=True),
        ]
    lines += [
        "\n### Strongest feature interactions (latest run)",
        *(f"- {line}" for line in interaction_lines(inputs.interactions)),
    ]
    lines += _quarantined_section(inputs)
    return "\n".join(lines)
