"""What changed since the last retrain: features that entered or left the top k, the largest rank
moves and the largest importance changes, measured against the previous run of the same kind."""

from __future__ import annotations

import numpy as np
import pandas as pd

CHANGE_COLUMNS = [
    "feature",
    "previous_rank",
    "rank",
    "rank_shift",
    "previous_shap_mean_abs",
    "shap_mean_abs",
    "shap_change",
    "entered_top_k",
    "left_top_k",
]


def rank_changes(previous: pd.DataFrame, current: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per feature of either run; rank_shift > 0 means the feature moved up. Features new in
    this run have no previous rank; features gone from it have no rank. Largest rank moves first."""
    merged = current[["feature", "rank", "shap_mean_abs"]].merge(
        previous[["feature", "rank", "shap_mean_abs"]].rename(
            columns={"rank": "previous_rank", "shap_mean_abs": "previous_shap_mean_abs"}
        ),
        on="feature",
        how="outer",
    )
    for column in ("rank", "previous_rank"):  # nullable integers from the warehouse: NaN where absent
        merged[column] = pd.to_numeric(merged[column], errors="coerce").astype("float64")
    merged["rank_shift"] = merged["previous_rank"] - merged["rank"]
    merged["shap_change"] = merged["shap_mean_abs"] - merged["previous_shap_mean_abs"]
    now_top, was_top = merged["rank"] <= k, merged["previous_rank"] <= k
    merged["entered_top_k"] = now_top & ~was_top
    merged["left_top_k"] = was_top & ~now_top
    merged["order"] = merged["rank_shift"].abs().fillna(float("inf"))
    merged = merged.sort_values(["order", "feature"], ascending=[False, True], kind="stable")
    return merged[CHANGE_COLUMNS].reset_index(drop=True)


def _in_top(ranks: pd.Series, n: int) -> np.ndarray:
    """rank <= n, with a missing rank (a feature absent from that run) never in the top. Ranks read
    from the warehouse are nullable integers, whose comparisons give <NA>, not False."""
    return (pd.to_numeric(ranks, errors="coerce").astype("float64") <= n).to_numpy(dtype=bool)


def top_set_change(changes: pd.DataFrame, n: int) -> tuple[list[str], list[str]]:
    """(entered, left) the top n between the two runs, each sorted by name."""
    now, before = _in_top(changes["rank"], n), _in_top(changes["previous_rank"], n)
    entered = sorted(changes.loc[now & ~before, "feature"])
    left = sorted(changes.loc[before & ~now, "feature"])
    return entered, left


def material_top_changes(
    changes: pd.DataFrame, current: pd.DataFrame, n: int, z: float = 2.0
) -> pd.DataFrame:
    """The top-n flips larger than the bootstrap spread of the importances: for each feature that
    entered the top n and each that left it, the gap between their mean |SHAP| in the current run
    and the spread sqrt(sd_entered^2 + sd_left^2) of that gap (`shap_mean_abs_std` of the run).
    A flip is material when gap > z * spread, or when the feature that left is gone from the run.
    One row per (entered, left) pair: entered, left, gap, spread, material."""
    entered, left = top_set_change(changes, n)
    shap = current.set_index("feature")["shap_mean_abs"].astype("float64")
    spread = current.set_index("feature")["shap_mean_abs_std"].astype("float64").fillna(0.0)
    rows = []
    for a in entered:
        for b in left:
            if b not in shap.index:
                rows.append({"entered": a, "left": b, "gap": np.nan, "spread": np.nan, "material": True})
                continue
            gap = float(shap[a] - shap[b])
            noise = float(np.sqrt(spread[a] ** 2 + spread[b] ** 2))
            rows.append({"entered": a, "left": b, "gap": gap, "spread": noise, "material": gap > z * noise})
    return pd.DataFrame(rows, columns=["entered", "left", "gap", "spread", "material"])


def describe_changes(changes: pd.DataFrame, previous_run_key: str | None, k: int) -> str:
    """Markdown lead for metadata and the dashboard summary."""
    if previous_run_key is None:
        return "**What changed:** first run of this model kind; nothing to compare with."
    entered, left = top_set_change(changes, k)
    moves = changes.dropna(subset=["rank_shift"]).head(3)
    biggest = (
        changes.dropna(subset=["shap_change"])
        .reindex(changes["shap_change"].abs().dropna().sort_values(ascending=False).index)
        .head(3)
    )
    return "\n".join(
        [
            f"**What changed since `{previous_run_key}`:**",
            f"- entered the top {k}: {', '.join(entered) or 'none'}; left it: {', '.join(left) or 'none'}",
            "- largest rank moves: "
            + (
                ", ".join(f"{r.feature} {int(r.previous_rank)}→{int(r.rank)}" for r in moves.itertuples())
                or "none"
            ),
            "- largest importance changes (mean |SHAP|): "
            + (", ".join(f"{r.feature} {r.shap_change:+.3g}" for r in biggest.itertuples()) or "none"),
        ]
    )
