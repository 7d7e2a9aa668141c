"""One run at a time on a warehouse: an exclusive lock on `<warehouse>.runlock`, taken by a Dagster
run's first stage and released when the run publishes (or when its process ends: the operating
system drops the lock of a killed process).

DuckDB's own lock is per connection, so two runs' stages would interleave, and each run would see
some of the other's results and not others. Holding the warehouse for a whole run makes every run
read one published state, the one it is then recorded against (storage/staleness.py)."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path


class RunLockTimeout(RuntimeError):
    """Another run held the warehouse longer than the run was willing to wait."""


# the lock this process holds, per warehouse file: (Dagster run id, file descriptor). In-process runs
# of one process are sequential, so a lock still held for another run of this process is left over
# from a run that failed before publishing, and is handed over.
_held: dict[str, tuple[str, int]] = {}


def _lock_path(warehouse: str) -> str:
    return str(Path(warehouse).resolve()) + ".runlock"


def hold_for_run(warehouse: str, run_id: str, wait_seconds: float, note: Callable[[str], None]) -> None:
    """Hold the warehouse for the Dagster run `run_id` (a no-op when it already does), waiting up to
    `wait_seconds` for the run that holds it, and saying every 30 s which run that is."""
    path = _lock_path(warehouse)
    held = _held.get(path)
    if held is not None and held[0] == run_id:
        return
    if held is not None:
        release(warehouse, held[0])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    next_note = start
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = Path(path).read_text(errors="replace").strip() or "another run"
            waited = time.monotonic() - start
            if waited > wait_seconds:
                os.close(descriptor)
                raise RunLockTimeout(
                    f"the warehouse {warehouse} is held by {holder}; waited {waited:.0f} s "
                    f"(warehouse.run_wait_seconds = {wait_seconds:.0f})"
                ) from None
            if time.monotonic() >= next_note:
                note(f"waiting for {holder} to finish with the warehouse {warehouse} ({waited:.0f} s so far)")
                next_note += 30
            time.sleep(0.2)
    since = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"Dagster run {run_id} (pid {os.getpid()}, since {since})".encode(), 0)
    _held[path] = (run_id, descriptor)


def release(warehouse: str, run_id: str) -> None:
    """Let the next run have the warehouse (a no-op unless this process holds it for `run_id`)."""
    path = _lock_path(warehouse)
    held = _held.get(path)
    if held is None or held[0] != run_id:
        return
    del _held[path]
    fcntl.flock(held[1], fcntl.LOCK_UN)
    os.close(held[1])
