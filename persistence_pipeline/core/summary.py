"""What a run's stored figures say in words: the text that the dashboard's summary
(core/dashboard.py), `python -m persistence_pipeline report` (core/report.py) and the end of
`python -m persistence_pipeline run` print alike, from warehouse frames: the alpha table by evidence
with its notes, the stability lines, the strongest interactions, the quarantined features by
feature, one segment's table, the caveat on thin OOS figures, and the number formats they share
("n/a" for a missing figure, names on one line, markdown cells escaped).

The report reads only this module of the dashboard's. The constants and functions it takes from
core.evidence, core.metrics and core.alpha come with scipy and sklearn, so they are imported inside
the functions that use them, not when this module is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def as_number(value: object) -> float:
    """A float, NaN for None, NA or anything that is no number."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def floats(values: pd.Series) -> np.ndarray:
    """Float64 values, NaN for NULL (nullable dtypes included)."""
    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()


def fmt(value: object, spec: str = ".3f") -> str:
    """A number formatted by `spec`, "n/a" for None, NA, NaN or anything that is no finite number."""
    number = as_number(value)
    return format(number, spec) if np.isfinite(number) else "n/a"


def _count(value: object) -> str:
    """A whole number as text, "n/a" when missing."""
    number = as_number(value)
    return str(int(number)) if np.isfinite(number) else "n/a"


def plain(name: object) -> str:
    """A feature or run name on one line (tabs, newlines and other control characters as spaces)."""
    return re.sub(r"\s+", " ", str(name)).strip()


def cell(value: object) -> str:
    """A markdown table cell: the text on one line, "|" escaped."""
    return plain(value).replace("|", "\\|")


