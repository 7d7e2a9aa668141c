"""Groups of strongly correlated features, so that a feature whose twin took the credit is not read
as useless.

Spearman rank correlation between features over the run's training trades; distance 1 - |rho|;
average-linkage hierarchical clustering cut at distance 1 - threshold (default |rho| >= 0.7 on
average within a group). Group ids are 1..G in order of each group's first feature name; a feature
with no strong partner is a group of one. A group's importance is the sum of its members' mean |SHAP|.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from persistence_pipeline.core.metrics import average_ranks

DEFAULT_THRESHOLD = 0.7


def spearman_matrix(X: np.ndarray) -> np.ndarray:
    """Spearman correlations between the columns of X (a constant column correlates 0 with all)."""
    ranks = average_ranks(X)
    ranks = ranks - ranks.mean(axis=0)
    norms = np.sqrt((ranks**2).sum(axis=0))
    safe = np.where(norms > 0, norms, 1.0)
    corr = (ranks.T @ ranks) / np.outer(safe, safe)
    corr[norms == 0, :] = 0.0
    corr[:, norms == 0] = 0.0
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def correlated_groups(
    X: np.ndarray, features: list[str], threshold: float = DEFAULT_THRESHOLD
) -> pd.DataFrame:
    """feature, group_id, group_size, max_abs_corr (to another member; NaN alone)."""
    n = len(features)
    if n == 1:
        return pd.DataFrame(
            {"feature": features, "group_id": [1], "group_size": [1], "max_abs_corr": [np.nan]}
        )
    corr = spearman_matrix(X)
    distance = 1.0 - np.abs(corr)
    np.fill_diagonal(distance, 0.0)
    labels = fcluster(
        linkage(squareform(distance, checks=False), method="average"), t=1.0 - threshold, criterion="distance"
    )
    first_name = {
        label: min(f for f, group in zip(features, labels, strict=True) if group == label)
        for label in set(labels)
    }
    renumber = {label: i + 1 for i, label in enumerate(sorted(first_name, key=first_name.__getitem__))}
    group = np.array([renumber[label] for label in labels])
    sizes = pd.Series(group).map(pd.Series(group).value_counts()).to_numpy()
    partner = np.where(group[:, None] == group[None, :], np.abs(corr), np.nan)
    np.fill_diagonal(partner, np.nan)
    with np.errstate(all="ignore"):
        best = np.where(sizes > 1, np.nanmax(np.where(np.isnan(partner), -np.inf, partner), axis=1), np.nan)
    return pd.DataFrame({"feature": features, "group_id": group, "group_size": sizes, "max_abs_corr": best})
