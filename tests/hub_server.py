"""A local Hugging Face Hub-compatible server for offline tests.

It answers the endpoints ``huggingface_hub`` (and the ``datasets`` library through it) uses to read model and
dataset repos — repo info, file trees, and resolve/download with the headers the client checks
(``X-Repo-Commit``, ``ETag``, ``X-Linked-Size``, error codes) — so that loading code runs through the real
client, pointed here with ``HF_ENDPOINT``.

Storage: content-addressed blobs, and per repo an ordered list of commits, each a full ``path -> blob`` map, with
branch refs. Repos are added from folders with :meth:`HubStore.add_repo`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Commit:
    sha: str
    files: dict[str, str]                   # path in repo -> blob sha256
    message: str = ""
    # The Hub's own format, which huggingface_hub parses strictly: 2026-01-31T12:00:00.000000Z
    date: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    commits: list[Commit] = field(default_factory=list)
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit sha


def _key(repo_type: str, repo_id: str) -> str:
    """Repos of each type live apart: models under their id, datasets under "datasets/<id>"."""
    return repo_id if repo_type == "model" else f"{repo_type}s/{repo_id}"


class HubStore:
    """Repos, commits and blobs kept under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()

    def _put_blob(self, data_path: Path) -> str:
        digest = hashlib.sha256(data_path.read_bytes()).hexdigest()
        target = self.blobs / digest
        if not target.exists():
            shutil.copyfile(data_path, target)
        return digest

    def add_repo(self, repo_id: str, folder: Path, *, repo_type: str = "model", private: bool = False,
                 message: str = "initial") -> str:
        """Create (or add a commit to) ``repo_id`` holding every file under ``folder``; returns the commit sha."""
        files = {p.relative_to(folder).as_posix(): self._put_blob(p)
                 for p in sorted(Path(folder).rglob("*")) if p.is_file()}
        key = _key(repo_type, repo_id)
        with self.lock:
            repo = self.repos.setdefault(key, Repo(repo_id, private=private))
            return self._commit(repo, files, message, branch="main")

    def _commit(self, repo: Repo, files: dict[str, str], message: str, branch: str) -> str:
        parent = repo.refs.get(branch, "")
        sha = hashlib.sha1(json.dumps([parent, sorted(files.items()), message]).encode()).hexdigest()
        repo.commits.append(Commit(sha, dict(files), message))
        repo.refs[branch] = sha
        return sha

    def resolve(self, key: str, revision: str) -> Commit | None:
        repo = self.repos.get(key)
        if repo is None:
            return None
        sha = repo.refs.get(revision, revision)
        return next((c for c in repo.commits if c.sha == sha), None)


class HubHandler(BaseHTTPRequestHandler):
    store: HubStore  # set on the subclass made by `serve`
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass

    # --- responses ----------------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              *, head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))  # for HEAD too: the size a GET would send
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, payload, *, head: bool = False) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"}, head=head)

    def _error(self, status: int, code: str, message: str, *, head: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                  "X-Error-Message": message}, head=head)

    # --- routing ------------------------------------------------------------------------------------------------

    _RESOLVE = re.compile(r"^/(?:(?P<type>models|datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/"
                          r"(?P<path>.+)$")
    _INFO = re.compile(r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+))?$")
    _TREE = re.compile(r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)"
                       r"(?:/(?P<path>.*))?$")

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, *, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if match := self._RESOLVE.match(path):
            key = _key((match["type"] or "models")[:-1], match["repo"])
            return self._resolve_file(key, match["rev"], match["path"], head=head)
        if match := self._TREE.match(path):
            key = _key(match["type"][:-1], match["repo"])
            return self._tree(key, match["rev"], match["path"] or "", head=head)
        if match := self._INFO.match(path):
            key = _key(match["type"][:-1], match["repo"])
            return self._repo_info(key, match["rev"] or "main", head=head)
        self._error(404, "NotFound", f"no route for {path}", head=head)

    def _commit_or_error(self, repo_id: str, revision: str, *, head: bool) -> Commit | None:
        if repo_id not in self.store.repos:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head=head)
            return None
        commit = self.store.resolve(repo_id, revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
        return commit

    def _resolve_file(self, repo_id: str, revision: str, path: str, *, head: bool) -> None:
        commit = self._commit_or_error(repo_id, revision, head=head)
        if commit is None:
            return
        blob = commit.files.get(path)
        if blob is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist at {revision}", head=head)
        data = (self.store.blobs / blob).read_bytes()
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{blob}"', "X-Linked-Size": str(len(data)),
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        status, body = HTTPStatus.OK, data
        if (range_header := self.headers.get("Range")) and (m := re.match(r"bytes=(\d+)-(\d*)", range_header)):
            start = int(m[1])
            end = int(m[2]) if m[2] else len(data) - 1
            status, body = HTTPStatus.PARTIAL_CONTENT, data[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(status, body, headers, head=head)

    def _repo_info(self, key: str, revision: str, *, head: bool) -> None:
        commit = self._commit_or_error(key, revision, head=head)
        if commit is None:
            return
        repo = self.store.repos[key]
        repo_id = repo.repo_id
        self._json(200, {
            "_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": commit.sha, "private": repo.private,
            "lastModified": commit.date, "tags": [], "downloads": 0, "likes": 0,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }, head=head)

    def _tree(self, repo_id: str, revision: str, folder: str, *, head: bool) -> None:
        commit = self._commit_or_error(repo_id, revision, head=head)
        if commit is None:
            return
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries, dirs = [], set()
        for path, blob in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest:
                dirs.add(prefix + rest.split("/", 1)[0])
                continue
            size = (self.store.blobs / blob).stat().st_size
            entries.append({"type": "file", "path": path, "size": size, "oid": blob})
        entries += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
        self._json(200, entries, head=head)


class HubServer:
    """A running server: ``endpoint`` for ``HF_ENDPOINT``, ``store`` to add repos."""

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        self.store = HubStore(root)
        handler = type("BoundHubHandler", (HubHandler,), {"store": self.store})
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