def q_text(q: object) -> str:
    """A q-value as text: "0.003", "<0.001" below 0.001, "n/a" when missing."""
    value = as_number(q)
    if not np.isfinite(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def q_label(q: object) -> str:
    """The q-value label beside an alpha bar: "q=0.003", "q<0.001" or "q=n/a"."""
    text = q_text(q)
    return f"q{text}" if text.startswith("<") else f"q={text}"


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


def is_decaying(alpha: pd.DataFrame) -> pd.Series:
    """Per alpha row, whether its IC decays (a row stored without a verdict does not)."""
    return alpha["decaying"].astype("boolean").fillna(False).astype(bool)


def alpha_scored(alpha: pd.DataFrame) -> bool:
    """Whether any feature has an alpha score."""
    return bool(alpha["alpha_score"].notna().any())


def alpha_gate(alpha: pd.DataFrame) -> str:
    """Why no feature has an alpha score: "alpha needs 3 complete periods of trades, N so far", N the
    most complete periods any feature's IC series has."""
    from persistence_pipeline.core.evidence import MIN_PERIODS_FOR_TEST

    periods = floats(alpha["n_periods"])
    most = int(np.nanmax(periods)) if np.isfinite(periods).any() else 0
    return f"alpha needs {MIN_PERIODS_FOR_TEST} complete periods of trades, {most} so far"


def decay_tested(alpha: pd.DataFrame) -> bool:
    """Whether any feature's IC series was long enough for the decay trend."""
    return bool(alpha["ic_slope_p_value"].notna().any())


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
    from persistence_pipeline.core.evidence import SIGNIFICANCE_LEVEL

    q = pd.to_numeric(alpha["ic_q_value"], errors="coerce")
    return alpha[alpha["alpha_score"].notna() & (q < SIGNIFICANCE_LEVEL)]


NO_RELIABLE_ALPHA = "no feature has reliable alpha yet (none with q < 0.05)"


def oos_caveat_of(run: pd.Series) -> str:
    """What a stored run's OOS figures rest on when that is thin (core/metrics.oos_caveat), from its
    run_metrics row; '' when they are not thin or the row predates the figures it needs."""
    from persistence_pipeline.core.metrics import oos_caveat

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
    return pd.concat([top, rest[is_decaying(rest)]])


ALPHA_TABLE_NUMBERS = ["alpha score", "IC mean [95% interval]", "q", "periods", "persistence"]


def _decay_cell(decaying: bool, half_life_days: object, verdict: object, mde: object) -> str:
    """'yes, half-life N days', 'no', 'cannot tell (it would see a fade of X)', or '' for a row
    stored without a verdict."""
    if decaying:
        return f"yes, half-life {fmt(half_life_days, '.0f')} days"
    if verdict == "not decaying":
        return "no"
    if verdict == "cannot tell":
        seen = f" (it would see a fade of {fmt(mde, '.2f')})" if pd.notna(mde) else ""
        return f"cannot tell{seen}"
    return ""


def indicators_note(alpha: pd.DataFrame) -> str:
    """The side and strategy indicators' pooled IC, apart from the ranked features."""
    rows = alpha[alpha["indicator"].fillna(False).astype(bool)].sort_values("feature")
    parts = ", ".join(
        f"{plain(f)} {fmt(ic, '+.4f')} (p {q_text(p)})"
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
            "feature": [plain(f) for f in rows["feature"]],
            "alpha score": [fmt(v) for v in rows["alpha_score"]],
            "IC mean [95% interval]": [
                f"{fmt(m, '+.4f')} [{fmt(low, '+.4f')}, {fmt(high, '+.4f')}]"
                for m, low, high in zip(rows["ic_mean"], rows["ic_ci_low"], rows["ic_ci_high"], strict=True)
            ],
            "q": [q_text(q) for q in rows["ic_q_value"]],
            "periods": [_count(n) for n in rows["n_periods"]],
            "persistence": [fmt(p, ".2f") for p in rows["persistence"]],
            "decaying": [
                _decay_cell(d, h, v, m)
                for d, h, v, m in zip(
                    is_decaying(rows),
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
        names = ", ".join(plain(f) for f in below)
        notes.append(f"Listed although below the top {top_n}, because they decay: {names}.")
    hidden = n_scored - int(rows["alpha_score"].notna().sum())
    if hidden:
        notes.append(f"{hidden} more features not shown.")
    if "suspected_leak" in alpha.columns and alpha["suspected_leak"].fillna(False).astype(bool).any():
        from persistence_pipeline.core.alpha import suspected_leaks_note

        notes.append(suspected_leaks_note(alpha))
    if "indicator" in alpha.columns and alpha["indicator"].fillna(False).astype(bool).any():
        notes.append(indicators_note(alpha))
    if "alias_of" in alpha.columns and alpha["alias_of"].notna().any():
        aliased = alpha[alpha["alias_of"].notna()]
        names = ", ".join(
            f"{plain(f)} (= {plain(r)})" for f, r in zip(aliased["feature"], aliased["alias_of"], strict=True)
        )
        notes.append(
            f"One hypothesis with an earlier feature (|correlation| >= 0.95), not scored apart: {names}."
        )
    return table, notes


def stability_lines(summary: Mapping[str, object] | pd.Series) -> list[str]:
    """The stability summary as plain lines: the runs compared (non-overlapping) against the runs
    stored and the trade overlap of consecutive stored runs, the rank agreement, the top-k stability
    with its interval, and the note (left out when empty); "n/a" for a NULL figure."""
    overlap = as_number(summary.get("mean_trade_overlap"))
    note = summary.get("note")
    lines = [
        f"runs compared: {_count(summary.get('n_independent_runs'))} non-overlapping of "
        f"{_count(summary.get('n_runs'))} stored (worth {fmt(summary.get('n_effective_runs'), '.1f')} "
        f"non-overlapping runs); consecutive stored runs share "
        f"{format(overlap, '.0%') if np.isfinite(overlap) else 'n/a'} of their training trades",
        f"Kendall's W {fmt(summary.get('kendall_w'))}, "
        f"mean pairwise Spearman {fmt(summary.get('mean_pairwise_spearman'))}, "
        f"latest Spearman {fmt(summary.get('latest_spearman'))}",
        f"top-{_count(summary.get('k'))} Nogueira stability {fmt(summary.get('nogueira_phi'))} "
        f"[{fmt(summary.get('nogueira_ci_low'))}, {fmt(summary.get('nogueira_ci_high'))}]",
    ]
    return lines + ([plain(note)] if isinstance(note, str) and note.strip() else [])


def interaction_lines(interactions: pd.DataFrame, limit: int = 5) -> list[str]:
    """The strongest feature pairs of the run as plain lines ("a x b: mean |SHAP interaction| 0.0012"),
    or one line saying why there are none."""
    if interactions.empty:
        return ["none recorded (a linear model has no interactions; gradient-boosted trees record them)"]
    shown = interactions.sort_values("rank").head(limit)
    return [
        f"{plain(row['feature_a'])} x {plain(row['feature_b'])}: mean |SHAP interaction| "
        f"{fmt(row['interaction_mean_abs'], '.5f')}"
        for _, row in shown.iterrows()
    ]


def segment_names(segments: pd.DataFrame, run_key: str | None = None) -> list[str]:
    """The segments the feature_segments rows hold (of `run_key` only, when given), by name."""
    rows = segments if run_key is None else segments[segments["run_key"] == run_key]
    return sorted({str(name) for name in rows["segment"].dropna()})


def unknown_segment(segment: str, available: Sequence[str], run_key: str) -> str:
    """One line: the segment is not stored for the run, and the run's segments (or that it has none)."""
    names = ", ".join(plain(n) for n in available) if available else "none stored"
    return f"segment '{plain(segment)}' is not stored for run {plain(run_key)}; its segments: {names}"


SEGMENT_TABLE_NUMBERS = ["rank", "trades", "IC (in-sample)", "mean |SHAP|"]


def segment_listing(rows: pd.DataFrame, top_n: int) -> tuple[pd.DataFrame, list[str]]:
    """The table of one segment of one run (its feature_segments rows) as text cells: the top_n
    ranked features by their rank within the segment (ties by name), with rank, feature, the
    segment's trades, the in-sample IC within the segment and the mean |SHAP| over its trades; and
    the notes below it: how many ranked features are not shown, and the quarantined ones (no rank)
    with their IC within the segment."""
    ranks = floats(rows["rank"])
    ranked = rows.assign(_rank=ranks)[np.isfinite(ranks)].sort_values(["_rank", "feature"], kind="stable")
    shown = ranked.head(max(top_n, 0))
    table = pd.DataFrame(
        {
            "rank": [_count(r) for r in shown["_rank"]],
            "feature": [plain(f) for f in shown["feature"]],
            "trades": [_count(n) for n in shown["n_trades"]],
            "IC (in-sample)": [fmt(ic, "+.4f") for ic in shown["ic"]],
            "mean |SHAP|": [fmt(v, ".5f") for v in shown["shap_mean_abs"]],
        }
    )
    notes = []
    if len(ranked) > len(shown):
        notes.append(f"{len(ranked) - len(shown)} more features not shown.")
    constant = shown[~np.isfinite(floats(shown["ic"])) & (floats(shown["n_trades"]) >= 3)]
    if len(constant):  # an IC of 3 or more trades is n/a only for a feature that does not vary
        names = ", ".join(plain(f) for f in constant["feature"])
        notes.append(
            f"IC n/a: constant within the segment ({names}); measured from the segment's own average "
            "trade, they carry no effect within it."
        )
    held = rows[~np.isfinite(ranks)].sort_values("feature", kind="stable")
    if len(held):
        listed = ", ".join(
            f"{plain(f)} (IC {fmt(ic, '+.3f')})" for f, ic in zip(held["feature"], held["ic"], strict=True)
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
    n_trades = floats(rows["n_trades"])
    trades = f"{int(np.nanmax(n_trades))} trades" if np.isfinite(n_trades).any() else "trades n/a"
    lines = [
        f"{bullet}{trades} of run {plain(run_key)}; ranked by the model's mean |SHAP| over them; "
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
    lines = markdown_lines(table, right) if markdown else [table.to_string(index=False)]
    for note in notes:
        lines += ["", note]
    return lines


def markdown_lines(table: pd.DataFrame, right: Sequence[str] = ()) -> list[str]:
    """The lines of a markdown table of text cells ("|" escaped), the columns in `right` right-aligned."""
    rule = "|" + "|".join("---:" if c in right else "---" for c in table.columns) + "|"
    cells = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return ["| " + " | ".join(cell(c) for c in table.columns) + " |", rule, *cells]
