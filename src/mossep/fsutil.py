"""Atomic file creation: write to a temporary name in the target folder, rename when complete."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import MossepError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed to `path`, on error removed.

    With overwrite=False an existing `path` raises FileExistsError before anything is written.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(str(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as e:
        raise MossepError(f"{path}: cannot write there ({e.strerror or e})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


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
