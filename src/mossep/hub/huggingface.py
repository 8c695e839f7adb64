"""Hugging Face through huggingface_hub: its cache layout (under models/huggingface), its ETag and revision
handling, HF_ENDPOINT and HF_HUB_OFFLINE.

model_info(files_metadata=True) gives the commit a revision points to and each file's published hash (the
sha256 of an LFS file, the git blob id of another); every file is then taken at that exact commit.
huggingface_hub 2.4 names a blob after its ETag (an LFS file's sha256) and checks its size, but does not hash
the content, and it keeps no partial file, so a killed download starts again. So an LFS file (the weights)
is downloaded here, resumable and sha256-checked (download.download), straight to the blob name huggingface_hub
gives it; hf_hub_download then only links it into the commit's snapshot folder. Small files go through
hf_hub_download alone and are hashed (git blob id) afterwards; one that differs is removed from the cache.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .download import HubError, ProgressBar, check_hash, download, host_of
from .registry import ModelEntry

DEFAULT_ENDPOINT = "https://huggingface.co"


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or DEFAULT_ENDPOINT


def page_url(entry: ModelEntry) -> str:
    return f"{endpoint()}/{entry.repo}/tree/{entry.revision}"


def _hub_error(e: BaseException, timeout: float) -> HubError:
    """One line for what huggingface_hub or httpx2 raised (the cause of a LocalEntryNotFoundError is the
    network error behind it)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(e, LocalEntryNotFoundError) and e.__cause__ is not None:
        e = e.__cause__
    if isinstance(e, httpx2.TimeoutException):
        return HubError(f"no answer within {timeout:g} s", unreachable=True)
    if isinstance(e, (httpx2.TransportError, OfflineModeIsEnabled)):
        return HubError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no connection'}",
                        unreachable=True)
    if isinstance(e, HfHubHTTPError) and e.response is not None:
        r = e.response
        return HubError(f"{host_of(str(r.url))} answered HTTP {r.status_code} ({r.reason_phrase or 'error'}) "
                        f"for {r.url.path}")
    return HubError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'download failed'}")


class HuggingFaceRepo:
    """One repository at one revision: list() its files (resolving the commit), get() one into the cache."""

    def __init__(self, entry: ModelEntry, root: Path, timeout: float):
        self.entry, self.timeout, self.endpoint = entry, timeout, endpoint()
        self.cache = root / "huggingface"
        self.files: dict[str, Any] = {}
        self.commit = entry.revision
        self.folder: Path | None = None

    def close(self) -> None:
        pass

    def list(self) -> list[str]:
        from huggingface_hub import HfApi

        try:
            info = HfApi(endpoint=self.endpoint).model_info(self.entry.repo, revision=self.entry.revision,
                                                            files_metadata=True, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - every failure becomes one line (_hub_error)
            raise _hub_error(e, self.timeout) from None
        if not info.sha:
            raise HubError(f"{host_of(self.endpoint)} did not say which commit {self.entry.revision} is")
        self.commit = info.sha
        self.files = {s.rfilename: s for s in info.siblings or []}
        return list(self.files)

    def _prefill_blob(self, name: str, lfs: Any, pinned: str | None) -> Path | None:
        """Download an LFS file to huggingface_hub's blob name for it (its sha256), resumable and checked;
        the blob, or None when it was there already (get() then checks it)."""
        import httpx2
        from huggingface_hub import hf_hub_url
        from huggingface_hub.file_download import repo_folder_name
        from huggingface_hub.utils import build_hf_headers

        blob = self.cache / repo_folder_name(repo_id=self.entry.repo, repo_type="model") / "blobs" / lfs.sha256
        if blob.is_file():
            return None
        blob.parent.mkdir(parents=True, exist_ok=True)
        url = hf_hub_url(self.entry.repo, name, revision=self.commit, endpoint=self.endpoint)
        with httpx2.Client(timeout=httpx2.Timeout(self.timeout), follow_redirects=True,
                           headers=build_hf_headers()) as client:
            download(client, url, blob, name, lfs.size, lfs.sha256, pinned)
        return blob

    def get(self, name: str, pinned: str | None = None) -> tuple[Path, dict[str, Any]]:
        from huggingface_hub import hf_hub_download

        sibling = self.files[name]
        lfs = sibling.lfs
        checked = self._prefill_blob(name, lfs, pinned) if lfs is not None and lfs.sha256 else None
        try:
            path = Path(hf_hub_download(self.entry.repo, name, revision=self.commit, cache_dir=self.cache,
                                        endpoint=self.endpoint, etag_timeout=self.timeout, tqdm_class=ProgressBar))
        except Exception as e:  # noqa: BLE001
            raise _hub_error(e, self.timeout) from None
        try:  # unless it is the blob just checked, hash what hf_hub_download returns
            if checked is not None and path.resolve() == checked.resolve():
                digest = lfs.sha256
            else:
                digest = check_hash(path, name, host_of(self.endpoint), sha256=lfs.sha256 if lfs else None,
                                    git_sha1=None if lfs else sibling.blob_id, pinned=pinned)
        except HubError:
            blob = path.resolve()
            path.unlink(missing_ok=True)  # the snapshot's link (or the file itself without symlinks)
            blob.unlink(missing_ok=True)
            raise
        self.folder = path.parent
        return path, {"size": path.stat().st_size, "sha256": digest}


Repo = HuggingFaceRepo
