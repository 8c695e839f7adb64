"""A local imitation of the Hugging Face and ModelScope hubs for the download tests: a real HTTP server on
127.0.0.1 in a thread, serving the URL layouts mossep uses, with faults to switch on per file.

Hugging Face: GET /api/models/{repo}/revision/{rev}?blobs=true (model_info: commit and per-file hashes) and
HEAD/GET /{repo}/resolve/{rev}/{file} with the headers huggingface_hub reads (X-Repo-Commit, ETag,
X-Linked-Etag and X-Linked-Size for LFS files, Content-Length) and Range support.
ModelScope: GET /api/v1/models/{repo}/repo/files?Revision=..&Recursive=True (JSON list with Sha256) and
GET /api/v1/models/{repo}/repo?Revision=..&FilePath=.. with Range support.

Faults (hub.fault(file_or_repo, mode)): "404", "500", "hang" (never answers), "cut" (the first full GET
sends half the body, then closes), "corrupt" (content differs from the published hash).
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".bin", ".pt", ".ckpt", ".safetensors", ".pth")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self):
        self.hf: dict[str, dict] = {}  # repo -> {"commit", "branch", "files": {name: bytes}}
        self.ms: dict[str, dict] = {}  # repo -> {"revision", "commit", "files"}
        self.faults: dict[str, str] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path?query, Range header)
        self.gate: threading.Event | None = None  # when set up, file bodies wait until it is set
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.handle(self, head=True)

            def do_GET(self):
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # setup
    def add_hf(self, repo: str, files: dict[str, bytes], commit: str | None = None, branch: str = "main"):
        commit = commit or hashlib.sha1(repo.encode()).hexdigest()
        self.hf[repo] = {"commit": commit, "branch": branch, "files": files}

    def add_ms(self, repo: str, files: dict[str, bytes], revision: str = "master"):
        self.ms[repo] = {"revision": revision, "commit": hashlib.sha1(repo.encode()).hexdigest(), "files": files}

    def fault(self, target: str, mode: str):
        self.faults[target] = mode

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()

    def count(self, needle: str = "") -> int:
        return sum(needle in path for _, path, _ in self.requests)

    # serving
    def _fault(self, repo: str, name: str | None) -> str | None:
        return (self.faults.get(f"{repo}/{name}") if name else None) or self.faults.get(repo)

    def handle(self, h: BaseHTTPRequestHandler, head: bool):
        url = urlsplit(h.path)
        path, query = unquote(url.path), parse_qs(url.query)
        with self.lock:
            self.requests.append((h.command, h.path, h.headers.get("Range")))
        parts = path.strip("/").split("/")
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
                return self._hf_info(h, "/".join(parts[2:4]), "/".join(parts[5:]))
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._hf_file(h, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), head)
            if parts[:3] == ["api", "v1", "models"] and parts[5:] == ["repo", "files"]:
                return self._ms_list(h, "/".join(parts[3:5]), query)
            if parts[:3] == ["api", "v1", "models"] and parts[5:] == ["repo"]:
                return self._ms_file(h, "/".join(parts[3:5]), query, head)
        except (BrokenPipeError, ConnectionResetError):
            return
        self._send(h, 404, b"not found", head)

    def _send(self, h, status: int, body: bytes, head: bool = False, headers: dict | None = None):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _common_fault(self, h, mode: str | None, head: bool) -> bool:
        if mode == "404":
            self._send(h, 404, b'{"error": "not found"}', head)
        elif mode == "500":
            self._send(h, 500, b'{"error": "internal"}', head)
        elif mode == "hang":
            self.stop_event.wait(60)
        else:
            return False
        return True

    def _hf_info(self, h, repo: str, rev: str):
        r = self.hf.get(repo)
        if self._common_fault(h, self.faults.get(repo), False):
            return
        if r is None or rev not in (r["commit"], r["branch"]):
            return self._send(h, 404, b'{"error": "Repository not found"}', headers={"X-Error-Code": "RepoNotFound"})
        siblings = []
        for name, data in r["files"].items():
            s = {"rfilename": name, "size": len(data), "blobId": git_sha1(data)}
            if name.endswith(LFS_SUFFIXES):
                s["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
            siblings.append(s)
        body = json.dumps({"id": repo, "modelId": repo, "sha": r["commit"], "siblings": siblings}).encode()
        self._send(h, 200, body, headers={"Content-Type": "application/json"})

    def _hf_file(self, h, repo: str, rev: str, name: str, head: bool):
        r = self.hf.get(repo)
        if self._common_fault(h, self._fault(repo, name), head):
            return
        if r is None or rev not in (r["commit"], r["branch"]) or name not in r["files"]:
            return self._send(h, 404, b"Entry not found", head, {"X-Error-Code": "EntryNotFound"})
        data = r["files"][name]
        headers = {"X-Repo-Commit": r["commit"], "Accept-Ranges": "bytes"}
        if name.endswith(LFS_SUFFIXES):
            sha = hashlib.sha256(data).hexdigest()
            headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))})
        else:
            headers["ETag"] = f'"{git_sha1(data)}"'
        self._body(h, f"{repo}/{name}", data, head, headers)

    def _ms_list(self, h, repo: str, query: dict):
        r = self.ms.get(repo)
        if self._common_fault(h, self.faults.get(repo), False):
            return
        if r is None or query.get("Revision", [None])[0] != r["revision"] or query.get("Recursive") != ["True"]:
            return self._send(h, 404, b'{"Code": 10010205001, "Message": "not found"}')
        files = [{"Name": n, "Path": n, "Type": "blob", "Size": len(d), "Sha256": hashlib.sha256(d).hexdigest(),
                  "Revision": r["commit"]} for n, d in r["files"].items()]
        body = json.dumps({"Code": 200, "Data": {"Files": files}, "Success": True}).encode()
        self._send(h, 200, body, headers={"Content-Type": "application/json"})

    def _ms_file(self, h, repo: str, query: dict, head: bool):
        r = self.ms.get(repo)
        name = query.get("FilePath", [""])[0]
        if self._common_fault(h, self._fault(repo, name), head):
            return
        if r is None or query.get("Revision", [None])[0] != r["revision"] or name not in r["files"]:
            return self._send(h, 404, b'{"Code": 10010205001}', head)
        self._body(h, f"{repo}/{name}", r["files"][name], head, {"Accept-Ranges": "bytes"})

    def _body(self, h, key: str, data: bytes, head: bool, headers: dict):
        mode = self.faults.get(key)
        if mode == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start, status = 0, 200
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start, status = int(rng[6:-1]), 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if head:
            return
        if mode == "cut" and start == 0:
            del self.faults[key]  # only the first try is cut
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if self.gate is not None:
            self.gate.wait(60)
        h.wfile.write(body)
