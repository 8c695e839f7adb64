"""Atomic file creation: write to a temporary name in the target folder, rename when complete.

Also what keeps several processes and killed runs from harming each other's files: temporary files are held
under an OS lock (flock) while in use, so a later run can tell a dead run's leftovers (removed by
remove_stale_temps) from a live one's; `claimed` gives one process at a time a piece of work; and
check_output_file / os_error_text turn file-system limits into one-line causes ("disk full", "name too long").
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from .errors import MossepError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


NAME_MAX = 255  # bytes in one file name, where the file system does not say
TEMP_NAME_ROOM = 40  # a temporary name's prefix keeps at most NAME_MAX - this many bytes of the target's name
CLAIM_PREFIX = ".mossep-claim-"
STALE_SECONDS = 1.0  # a temporary file younger than this is never taken for a leftover (see remove_stale_temps)


def os_error_text(e: OSError) -> str:
    """The cause of a failed file operation in words a user acts on: "disk full (...)", "name too long", ..."""
    if e.errno == errno.ENOSPC:
        return "disk full (no space left on device)"
    if e.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if e.errno == errno.ENAMETOOLONG:
        return "name too long"
    if e.errno == errno.EROFS:
        return "read-only file system"
    return e.strerror or str(e)


def disk_full(folder: str | Path) -> bool:
    """Whether the file system holding `folder` has (next to) no room left: what a library that reports only
    "System error" most likely ran into."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 16)


