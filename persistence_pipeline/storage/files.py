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


STAGING_FOLDER = ".staging"


def save_checkpoint(
    directory: Path, checkpoint: dict[str, Any], run_key: str, staged_by: str | None = None
) -> tuple[str, str]:
    """Write the checkpoint; returns (path, sha256). The file name carries its hash. A staged run's
    file goes to `.staging/<dagster run id>/` and moves into place when the run is published, so a
    run that fails leaves the checkpoint folder as it was."""
    import skops.io as sio

    payload = canonical_skops(sio.dumps(checkpoint))
    digest = hashlib.sha256(payload).hexdigest()
    folder = directory if staged_by is None else directory / STAGING_FOLDER / staged_by
    path = folder / run_folder_name(run_key) / f"{digest[:16]}.skops"
    atomic_write(path, payload)
    return str(path), digest


def published_checkpoint_path(path: Path) -> Path:
    """Where a staged checkpoint (`DIR/.staging/RUN/RUN_KEY/HASH.skops`) goes when its run is
    published: `DIR/RUN_KEY/HASH.skops`. A checkpoint already in place stays where it is."""
    if len(path.parents) < 4 or path.parents[2].name != STAGING_FOLDER:
        return path
    return path.parents[3] / path.parent.name / path.name


def promote_checkpoint(path: Path) -> Path:
    """After the run's publication has committed: move its staged checkpoint into place and remove
    the staging folders it leaves empty."""
    final = published_checkpoint_path(path)
    if final == path or not path.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, final)
    if not any(path.parent.iterdir()):
        path.parent.rmdir()
    _remove_empty_staging(path.parents[1])
    return final


def remove_superseded_checkpoints(keep_path: str) -> None:
    """After the index row is committed: delete the run's other checkpoint files (its folder)."""
    for old in Path(keep_path).parent.glob("*.skops"):
        if old != Path(keep_path):
            old.unlink()


def load_checkpoint(path: str, sha256: str) -> dict[str, Any]:
    """The checkpoint at `path`, if its bytes match the index's sha256 and it holds only trusted types."""
    import skops.io as sio

    if not Path(path).exists():
        _recover_published_checkpoint(Path(path))
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


def checkpoint_problem(path: str, sha256: str) -> str | None:
    """What is wrong with an indexed checkpoint file: "missing", "sha256 differs", or None."""
    if not Path(path).exists():
        _recover_published_checkpoint(Path(path))
    if not Path(path).exists():
        return "missing"
    if hashlib.sha256(Path(path).read_bytes()).hexdigest() != sha256:
        return "sha256 differs"
    return None


def _recover_published_checkpoint(path: Path) -> None:
    """A run killed between its publication's commit and the move of its checkpoint left the file in
    staging: move it to the path the index names (the sha256 is checked on load)."""
    for staged in sorted(path.parent.parent.glob(f"{STAGING_FOLDER}/*/{path.parent.name}/{path.name}")):
        promote_checkpoint(staged)
        return


def stage_dashboard(
    directory: Path, png: bytes, run_key: str, staged_by: str | None, is_newest: bool
) -> list[Path]:
    """Write the run's PNG (and `latest.png` when the run is the newest stored: a backfill of an old
    range does not replace the newest dashboard) into the run's staging folder, before the run is
    published; `publish_dashboard` moves them into place after. Returns the staged files."""
    folder = directory / STAGING_FOLDER / (staged_by or "direct")
    staged = [folder / f"{run_folder_name(run_key)}.png", *([folder / "latest.png"] if is_newest else [])]
    for path in staged:
        atomic_write(path, png)
    return staged


def publish_dashboard(staged: list[Path]) -> str:
    """Move staged dashboard files into place (a rename: no new disk space); returns the run's PNG."""
    published = []
    for path in staged:
        final = path.parents[2] / path.name
        os.replace(path, final)
        published.append(final)
    _remove_empty_staging(staged[0].parent)
    return str(published[0])


def _remove_empty_staging(run_folder: Path) -> None:
    """Remove a run's staging folder and the staging folder itself once they are empty."""
    for folder in (run_folder, run_folder.parent):
        if folder.name != STAGING_FOLDER and folder.parent.name != STAGING_FOLDER:
            return
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
