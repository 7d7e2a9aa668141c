"""What changed since the last retrain: features that entered or left the top k, the largest rank
moves and the largest importance changes, measured against the previous run of the same kind."""

from __future__ import annotations

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


def importance_changes(previous: pd.DataFrame, current: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per feature of either run; rank_shift > 0 means the feature moved up. Features new in
    this run have no previous rank; features gone from it have no rank. Largest rank moves first."""
    merged = current[["feature", "rank", "shap_mean_abs"]].merge(
        previous[["feature", "rank", "shap_mean_abs"]].rename(
            columns={"rank": "previous_rank", "shap_mean_abs": "previous_shap_mean_abs"}
        ),
        on="feature",
        how="outer",
    )
    merged["rank_shift"] = merged["previous_rank"] - merged["rank"]
    merged["shap_change"] = merged["shap_mean_abs"] - merged["previous_shap_mean_abs"]
    now_top, was_top = merged["rank"] <= k, merged["previous_rank"] <= k
    merged["entered_top_k"] = now_top & ~was_top
    merged["left_top_k"] = was_top & ~now_top
    merged["order"] = merged["rank_shift"].abs().fillna(float("inf"))
    merged = merged.sort_values(["order", "feature"], ascending=[False, True], kind="stable")
    return merged[CHANGE_COLUMNS].reset_index(drop=True)


def top_set_change(changes: pd.DataFrame, n: int) -> tuple[list[str], list[str]]:
    """(entered, left) the top n between the two runs, each sorted by name."""
    entered = sorted(changes.loc[(changes["rank"] <= n) & ~(changes["previous_rank"] <= n), "feature"])
    left = sorted(changes.loc[(changes["previous_rank"] <= n) & ~(changes["rank"] <= n), "feature"])
    return entered, left


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
