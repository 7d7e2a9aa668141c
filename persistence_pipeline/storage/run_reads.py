"""What a run reads once: the stages of a run execute one after another in one process (the
in-process executor), and several need the same rows (the range's trades, the runs as of its end)
or the same value derived from them (the training set). A staged run's reads are kept here, keyed
by the run, and stay valid until the run writes one of the tables they came from
(storage/database.py counts the writes). One run at a time is kept: a new run replaces the last.
A stage invoked outside a run (no staging) reads afresh every time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from persistence_pipeline.storage.database import Database, write_counts

Value = TypeVar("Value")

_lock = threading.Lock()
_run: str | None = None
_kept: dict[Hashable, tuple[tuple[int, ...], Any]] = {}


def read_once(db: Database, key: Hashable, tables: Sequence[str], read: Callable[[], Value]) -> Value:
    """`read()`, or what it returned earlier in this run if the run has not written `tables` since."""
    run = db.staged_by
    if run is None:
        return read()
    global _run
    with _lock:
        if _run != run:
            _run = run
            _kept.clear()
        held = _kept.get((db.path, key))
    counts = write_counts(run, tables)
    if held is not None and held[0] == counts:
        return held[1]
    value = read()
    with _lock:
        if _run == run:
            _kept[(db.path, key)] = (counts, value)
    return value


def forget(run: str) -> None:
    """Drop what `run` read (it has published or failed)."""
    global _run
    with _lock:
        if _run == run:
            _run = None
            _kept.clear()
