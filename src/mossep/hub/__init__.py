"""Pretrained models by name: `--model NAME` and `Separator("NAME")` both come through resolve().

A name (registry.REGISTRY, listed by `mossep models`) or a full hub id (`hf:ORG/NAME`, `modelscope:ORG/NAME`)
is fetched on first use into the cache (cache.models_root()), each file checked against the hash its hub
publishes, and then loaded from there with no network access at all. MOSSEP_OFFLINE=1 or HF_HUB_OFFLINE=1
forbid the network entirely. The folder is handed to mossep.checkpoints.load_checkpoint, whose strict,
weights_only loaders never execute anything from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MossepError
from . import cache
from .download import HubError, host_of
from .registry import BUNDLED, HUGGINGFACE, REGISTRY, ModelEntry, choose_files, is_bundled, lookup

__all__ = ["REGISTRY", "ModelEntry", "Resolved", "resolve", "fetch", "lookup", "is_bundled", "cached_record"]


@dataclass
class Resolved:
    entry: ModelEntry
    path: Path | None  # the local folder; None for a bundled model (weights/NAME.safetensors)
    note: str  # where it came from, for `mossep info`


def _backend(entry: ModelEntry):
    if entry.hub == HUGGINGFACE:
        from . import huggingface
        return huggingface
    from . import modelscope
    return modelscope


def _manual(entry: ModelEntry, files: tuple[str, ...] | list[str]) -> str:
    what = ", ".join(files) if files else "the checkpoint files"
    return f"download {what} from {_backend(entry).page_url(entry)} and pass --model PATH"


def cached_record(entry: ModelEntry) -> dict[str, Any] | None:
    """The record of `entry`'s finished fetch when all its files are in the cache (no network), else None."""
    return None if entry.hub == BUNDLED else cache.read_record(entry)


def fetch(entry: ModelEntry) -> dict[str, Any]:
    """The cache record of `entry` (its "path" is the folder to load), downloading what is missing first.
    One process at a time fetches a model; a second one waits and then finds it cached."""
    record = cached_record(entry)
    if record is not None:
        return record
    backend = _backend(entry)
    host = host_of(backend.endpoint())
    offline = cache.offline_reason()
    if offline:
        raise MossepError(f"{entry.name} is not in the cache ({cache.models_root()}) and {offline} forbids "
                          f"fetching it from {host}; {_manual(entry, entry.files)}")
    root = cache.models_root()
    files: tuple[str, ...] = entry.files
    try:
        root.mkdir(parents=True, exist_ok=True)
        with cache.fetch_lock(entry, root):
            record = cached_record(entry)
            if record is not None:
                return record
            repo = backend.Repo(entry, root, cache.timeout_seconds())
            try:
                listing = repo.list()
                where = f"{entry.hub_id}@{entry.revision}"
                files = entry.files or choose_files(listing, lambda n: repo.get(n)[0].read_text(errors="replace"),
                                                    where)
                missing = [f for f in files if f not in listing]
                if missing:
                    raise HubError(f"{entry.repo} at revision {entry.revision} has no {', '.join(missing)}")
                done = {f: repo.get(f, entry.sha256.get(f))[1] for f in files}
            finally:
                repo.close()
            return cache.write_record(entry, repo.folder, repo.commit, done, root)
    except HubError as e:
        what = f"reach {host} to fetch {entry.name}" if e.unreachable else f"fetch {entry.name} from {host}"
        raise MossepError(f"cannot {what} ({e}); {_manual(entry, files)}") from None
    except OSError as e:
        raise MossepError(f"{root}: cannot store {entry.name} there ({e.strerror or e})") from None


def resolve(spec: str | Path) -> Resolved | None:
    """What a model spec names, fetched if needed; None when it is an existing path (a path wins over a
    name) or not a name at all."""
    if Path(spec).exists():
        return None
    entry = lookup(str(spec))
    if entry is None:
        return None
    if entry.hub == BUNDLED:
        return Resolved(entry, None, f"the bundled model (name '{entry.name}')")
    record = fetch(entry)
    revision = record["commit"] if record["commit"] == entry.revision else f"{entry.revision} = {record['commit']}"
    return Resolved(entry, record["path"], f"fetched from {entry.hub_id}, revision {revision}")
