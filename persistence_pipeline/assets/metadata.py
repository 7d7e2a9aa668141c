"""Small helpers shared by the stage modules: frames into Dagster metadata, stage timings into the log."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pandas as pd


def markdown_table(frame: pd.DataFrame, limit: int = 20, what: str = "rows") -> dg.MetadataValue:
    """The first `limit` rows as a markdown table, saying how many are hidden."""
    shown = frame.head(limit).to_markdown(index=False, floatfmt=".4g")
    hidden = len(frame) - min(len(frame), limit)
    return dg.MetadataValue.md(shown + (f"\n\n{hidden} more {what} not shown." if hidden else ""))


def finite_or_none(value: float) -> float | None:
    """Dagster float metadata cannot be NaN; NaN becomes None (shown as empty)."""
    return None if pd.isna(value) else float(value)


@contextmanager
def timed(log, what: str) -> Iterator[None]:
    """Log how long a stage of an asset took (shown in the run's log in the UI)."""
    start = time.perf_counter()
    yield
    log.info(f"{what}: {time.perf_counter() - start:.2f} s")
