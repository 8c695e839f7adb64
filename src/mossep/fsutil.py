"""Atomic file creation: write to a temporary name in the target folder, rename when complete."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import MossepError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_next_to(path: Path) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as e:
        raise MossepError(f"{path}: cannot write there ({e.strerror or e})") from None
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed to `path`, on error removed.

    With overwrite=False an existing `path` raises FileExistsError before anything is written.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(str(path))
    tmp_path = _temp_next_to(path)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


# Several files renamed into place one by one (atomic_paths) are not one atomic step: a process killed
# between two renames leaves part of the set. While it renames, a journal next to the first file records
# each file's identity (inode, size, mtime) and temporary name, so the next try recognises what it left.


def _journal(paths: list[Path]) -> Path:
    return paths[0].parent / f".{paths[0].name}.commit"


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _read_journal(paths: list[Path]) -> tuple[dict[Path, list[int]], list[Path]] | None:
    """(identity of each output, its temporary files) from the journal of an earlier commit of exactly `paths`;
    only names that atomic_paths would make count as temporary files."""
    journal = _journal(paths)
    names = {os.path.relpath(p, journal.parent): p for p in paths}
    try:
        data = json.loads(journal.read_text())
        if set(data) != set(names):
            return None
        found = {names[n]: list(v) for n, v in data.items()}
        temps = [p.parent / str(found[p][3]) for p in paths]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    ours = [t for t, p in zip(temps, paths) if t.parent == p.parent and t.name.startswith(f".{p.name}.")
            and t.name.endswith(".part")]
    return {p: v[:3] for p, v in found.items()}, ours


def interrupted_outputs(paths: Iterable[str | Path]) -> list[Path]:
    """The files among `paths` that an atomic_paths commit of this same set renamed into place before it was
    killed, unchanged since; empty when every path exists (a complete set is never taken for a leftover)."""
    paths = [Path(p) for p in paths]
    found = _read_journal(paths)
    if found is None or all(p.exists() for p in paths):
        return []
    with contextlib.suppress(OSError):
        return [p for p in paths if p.exists() and _identity(p) == found[0][p]]
    return []


def existing_outputs(paths: Iterable[str | Path]) -> list[Path]:
    """The `paths` that exist, except leftovers of an interrupted commit of this set (interrupted_outputs):
    the ones that writing the set without overwrite must not replace."""
    paths = [Path(p) for p in paths]
    left = interrupted_outputs(paths)
    return [p for p in paths if p.exists() and p not in left]


@contextlib.contextmanager
def atomic_paths(paths: Iterable[str | Path], overwrite: bool = True) -> Iterator[list[Path]]:
    """atomic_path for a set of files that belong together: yield one temporary path per file; on success all
    are renamed into place (in order), on error removed. A set left incomplete by a killed process is
    finished by the next call: its leftovers are replaced even with overwrite=False, which otherwise raises
    FileExistsError for the first existing path before anything is written."""
    paths = [Path(p) for p in paths]
    if not overwrite:
        clash = existing_outputs(paths)
        if clash:
            raise FileExistsError(str(clash[0]))
    earlier = _read_journal(paths)
    tmps: list[Path] = []
    try:
        for p in paths:
            tmps.append(_temp_next_to(p))
        yield tmps
        mode = 0o666 & ~_umask()
        for t in tmps:
            os.chmod(t, mode)
        journal = _journal(paths)
        record = {os.path.relpath(p, journal.parent): _identity(t) + [t.name] for p, t in zip(paths, tmps)}
        with atomic_path(journal) as tmp:
            tmp.write_text(json.dumps(record))
        for p, t in zip(paths, tmps):
            os.replace(t, p)
        journal.unlink()
        for t in earlier[1] if earlier else []:  # temporary files of a killed earlier try
            t.unlink(missing_ok=True)
    finally:
        for t in tmps:
            t.unlink(missing_ok=True)


def check_writable(folder: str | Path) -> None:
    """Prove that files can be created in an existing `folder` by creating and removing one; a MossepError
    naming the folder otherwise (checked before long work whose result goes there)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mossep-probe-", suffix=".part")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise MossepError(f"{folder}: output directory is not writable ({e.strerror or e})") from None


@contextlib.contextmanager
def removing_new_dirs_on_error(dirs: Iterable[str | Path]) -> Iterator[None]:
    """Folders among `dirs` (with their missing ancestors) that do not exist on entry are removed again, if
    they are still empty, when the block raises: a failed run leaves no empty folders behind."""
    new: set[Path] = set()
    for d in dirs:
        d = Path(d).absolute()
        while not d.exists() and d != d.parent:
            new.add(d)
            d = d.parent
    try:
        yield
    except BaseException:
        for d in sorted(new, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
