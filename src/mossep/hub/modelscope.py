"""ModelScope through its public HTTP API, the routes its own client uses (modelscope/hub/api.py,
file_download.py):

- the file list, each file with `Size`, `Sha256` and `Revision`:
  `{endpoint}/api/v1/models/{model_id}/repo/files?Revision={rev}&Recursive=True`
  (JSON: {"Code": 200, "Data": {"Files": [{"Name", "Path", "Type", "Size", "Sha256", "Revision"}, ...]}});
- one file: `{endpoint}/api/v1/models/{model_id}/repo?Revision={rev}&FilePath={path}`.

The endpoint is MOSSEP_MODELSCOPE_ENDPOINT (a full URL), else https:// + MODELSCOPE_DOMAIN (the official
client's variable: a host name), else https://www.modelscope.cn. Files are stored as
`models/modelscope/ORG/NAME/REVISION/FILE`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .download import HubError, download, file_sha256, host_of
from .registry import ModelEntry

DEFAULT_ENDPOINT = "https://www.modelscope.cn"


def endpoint() -> str:
    if os.environ.get("MOSSEP_MODELSCOPE_ENDPOINT"):
        return os.environ["MOSSEP_MODELSCOPE_ENDPOINT"].rstrip("/")
    domain = os.environ.get("MODELSCOPE_DOMAIN", "").strip().rstrip("/")
    if domain:
        return domain if "://" in domain else f"https://{domain}"
    return DEFAULT_ENDPOINT


def page_url(entry: ModelEntry) -> str:
    return f"{endpoint()}/models/{entry.repo}/files"


class ModelScopeRepo:
    """One repository at one revision: list() its files, get() one of them into the cache."""

    def __init__(self, entry: ModelEntry, root: Path, timeout: float):
        import httpx2

        self.entry, self.endpoint = entry, endpoint()
        self.folder = root / "modelscope" / entry.repo / entry.revision
        self.client = httpx2.Client(timeout=httpx2.Timeout(timeout), follow_redirects=True,
                                    headers={"User-Agent": "mossep"})
        self.files: dict[str, dict[str, Any]] = {}
        self.commit = entry.revision

    def close(self) -> None:
        self.client.close()

    def list(self) -> list[str]:
        import httpx2

        url = (f"{self.endpoint}/api/v1/models/{self.entry.repo}/repo/files?"
               f"Revision={quote(self.entry.revision, safe='')}&Recursive=True")
        try:
            response = self.client.get(url)
        except httpx2.TimeoutException:
            raise HubError(f"no answer within {self.client.timeout.read:g} s", unreachable=True) from None
        except httpx2.TransportError as e:
            raise HubError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no connection'}",
                           unreachable=True) from None
        if response.status_code >= 400:
            raise HubError(f"{host_of(url)} answered HTTP {response.status_code} ({response.reason_phrase or 'error'}) "
                           f"for {self.entry.repo} at revision {self.entry.revision}")
        try:
            files = response.json()["Data"]["Files"]
            self.files = {f["Path"]: f for f in files if f.get("Type", "blob") != "tree"}
        except (ValueError, KeyError, TypeError):
            raise HubError(f"{host_of(url)} sent a file list that is not ModelScope's JSON") from None
        revisions = {str(f.get("Revision")) for f in self.files.values() if f.get("Revision")}
        if len(revisions) == 1:
            self.commit = revisions.pop()
        return list(self.files)

    def get(self, name: str, pinned: str | None = None) -> tuple[Path, dict[str, Any]]:
        meta = self.files[name]
        dest = self.folder / name
        url = (f"{self.endpoint}/api/v1/models/{self.entry.repo}/repo?"
               f"Revision={quote(self.entry.revision, safe='')}&FilePath={quote(name, safe='')}")
        size = int(meta["Size"]) if meta.get("Size") is not None else None
        if dest.is_file():  # finished by an earlier fetch that stopped at a later file
            digest = file_sha256(dest)
            if dest.stat().st_size == size and digest == (meta.get("Sha256") or digest).lower():
                return dest, {"size": size, "sha256": digest}
            dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = download(self.client, url, dest, name, size, meta.get("Sha256") or None, pinned)
        return dest, {"size": dest.stat().st_size, "sha256": digest}


Repo = ModelScopeRepo
