"""Files beside the warehouse: skops model checkpoints (content-addressed, loaded only through
skops with an explicit trusted list after a sha256 check) and dashboard PNGs. Every file is written
atomically: a reader sees the old bytes or the new ones, never a torn file."""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path
from typing import Any

# The only types a checkpoint may hold beyond skops' defaults: HistGradientBoosting's tree nodes and
# the clip of standardized features (core/model.py).
TRUSTED_CHECKPOINT_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", "numpy.clip"]


def atomic_write(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` through a temporary file in the same folder and one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(payload)
    os.replace(partial, path)


def run_folder_name(run_key: str) -> str:
    """A run key as one path component (`2021-01-04..2021-06-30/ridge` -> `2021-01-04..2021-06-30_ridge`)."""
    return run_key.replace("/", "_")


def canonical_skops(payload: bytes) -> bytes:
    """The same skops archive with deterministic bytes, so one model gives one sha256.

    skops names its array files and `__id__` memo keys after Python object ids and stamps every
    zip member with the current time; both change from process to process. We renumber the ids in
    order of first appearance in schema.json and give every member a fixed timestamp.
    """
    source = zipfile.ZipFile(io.BytesIO(payload))
    schema = source.read("schema.json").decode("utf-8")
    ids: dict[str, str] = {}
    for match in re.finditer(r'"__id__": (\d+)|"file": "(\d+)\.\w+"', schema):
        ids.setdefault(match.group(1) or match.group(2), str(len(ids) + 1))
    schema = re.sub(r'("__id__": )(\d+)', lambda m: m.group(1) + ids[m.group(2)], schema)
    schema = re.sub(r'("file": ")(\d+)(\.\w+")', lambda m: m.group(1) + ids[m.group(2)] + m.group(3), schema)
    members = {"schema.json": schema.encode("utf-8")}
    for info in source.infolist():
        if info.filename != "schema.json":
            stem, _, suffix = info.filename.partition(".")
            members[f"{ids[stem]}.{suffix}"] = source.read(info)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            target.writestr(info, members[name])
    return out.getvalue()


def save_checkpoint(directory: Path, checkpoint: dict[str, Any], run_key: str) -> tuple[str, str]:
    """Write the checkpoint; returns (path, sha256). The file name carries its hash, so a run that
    fails later never overwrites the file an existing index row points to."""
    import skops.io as sio

    payload = canonical_skops(sio.dumps(checkpoint))
    digest = hashlib.sha256(payload).hexdigest()
    path = directory / run_folder_name(run_key) / f"{digest[:16]}.skops"
    atomic_write(path, payload)
    return str(path), digest


def remove_superseded_checkpoints(directory: Path, run_key: str, keep_path: str) -> None:
    """After the index row is committed: delete the run's older checkpoint files."""
    for old in (directory / run_folder_name(run_key)).glob("*.skops"):
        if old != Path(keep_path):
            old.unlink()


def load_checkpoint(path: str, sha256: str) -> dict[str, Any]:
    """The checkpoint at `path`, if its bytes match the index's sha256 and it holds only trusted types."""
    import skops.io as sio

    payload = Path(path).read_bytes()
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise ValueError(
            f"checkpoint {path} does not match the sha256 in the checkpoints index: refusing to load it"
        )
    untrusted = [t for t in sio.get_untrusted_types(data=payload) if t not in TRUSTED_CHECKPOINT_TYPES]
    if untrusted:
        raise ValueError(f"checkpoint {path} contains types that are not trusted: {untrusted}")
    loaded: dict[str, Any] = sio.loads(payload, trusted=TRUSTED_CHECKPOINT_TYPES)
    return loaded


def save_dashboard(directory: Path, png: bytes, run_key: str, is_newest: bool) -> str:
    """Write the run's PNG; also `latest.png` when the run is the newest stored (a backfill of an
    old range does not replace the newest dashboard)."""
    path = directory / f"{run_folder_name(run_key)}.png"
    atomic_write(path, png)
    if is_newest:
        atomic_write(directory / "latest.png", png)
    return str(path)