def _name_max(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def check_output_file(path: str | Path) -> None:
    """A MossepError naming the cause unless `path` can become a file: not an existing folder, and a name the
    file system allows. Checked for every output before long work whose result goes there."""
    path = Path(path)
    if len(os.fsencode(path.name)) > _name_max(path.parent):
        raise MossepError(f"{path}: name too long ({len(os.fsencode(path.name))} bytes; the file system allows "
                          f"{_name_max(path.parent)})")
    if path.is_dir():
        raise MossepError(f"{path}: is a directory, so the output cannot be written there")
    if path.exists() and not path.is_file():
        raise MossepError(f"{path}: exists and is not a regular file")


def check_new_file(path: str | Path, overwrite: bool) -> None:
    """Fail early (before long work whose result goes to `path`) unless it can be written: check_output_file,
    no existing file without overwrite, an existing folder that accepts files."""
    path = Path(path)
    check_output_file(path)
    if path.exists() and not overwrite:
        raise MossepError(f"{path}: already exists (use --overwrite to replace it)")
    if not path.parent.is_dir():
        raise MossepError(f"{path}: folder {path.parent} does not exist")
    check_writable(path.parent)


def _temp_prefix(path: Path) -> str:
    """Prefix of the temporary names next to `path`: `.{name}.`, the name shortened so that the temporary
    name fits where the final one does."""
    name = path.name
    while len(os.fsencode(name)) > NAME_MAX - TEMP_NAME_ROOM:
        name = name[:-1]
    return f".{name}."


def _temp_next_to(path: Path) -> tuple[Path, int]:
    """A new temporary file next to `path` and an open descriptor holding an exclusive flock on it: the caller
    keeps it open until the file is renamed or removed (_release). A lock dies with its process, so a .part
    file that nobody holds is a killed run's leftover (remove_stale_temps)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".part")
    except OSError as e:
        raise MossepError(f"{path}: cannot write there ({os_error_text(e)})") from None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return Path(tmp), fd


def _release(tmp: Path, fd: int) -> None:
    """Remove a temporary file of this process (if it was not renamed) and drop its lock."""
    tmp.unlink(missing_ok=True)
    os.close(fd)


def remove_stale_temps(folder: str | Path, names: Iterable[str] = ()) -> list[Path]:
    """Remove what killed runs left in `folder`: `.mossep-*.part` files, claim files (see claimed), and the
    temporary files of the outputs `names`, that no live process holds (see _temp_next_to) and that are older
    than STALE_SECONDS. Returns the removed paths."""
    folder = Path(folder)
    patterns = [".mossep-*.part", f"{CLAIM_PREFIX}*"] + [glob.escape(_temp_prefix(folder / n)) + "*.part"
                                                          for n in names]
    removed = []
    now = time.time()
    for p in sorted({p for pat in patterns for p in folder.glob(pat)}):
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if now - st.st_mtime < STALE_SECONDS or not os.path.samestat(st, os.lstat(p)):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(p)
            removed.append(p)
        except OSError:  # held by a live process, or gone meanwhile
            continue
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def claimed(folder: str | Path, key: str) -> Iterator[bool]:
    """Claim the piece of work `key` among processes sharing `folder` (e.g. an output set, for concurrent batch
    runs): yields True while this process holds the claim, False (holding nothing) when another live process
    does. The claim is an flock on a hidden file in `folder`, so it dies with its process and a killed run
    never blocks a later one; the file is removed on release."""
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    path = Path(folder) / f"{CLAIM_PREFIX}{digest}"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise MossepError(f"{folder}: cannot write there ({os_error_text(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            yield False
            return
        try:  # the previous holder may have removed the file between our open and flock: then lock the new one
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed to `path`, on error removed.

    With overwrite=False an existing `path` raises FileExistsError before anything is written. A failure to
    write (a full disk, ...) in the block or in the rename is a MossepError naming `path` and the cause.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(str(path))
    tmp_path, fd = _temp_next_to(path)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as e:
        raise MossepError(f"{path}: cannot write ({os_error_text(e)})") from None
    except RuntimeError:  # libraries that write files themselves (torch.save) say only that a write failed
        if disk_full(path.parent):
            raise MossepError(f"{path}: cannot write (disk full (no space left on device))") from None
        raise
    finally:
        _release(tmp_path, fd)


# Several files renamed into place one by one (atomic_paths) are not one atomic step: a process killed
# between two renames leaves part of the set. While it renames, a journal next to the first file records
# each file's identity (inode, size, mtime) and temporary name, so the next try recognises what it left.


def _journal(paths: list[Path]) -> Path:
    return paths[0].parent / f"{_temp_prefix(paths[0])}commit"


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
    ours = [t for t, p in zip(temps, paths) if t.parent == p.parent and t.name.startswith(_temp_prefix(p))
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
    for p in paths:  # every target is checked before the first rename: all outputs or none
        check_output_file(p)
    earlier = _read_journal(paths)
    held: list[tuple[Path, int]] = []
    tmps: list[Path] = []
    try:
        for p in paths:
            held.append(_temp_next_to(p))
            tmps.append(held[-1][0])
        yield tmps
        mode = 0o666 & ~_umask()
        for t in tmps:
            os.chmod(t, mode)
        journal = _journal(paths)
        record = {os.path.relpath(p, journal.parent): _identity(t) + [t.name] for p, t in zip(paths, tmps)}
        with atomic_path(journal) as tmp:
            tmp.write_text(json.dumps(record))
        for p in paths:  # once more, just before the first rename (a folder may have appeared meanwhile)
            check_output_file(p)
        for p, t in zip(paths, tmps):
            os.replace(t, p)
        journal.unlink()
        for t in earlier[1] if earlier else []:  # temporary files of a killed earlier try
            t.unlink(missing_ok=True)
    finally:
        for t, fd in held:
            _release(t, fd)


def cache_dir() -> Path:
    """mossep's cache folder: $MOSSEP_CACHE, else $XDG_CACHE_HOME/mossep, else ~/.cache/mossep."""
    if os.environ.get("MOSSEP_CACHE"):
        return Path(os.environ["MOSSEP_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mossep"


def check_writable(folder: str | Path) -> None:
    """Prove that files can be created in an existing `folder` by creating and removing one; a MossepError
    naming the folder otherwise (checked before long work whose result goes there)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mossep-probe-", suffix=".part")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise MossepError(f"{folder}: output directory is not writable ({os_error_text(e)})") from None


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
