"""A local Hugging Face Hub-compatible server for offline tests.

It answers the endpoints ``huggingface_hub`` (and the ``datasets`` library through it) uses, so that loading and
publishing code runs through the real client, pointed here with ``HF_ENDPOINT``:

- reading: repo info, file trees (recursive too), and resolve/download with the headers the client checks
  (``X-Repo-Commit``, ``ETag``, ``X-Linked-Size``, error codes), at a branch or a commit;
- writing: ``whoami-v2``, repo creation (public or private), the README metadata check (always answered with no
  errors: this server does not validate model cards), branch creation,
  pre-upload (every file is answered "regular", so contents travel inline in the commit) and the NDJSON commit;
- authorisation: tokens map to user names (:meth:`HubStore.add_token`). A request carrying an unknown token is
  refused with 401 whatever it asks for; writing needs the namespace's own token; a private repo answers 401
  "Repository not found" to anyone else, as the Hub does, so its existence does not leak.

For failure tests, :meth:`HubStore.drop_next` makes the next request to a route read its body and then close the
connection without answering, the way a network that breaks mid-push looks to the client.

Storage: content-addressed blobs, and per repo an ordered list of commits, each a full ``path -> blob`` map, with
branch refs. Repos are added from folders with :meth:`HubStore.add_repo`, or created through the API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
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


def git_blob_sha1(data: bytes) -> str:
    """The id git (and the Hub's tree listing) gives a regular file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


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
        self.tokens: dict[str, str] = {}         # token -> user name
        self.dropping: dict[str, int] = {}       # route -> how many more requests to drop
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for tests to inspect
        self.lock = threading.Lock()

    def add_token(self, token: str, user: str) -> None:
        """Accept ``token`` as ``user``, who may write to repos under ``user/``."""
        self.tokens[token] = user

    def drop_next(self, route: str, count: int = 1) -> None:
        """Drop the connection on the next ``count`` requests to ``route`` ("create", "preupload", "commit", ...)."""
        with self.lock:
            self.dropping[route] = self.dropping.get(route, 0) + count

    def take_drop(self, route: str) -> bool:
        with self.lock:
            if self.dropping.get(route, 0) > 0:
                self.dropping[route] -= 1
                return True
            return False

    def _put_blob(self, data_path: Path) -> str:
        return self._put_bytes(data_path.read_bytes())

    def _put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.blobs / digest
        if not target.exists():
            partial = target.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(target)
        return digest

    def blob_bytes(self, digest: str) -> bytes:
        return (self.blobs / digest).read_bytes()

    def create_repo(self, repo_id: str, *, repo_type: str = "model", private: bool = False) -> bool:
        """Make an empty repo whose first commit holds a ``.gitattributes``, as the Hub does; False if it exists."""
        key = _key(repo_type, repo_id)
        with self.lock:
            if key in self.repos:
                return False
            repo = self.repos[key] = Repo(repo_id, private=private)
            attributes = self._put_bytes(b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
            self._commit(repo, {".gitattributes": attributes}, "initial commit", branch="main")
            return True

    def commit_operations(self, key: str, branch: str, operations: list[dict], message: str) -> str:
        """Apply NDJSON commit operations on top of ``branch``; returns the new commit's sha."""
        with self.lock:
            repo = self.repos[key]
            head = self.resolve(key, branch)
            files = dict(head.files) if head else {}
            for operation in operations:
                value = operation["value"]
                if operation["key"] == "file":
                    files[value["path"]] = self._put_bytes(base64.b64decode(value["content"]))
                elif operation["key"] == "deletedFile":
                    files.pop(value["path"], None)
                elif operation["key"] == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
            return self._commit(repo, files, message, branch=branch)

    def create_branch(self, key: str, branch: str, start: str = "main") -> bool:
        with self.lock:
            repo = self.repos[key]
            if branch in repo.refs:
                return False
            repo.refs[branch] = repo.refs.get(start, start)
            return True

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
        sha = hashlib.sha1(json.dumps([parent, len(repo.commits), sorted(files.items()), message]).encode()).hexdigest()
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
    endpoint: str
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

    def _drop_connection(self) -> None:
        """Hang up without a response, as a network that breaks mid-request does."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # --- authorisation ------------------------------------------------------------------------------------------

    def _user(self) -> str | None | bool:
        """The token's user, None when no token was sent, False when the token is unknown."""
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            return None
        return self.store.tokens.get(header.removeprefix("Bearer ").strip(), False)

    def _refuse_unknown_token(self, *, head: bool = False) -> bool:
        if self._user() is False:
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header", head=head)
            return True
        return False

    def _can_read(self, key: str) -> bool:
        repo = self.store.repos.get(key)
        return repo is not None and (not repo.private or self._user() == repo.repo_id.split("/")[0])

    def _can_write(self, repo_id: str) -> bool:
        user = self._user()
        return bool(user) and repo_id.split("/")[0] == user

    # --- routing ------------------------------------------------------------------------------------------------

    _RESOLVE = re.compile(r"^/(?:(?P<type>models|datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/"
                          r"(?P<path>.+)$")
    _INFO = re.compile(r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+))?$")
    _TREE = re.compile(r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)"
                       r"(?:/(?P<path>.*))?$")
    _WRITE = re.compile(r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)/(?P<action>preupload|commit|branch)/"
                        r"(?P<rev>[^/]+)$")

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_POST(self) -> None:
        path = unquote(urlsplit(self.path).path)
        self.store.requests.append(("POST", path))
        body = self._body()
        match = self._WRITE.match(path)
        route = match["action"] if match else {"/api/repos/create": "create"}.get(path, path)
        if self.store.take_drop(route):
            return self._drop_connection()
        if self._refuse_unknown_token():
            return None
        if path == "/api/validate-yaml":
            return self._json(200, {"errors": [], "warnings": []})
        if path == "/api/repos/create":
            return self._create_repo(json.loads(body or b"{}"))
        if match is None:
            return self._error(404, "NotFound", f"no route for POST {path}")
        key = _key(match["type"][:-1], match["repo"])
        if key not in self.store.repos or not self._can_read(key):
            return self._error(401 if self._user() is None else 404, "RepoNotFound",
                               f"Repository Not Found for url: {self.endpoint}{path}.")
        if not self._can_write(match["repo"]):
            return self._error(403, "Forbidden", f"You don't have the rights to write to {match['repo']}")
        if match["action"] == "branch":
            payload = json.loads(body or b"{}")
            if not self.store.create_branch(key, match["rev"], payload.get("startingPoint") or "main"):
                return self._error(409, "Conflict", f"Reference already exists: refs/heads/{match['rev']}")
            return self._json(200, {})
        head_commit = self.store.resolve(key, match["rev"])
        if head_commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {match['rev']}")
        if match["action"] == "preupload":
            return self._preupload(head_commit, json.loads(body))
        return self._commit(key, match["repo"], match["rev"], head_commit, body)

    def _create_repo(self, payload: dict) -> None:
        name, organization = payload["name"], payload.get("organization")
        user = self._user()
        if not user:
            return self._error(401, "Unauthorized", "You must be authenticated to create a repo")
        repo_id = f"{organization or user}/{name}"
        if not self._can_write(repo_id):
            return self._error(403, "Forbidden", f"You don't have the rights to create a repo under {repo_id}")
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo_type = payload.get("type") or "model"
        url = f"{self.endpoint}/{repo_id}" if repo_type == "model" else f"{self.endpoint}/{repo_type}s/{repo_id}"
        if not self.store.create_repo(repo_id, repo_type=repo_type, private=private):
            message = f"You already created this {repo_type} repo"
            return self._send(409, json.dumps({"error": message, "url": url}).encode(),
                              {"Content-Type": "application/json", "X-Error-Message": message})
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _preupload(self, head_commit: Commit, payload: dict) -> None:
        files = []
        for entry in payload["files"]:
            blob = head_commit.files.get(entry["path"])
            oid = git_blob_sha1(self.store.blob_bytes(blob)) if blob else None
            files.append({"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": files, "commitOid": head_commit.sha})

    def _commit(self, key: str, repo_id: str, branch: str, head_commit: Commit, body: bytes) -> None:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        if header.get("parentCommit") and header["parentCommit"] != head_commit.sha:
            return self._error(412, "PreconditionFailed", "A commit has happened since. Please refresh and try again.")
        if any(line["key"] == "lfsFile" for line in lines):
            return self._error(422, "Unprocessable", "this server answers every file as regular; no LFS objects")
        operations = [line for line in lines if line["key"] != "header"]
        sha = self.store.commit_operations(key, branch, operations, header.get("summary", ""))
        self._json(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.endpoint}/{repo_id}/commit/{sha}",
                         "hookOutput": ""})

    def _route(self, *, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.store.requests.append(("HEAD" if head else "GET", path))
        if self._refuse_unknown_token(head=head):
            return None
        if path == "/api/whoami-v2":
            user = self._user()
            if not user:
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header", head=head)
            return self._json(200, {"type": "user", "name": user, "fullname": user, "orgs": [],
                                    "auth": {"type": "access_token",
                                             "accessToken": {"displayName": "tests", "role": "write"}}}, head=head)
        if match := self._RESOLVE.match(path):
            key = _key((match["type"] or "models")[:-1], match["repo"])
            route = "resolve"
            if self.store.take_drop(route):
                return self._drop_connection()
            return self._resolve_file(key, match["rev"], match["path"], head=head)
        if match := self._TREE.match(path):
            key = _key(match["type"][:-1], match["repo"])
            recursive = "recursive=true" in (urlsplit(self.path).query or "").lower()
            return self._tree(key, match["rev"], match["path"] or "", recursive=recursive, head=head)
        if match := self._INFO.match(path):
            key = _key(match["type"][:-1], match["repo"])
            return self._repo_info(key, match["rev"] or "main", head=head)
        self._error(404, "NotFound", f"no route for {path}", head=head)

    def _commit_or_error(self, key: str, revision: str, *, head: bool) -> Commit | None:
        if not self._can_read(key):
            # Unknown and private-to-someone-else look the same, as on the Hub.
            self._error(401, "RepoNotFound", f"Repository Not Found for url: {self.endpoint}{self.path}.",
                        head=head)
            return None
        commit = self.store.resolve(key, revision)
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
        data = self.store.blob_bytes(blob)
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

    def _tree(self, repo_id: str, revision: str, folder: str, *, recursive: bool, head: bool) -> None:
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
                parts = rest.split("/")[:-1] if recursive else rest.split("/")[:1]
                dirs.update(prefix + "/".join(parts[:i + 1]) for i in range(len(parts)))
                if not recursive:
                    continue
            data = self.store.blob_bytes(blob)
            entries.append({"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)})
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
        handler.endpoint = self.endpoint
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
