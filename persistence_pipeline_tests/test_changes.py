"""What changed since the last retrain: the top-n flips, read from the warehouse's nullable integer
ranks, and judged against the bootstrap spread of the importances."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from persistence_pipeline.core.changes import material_top_changes, rank_changes, top_set_change

pytestmark = pytest.mark.core


def history(ranks: dict[str, int], shap: dict[str, float], spread: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": list(ranks),
            "rank": list(ranks.values()),
            "shap_mean_abs": [shap[f] for f in ranks],
            "shap_mean_abs_std": spread,
        }
    )


def as_stored(changes: pd.DataFrame) -> pd.DataFrame:
    """The changes as DuckDB hands them back: ranks are nullable Int32, missing values <NA>."""
    with duckdb.connect() as con:
        con.register("changes", changes)
        return con.execute(
            "SELECT feature, CAST(rank AS INTEGER) AS rank, CAST(previous_rank AS INTEGER) AS previous_rank"
            " FROM changes"
        ).df()


def test_a_whole_new_top_is_seen_through_nullable_ranks():
    """Issue 10 fact: fade_d, rev_b, mom_a -> momentum_20, momentum_60, strategy_confidence gave ([], [])."""
    before = history({"fade_d": 1, "rev_b": 2, "mom_a": 3}, {"fade_d": 3, "rev_b": 2, "mom_a": 1}, 0.1)
    after = history(
        {"momentum_20": 1, "momentum_60": 2, "strategy_confidence": 3},
        {"momentum_20": 3, "momentum_60": 2, "strategy_confidence": 1},
        0.1,
    )
    stored = as_stored(rank_changes(before, after, 3))
    assert str(stored["rank"].dtype) == "Int32" and stored["previous_rank"].isna().sum() == 3
    assert top_set_change(stored, 3) == (
        ["momentum_20", "momentum_60", "strategy_confidence"],
        ["fade_d", "mom_a", "rev_b"],
    )


@pytest.mark.parametrize("spread, material", [(0.5, False), (0.01, True)])
def test_a_flip_warns_only_beyond_the_bootstrap_spread(spread, material):
    names = ["a", "b", "c", "d"]
    before = history(
        dict(zip(names, [1, 2, 3, 4], strict=True)), dict(zip(names, [4, 3, 2.0, 1.9], strict=True)), spread
    )
    after = history(
        dict(zip(names, [1, 2, 4, 3], strict=True)), dict(zip(names, [4, 3, 1.9, 2.1], strict=True)), spread
    )
    flips = material_top_changes(rank_changes(before, after, 3), after, 3)
    assert flips[["entered", "left"]].values.tolist() == [["d", "c"]]
    assert flips["gap"].iloc[0] == pytest.approx(0.2)
    assert flips["spread"].iloc[0] == pytest.approx(np.sqrt(2) * spread)
    assert bool(flips["material"].iloc[0]) is material


def test_a_feature_gone_from_the_run_is_a_material_flip():
    before = history({"a": 1, "b": 2, "gone": 3}, {"a": 3, "b": 2, "gone": 1}, 0.5)
    after = history({"a": 1, "b": 2, "new": 3}, {"a": 3, "b": 2, "new": 1}, 0.5)
    flips = material_top_changes(rank_changes(before, after, 3), after, 3)
    assert flips.to_dict("records")[0]["left"] == "gone" and bool(flips["material"].iloc[0])
