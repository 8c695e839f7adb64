"""Downloading one file: resumable over HTTP Range into a temporary name, checked against its published hash
and renamed into place; plus the hashes, the progress bar and the one-line errors shared by both hubs."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import MossepError

CHUNK = 1 << 20
ATTEMPTS = 5  # resumes of one file within a run, each after a try that received data


class HubError(MossepError):
    """A hub could not deliver a file (unreachable, HTTP error, wrong hash); the fetch wraps it into one line
    that says where to get the files by hand."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def host_of(url: str) -> str:
    return urlsplit(url).netloc or url


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The id git gives a file's content (what a hub publishes for files that are not in LFS)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hash(path: Path, name: str, host: str, sha256: str | None = None, git_sha1: str | None = None,
               pinned: str | None = None) -> str:
    """The file's sha256, after checking it against what the hub publishes (sha256, or the git blob id of
    a file outside LFS) and against a hash pinned in the registry. HubError when one differs."""
    actual = file_sha256(path)
    for want, got, what in ((sha256, actual, f"the sha256 {host} publishes"),
                            (pinned, actual, "the sha256 mossep pins for it"),
                            (git_sha1, git_blob_sha1(path) if git_sha1 else None, f"the git blob id {host} publishes")):
        if want and want.lower() != got:
            raise HubError(f"{name} from {host} does not match {what} ({got[:12]}... instead of {want[:12]}...); "
                           "the download was removed")
    return actual


class ProgressBar:
    """A rich progress bar on stderr with the interface huggingface_hub's `tqdm_class` needs (created with
    keyword arguments, a context manager, `update(n)`). When stderr is not a terminal: one line per file."""

    def __init__(self, *, total: int | None = None, initial: int = 0, desc: str = "", **_: Any):
        from rich.console import Console
        from rich.filesize import decimal
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                                 disable=not console.is_terminal)
        name = desc.rpartition("/")[2]  # a file name, not its URL
        self.task = self.progress.add_task(name, total=total, completed=initial)
        if not console.is_terminal:
            size = f" ({decimal(total)})" if total else ""
            console.print(f"mossep: downloading {name}{size}", highlight=False, soft_wrap=True)
        self.progress.start()

    def update(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def close(self) -> None:
        self.progress.stop()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _raise_for_status(response: Any, name: str) -> None:
    if response.status_code >= 400:
        raise HubError(f"{host_of(str(response.url))} answered HTTP {response.status_code} "
                       f"({response.reason_phrase or 'error'}) for {name}")


def _start_of_range(response: Any) -> int | None:
    """The first byte of a 206 answer's Content-Range (`bytes START-END/TOTAL`), None if unreadable."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def download(client: Any, url: str, dest: Path, name: str, size: int | None, sha256: str | None,
             pinned: str | None = None) -> str:
    """Fetch `url` to `dest` through `dest.part`, continuing a `.part` that an earlier try left (HTTP Range);
    a connection that breaks after sending data is resumed (up to ATTEMPTS times). The finished file is
    checked against `size` and the hashes before it is renamed to `dest`; one that does not match is deleted.
    Returns the sha256. The caller holds the model's fetch lock (the .part name is fixed so a later run can
    continue it)."""
    import httpx2

    part = dest.with_name(dest.name + ".part")
    host = host_of(url)
    bar: ProgressBar | None = None
    resumes = 0
    try:
        while True:
            have = part.stat().st_size if part.exists() else 0
            if size is not None and have > size:
                part.unlink()
                have = 0
            if size is not None and have == size:
                break
            got = 0
            try:
                with client.stream("GET", url, headers={"Range": f"bytes={have}-"} if have else {}) as response:
                    _raise_for_status(response, name)
                    if have and (response.status_code != 206 or _start_of_range(response) != have):
                        have = 0  # the server sent the whole file: start over
                    if bar is None:
                        bar = ProgressBar(total=size, initial=have, desc=name)
                    else:
                        bar.progress.update(bar.task, completed=have)
                    with open(part, "ab" if have else "wb") as f:
                        for block in response.iter_bytes():
                            f.write(block)
                            got += len(block)
                            bar.update(len(block))
                if size is None or have + got >= size:
                    break
                if got == 0:
                    raise HubError(f"{host} ended the download of {name} early, at byte {have}")
            except (httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.ReadTimeout):
                if got == 0:
                    raise
            resumes += 1  # the connection broke after sending data: continue where it stopped
            if resumes > ATTEMPTS:
                raise HubError(f"{host} broke off the download of {name} {resumes} times")
    except httpx2.TimeoutException:
        raise HubError(f"no answer within {client.timeout.read:g} s", unreachable=True) from None
    except (httpx2.ConnectError, httpx2.NetworkError, httpx2.RemoteProtocolError) as e:
        raise HubError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'connection failed'}",
                       unreachable=True) from None
    finally:
        if bar is not None:
            bar.close()
    received = part.stat().st_size
    if size is not None and received != size:
        part.unlink()
        raise HubError(f"{name} from {host} has {received} bytes, not the {size} the hub lists; "
                       "the download was removed")
    try:
        digest = check_hash(part, name, host, sha256=sha256, pinned=pinned)
    except HubError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return digest
