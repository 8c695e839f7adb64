"""Where fetched models live, and the record of each finished fetch.

Everything is under `cache_dir()/models`: `huggingface/` is huggingface_hub's own cache layout, `modelscope/`
holds ModelScope files as ORG/NAME/REVISION/FILE, `fetched/` one JSON record per finished fetch (the folder
to load, the revision it was resolved to, each file's size and sha256), and `locks/` the lock files that let
one process at a time fetch a model. A model counts as cached when its record exists and every file in it
has the recorded size: using it then needs no network at all.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from ..errors import MossepError
from ..fsutil import atomic_path, cache_dir
from .registry import ModelEntry

_TRUE = ("1", "true", "yes", "on")


def models_root() -> Path:
    return cache_dir() / "models"


def offline_reason() -> str | None:
    """The variable that forbids network access (MOSSEP_OFFLINE or HF_HUB_OFFLINE), or None."""
    for var in ("MOSSEP_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]}"
    return None


def timeout_seconds() -> float:
    """Seconds to wait for a hub to connect or send data (MOSSEP_HUB_TIMEOUT, default 30)."""
    text = os.environ.get("MOSSEP_HUB_TIMEOUT", "30")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise MossepError(f"MOSSEP_HUB_TIMEOUT={text}: must be a positive number of seconds")
    return value


def _key(entry: ModelEntry) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", f"{entry.hub}--{entry.repo}--{entry.revision}")


def record_path(entry: ModelEntry, root: Path | None = None) -> Path:
    return (root or models_root()) / "fetched" / f"{_key(entry)}.json"


def read_record(entry: ModelEntry, root: Path | None = None) -> dict[str, Any] | None:
    """The record of a finished fetch of `entry` whose files are all present with their sizes; else None."""
    root = root or models_root()
    try:
        record = json.loads(record_path(entry, root).read_text())
        folder = root / record["folder"]
        for name, meta in record["files"].items():
            if (folder / name).stat().st_size != int(meta["size"]):
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    record["path"] = folder
    return record


def write_record(entry: ModelEntry, folder: Path, commit: str, files: dict[str, dict[str, Any]],
                 root: Path | None = None) -> dict[str, Any]:
    root = root or models_root()
    record = {"name": entry.name, "hub": entry.hub, "repo": entry.repo, "revision": entry.revision,
              "commit": commit, "folder": folder.relative_to(root).as_posix(), "files": files}
    path = record_path(entry, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return {**record, "path": folder}


@contextlib.contextmanager
def fetch_lock(entry: ModelEntry, root: Path | None = None) -> Iterator[None]:
    """Hold the lock of `entry`'s fetch; says on stderr when another process holds it and this one waits."""
    from filelock import FileLock, Timeout

    path = (root or models_root()) / "locks" / f"{_key(entry)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"mossep: waiting for another process that is fetching {entry.name}", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
