"""A loopback fake of the Hugging Face Hub's HTTP API, for testing push and pull code with the real client libraries.

The Hub cannot be reached from the test machines. This server speaks enough of its protocol for `huggingface_hub`
(`HfApi.create_repo`, `create_commit`, `upload_folder`, `hf_hub_download`, `HfFileSystem`, `ModelCard.load`),
transformers (`push_to_hub`, `from_pretrained(..., trust_remote_code=True)`) and datasets (`load_dataset(repo_id,
streaming=True)`, `hf://datasets/...` paths) to work unchanged against `HF_ENDPOINT=http://127.0.0.1:<port>`.
It uses the standard library only, binds 127.0.0.1 only, keeps the repositories in a folder (content-addressed
blobs plus one JSON file of commits per repository), and stops by itself after a time to live.

What it implements (the real Hub's routes and response shapes, as the clients read them):

- `POST /api/repos/create` (409 when the repository exists), `POST /api/repos/delete`, `GET /api/whoami-v2`,
  `POST /api/validate-yaml` (accepts everything), `GET /api/agent-harnesses` (an empty registry: huggingface_hub
  fetches it once a day for its user agent);
- `GET /api/{models,datasets,spaces}/{repo}[/revision/{rev}]`: repository info (`sha`, `siblings`, `private`, ...);
- `POST .../preupload/{rev}`: every file is `uploadMode: "regular"`, so the client sends it inline (base64) in the
  commit; no LFS or Xet storage is needed;
- `POST .../commit/{rev}`: an NDJSON commit (`header`, `file`, `deletedFile`, `deletedFolder`), applied atomically:
  either every operation is applied as one new commit or none is;
- `GET .../tree/{rev}[/{path}]` (`recursive`), `POST .../paths-info/{rev}`, `GET .../refs`, `GET .../commits/{rev}`;
- `GET`/`HEAD` `/[datasets/|spaces/]{repo}/resolve/{rev}/{path}` with `ETag` (the git blob id), `X-Repo-Commit`,
  `Content-Length` and byte `Range`s (206).

Errors carry the Hub's `X-Error-Code` header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) so the clients
raise their usual exceptions. Writes need `Authorization: Bearer <token>` with one of the accepted tokens (401
otherwise); private repositories are visible with an accepted token only. Any other request is answered 501 and
logged loudly (stderr and `FakeHub.unhandled`), so a client change that calls something new shows up at once.

Failure injection: `hub.fail("commit", status=500)` makes the next commits (all of them, or `times=N`) fail with that
status before anything is stored; also over HTTP as `POST /_fake/fail {"route": "commit", "status": 500}`.

Not implemented: LFS/Xet uploads, pull requests, branches other than `main` (revisions are `main` or a commit id),
gating, rate limits, Hub-side validation of cards. The server tests our code and the clients' request flow, not Hub
policy.

In tests: `with FakeHub(tmp_path) as hub: ... hub.env()` (see the `fake_hub` fixture in `conftest.py`). From a
shell::

    python tests/fake_hub.py --root /tmp/hub --port 18080 --ttl 600   # stops after the TTL or when ROOT/.stop exists
"""

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit


REPO_TYPES = ("model", "dataset", "space")
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.tar filter=lfs diff=lfs merge=lfs -text\n"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"

_API = re.compile(
    rf"^/api/(?P<kind>models|datasets|spaces)/(?P<repo>{_NAME}/{_NAME})"
    r"(?:/(?P<action>revision|preupload|commit|tree|paths-info|commits|refs)(?:/(?P<rev>[^/]+))?(?:/(?P<path>.*))?)?$"
)
_RESOLVE = re.compile(
    rf"^/(?:(?P<kind>datasets|spaces)/)?(?P<repo>{_NAME}/{_NAME})/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"
)


class HubError(Exception):
    """An error answer: HTTP status, the Hub's `X-Error-Code` (or None) and a message."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob, which the Hub uses as the ETag and `oid` of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _safe_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise HubError(400, f"invalid path in repository: {path!r}")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Storage: root/blobs/<git blob id> and root/repos/<type>/<org>/<name>.json


class RepoStore:
    """Repositories as lists of commits (full file tables: path -> [blob id, size]); blobs are content-addressed."""

    def __init__(self, root):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._counter = 0

    def _file(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type / f"{repo_id}.json"

    def load(self, repo_type: str, repo_id: str) -> dict | None:
        path = self._file(repo_type, repo_id)
        return json.loads(path.read_text()) if path.exists() else None

    def _save(self, repo_type: str, repo_id: str, repo: dict) -> None:
        path = self._file(repo_type, repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(repo, indent=1))
        os.replace(tmp, path)

    def put_blob(self, data: bytes) -> str:
        oid = git_blob_id(data)
        path = self.root / "blobs" / oid
        if not path.exists():
            tmp = path.with_name(oid + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return oid

    def blob_path(self, oid: str) -> Path:
        return self.root / "blobs" / oid

    def _commit_id(self, parent: str | None, files: dict, message: str) -> str:
        self._counter += 1
        payload = json.dumps([parent, files, message, time.time_ns(), self._counter], sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()

    def create(self, repo_type: str, repo_id: str, private: bool) -> dict:
        with self.lock:
            if self.load(repo_type, repo_id) is not None:
                raise HubError(409, f"You already created this {repo_type} repo", "RepoExists")
            files = {".gitattributes": [self.put_blob(_GITATTRIBUTES), len(_GITATTRIBUTES)]}
            oid = self._commit_id(None, files, "initial commit")
            date = _now()
            repo = {"id": repo_id, "type": repo_type, "private": bool(private), "createdAt": date,
                    "commits": [{"oid": oid, "parent": None, "title": "initial commit", "message": "",
                                 "date": date, "files": files}],
                    "refs": {"main": oid}}
            self._save(repo_type, repo_id, repo)
            return repo

    def delete(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            path = self._file(repo_type, repo_id)
            if not path.exists():
                raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
            path.unlink()

    def commit(self, repo_type: str, repo_id: str, revision: str, header: dict, ops: list) -> dict:
        """Apply `ops` (("add", path, bytes) | ("delete", path) | ("delete_folder", path)) as one commit."""
        with self.lock:
            repo = self.load(repo_type, repo_id)
            if revision != "main":
                raise HubError(400, f"this fake Hub commits to 'main' only, not {revision!r}")
            head = find_commit(repo, "main")
            parent = header.get("parentCommit")
            if parent and parent != head["oid"]:
                raise HubError(412, f"parent commit {parent} is not the head of main ({head['oid']})")
            files = dict(head["files"])
            for op in ops:
                if op[0] == "add":
                    files[op[1]] = [self.put_blob(op[2]), len(op[2])]
                elif op[0] == "delete":
                    if files.pop(op[1], None) is None:
                        raise HubError(404, f"cannot delete {op[1]}: no such file", "EntryNotFound")
                else:
                    prefix = op[1].rstrip("/") + "/"
                    for path in [p for p in files if p.startswith(prefix)]:
                        del files[path]
            oid = self._commit_id(head["oid"], files, header.get("summary", ""))
            repo["commits"].append({"oid": oid, "parent": head["oid"], "title": header.get("summary") or "",
                                    "message": header.get("description") or "", "date": _now(), "files": files})
            repo["refs"]["main"] = oid
            self._save(repo_type, repo_id, repo)
            return repo["commits"][-1]


def find_commit(repo: dict, revision: str) -> dict:
    oid = repo["refs"].get(revision, revision)
    for commit in reversed(repo["commits"]):
        if commit["oid"] == oid or (len(revision) >= 7 and commit["oid"].startswith(revision)):
            return commit
    raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def _tree_entries(files: dict, path: str, recursive: bool) -> list[dict]:
    """Files and folders under `path` ("" for the root), as the tree and paths-info endpoints list them."""
    prefix = path.rstrip("/") + "/" if path else ""
    if path and path not in files and not any(p.startswith(prefix) for p in files):
        raise HubError(404, f"{path} does not exist", "EntryNotFound")
    entries, folders = [], set()
    for file_path, (oid, size) in sorted(files.items()):
        if not file_path.startswith(prefix):
            continue
        rest = file_path[len(prefix):].split("/")
        for depth in range(1, len(rest) if recursive else min(2, len(rest))):
            folders.add(prefix + "/".join(rest[:depth]))
        if recursive or len(rest) == 1:
            entries.append({"type": "file", "oid": oid, "size": size, "path": file_path})
    for folder in sorted(folders):
        entries.append({"type": "directory", "oid": _folder_oid(files, folder), "size": 0, "path": folder})
    return sorted(entries, key=lambda e: e["path"])


def _folder_oid(files: dict, folder: str) -> str:
    prefix = folder + "/"
    listing = json.dumps(sorted((p, v[0]) for p, v in files.items() if p.startswith(prefix)))
    return hashlib.sha1(listing.encode()).hexdigest()


def _path_info(files: dict, path: str) -> dict | None:
    if path in files:
        oid, size = files[path]
        return {"type": "file", "oid": oid, "size": size, "path": path}
    if any(p.startswith(path.rstrip("/") + "/") for p in files):
        return {"type": "directory", "oid": _folder_oid(files, path.rstrip("/")), "size": 0, "path": path.rstrip("/")}
    return None


# ---------------------------------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeHub/1.0"
    protocol_version = "HTTP/1.1"

    @property
    def hub(self) -> "FakeHub":
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # the hub keeps its own request log
        pass

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers=None,
              head: bool = False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)
        self.hub._record(self.command, self.path, status)

    def _json(self, status: int, value, headers=None):
        self._send(status, json.dumps(value).encode(), headers=headers)

    def _error(self, err: HubError, head: bool = False):
        headers = {"X-Error-Message": err.message.replace("\n", " ")}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(err.status, json.dumps({"error": err.message}).encode(), headers=headers, head=head)

    def _token_ok(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[len("Bearer "):] in self.hub.tokens

    def _require_token(self):
        if not self._token_ok():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_type: str, repo_id: str) -> dict:
        repo = self.hub.store.load(repo_type, repo_id)
        if repo is None or (repo["private"] and not self._token_ok()):
            raise HubError(404, f"Repository Not Found for url: {self.path}. Please make sure you specified the "
                                f"correct `repo_id` and `repo_type`.", "RepoNotFound")
        return repo

    def _dispatch(self, head: bool = False):
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        # The revision segment is URL-quoted by the clients ("refs%2Fpr%2F1"): split on the raw path, unquote after.
        raw = url.path
        body = self._body() if self.command in ("POST", "PUT", "DELETE") else b""
        try:
            self.hub._maybe_fail(self._route_name(raw))
            if raw == "/_fake/fail" and self.command == "POST":
                spec = json.loads(body or b"{}")
                self.hub.fail(spec["route"], status=int(spec.get("status", 500)), times=spec.get("times"))
                return self._json(200, {"ok": True})
            if raw == "/api/repos/create" and self.command == "POST":
                return self._create_repo(json.loads(body or b"{}"))
            if raw == "/api/repos/delete" and self.command in ("DELETE", "POST"):
                return self._delete_repo(json.loads(body or b"{}"))
            if raw == "/api/validate-yaml" and self.command == "POST":
                return self._json(200, {"errors": [], "warnings": []})
            if raw == "/api/agent-harnesses" and self.command == "GET":  # huggingface_hub's user-agent detection
                return self._json(200, {"standardEnvVars": [], "harnesses": {}})
            if raw == "/api/whoami-v2" and self.command == "GET":
                self._require_token()
                return self._json(200, {"type": "user", "name": "tester", "fullname": "Test User", "orgs": [],
                                        "auth": {"type": "access_token",
                                                 "accessToken": {"displayName": "fake", "role": "write"}}})
            match = _API.match(raw)
            if match:
                return self._api(match, query, body)
            match = _RESOLVE.match(raw)
            if match and self.command in ("GET", "HEAD"):
                return self._resolve(match, head=self.command == "HEAD")
            self.hub._unhandled(self.command, self.path)
            raise HubError(501, f"fake Hub: unhandled request {self.command} {path}")
        except HubError as err:
            return self._error(err, head=head)

    @staticmethod
    def _route_name(raw: str) -> str:
        if raw == "/api/repos/create":
            return "create"
        match = _API.match(raw)
        if match:
            return match["action"] or "info"
        return "resolve" if _RESOLVE.match(raw) else "other"

    do_GET = _dispatch
    do_POST = _dispatch
    do_DELETE = _dispatch

    def do_HEAD(self):
        self._dispatch(head=True)

    # -- routes --------------------------------------------------------------------------------------------------

    def _create_repo(self, payload: dict):
        self._require_token()
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"invalid repo type {repo_type!r}")
        name, org = payload.get("name"), payload.get("organization") or "tester"
        repo_id = f"{org}/{name}"
        if not name or not re.fullmatch(f"{_NAME}/{_NAME}", repo_id):
            raise HubError(400, f"invalid repository name {repo_id!r}")
        private = payload.get("private", payload.get("visibility") == "private")
        url = f"{self.hub.endpoint}/{_TYPE_PREFIX[repo_type]}{repo_id}"
        try:
            self.hub.store.create(repo_type, repo_id, bool(private))
        except HubError as err:
            if err.status == 409:
                return self._json(409, {"error": err.message, "url": url},
                                  headers={"X-Error-Message": err.message})
            raise
        return self._json(200, {"url": url, "name": repo_id, "id": hashlib.sha1(url.encode()).hexdigest()[:24]})

    def _delete_repo(self, payload: dict):
        self._require_token()
        repo_type = payload.get("type") or "model"
        org = payload.get("organization") or "tester"
        self.hub.store.delete(repo_type, f"{org}/{payload.get('name')}")
        return self._json(200, {})

    def _api(self, match, query: dict, body: bytes):
        repo_type, repo_id = _PLURAL[match["kind"]], match["repo"]
        action, rev = match["action"], unquote(match["rev"] or "main")
        sub_path = unquote(match["path"] or "")
        store = self.hub.store
        if action in (None, "revision") and self.command == "GET":
            repo = self._repo(repo_type, repo_id)
            return self._json(200, self._info(repo, find_commit(repo, rev)))
        if action == "preupload" and self.command == "POST":
            self._require_token()
            repo = self._repo(repo_type, repo_id)
            head_files = find_commit(repo, rev)["files"]
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                      "oid": head_files.get(f["path"], [None])[0]} for f in json.loads(body or b"{}")["files"]]
            return self._json(200, {"files": files, "commitOid": find_commit(repo, rev)["oid"]})
        if action == "commit" and self.command == "POST":
            self._require_token()
            self._repo(repo_type, repo_id)
            header, ops = self._parse_commit(body)
            commit = store.commit(repo_type, repo_id, rev, header, ops)
            prefix = _TYPE_PREFIX[repo_type]
            return self._json(200, {"success": True, "commitOid": commit["oid"], "pullRequestUrl": None,
                                    "commitUrl": f"{self.hub.endpoint}/{prefix}{repo_id}/commit/{commit['oid']}"})
        if action == "tree" and self.command == "GET":
            repo = self._repo(repo_type, repo_id)
            files = find_commit(repo, rev)["files"]
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._json(200, _tree_entries(files, sub_path, recursive))
        if action == "paths-info" and self.command == "POST":
            repo = self._repo(repo_type, repo_id)
            files = find_commit(repo, rev)["files"]
            form = parse_qs(body.decode()) if body else {}
            if not form and body:
                form = json.loads(body)
            infos = [_path_info(files, p) for p in form.get("paths", [])]
            return self._json(200, [info for info in infos if info is not None])
        if action == "refs" and self.command == "GET":
            repo = self._repo(repo_type, repo_id)
            branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
                        for name, oid in repo["refs"].items()]
            return self._json(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})
        if action == "commits" and self.command == "GET":
            repo = self._repo(repo_type, repo_id)
            commit, history = find_commit(repo, rev), []
            by_oid = {c["oid"]: c for c in repo["commits"]}
            while commit is not None:
                history.append({"id": commit["oid"], "title": commit["title"], "message": commit["message"],
                                "date": commit["date"], "authors": [{"user": "tester"}]})
                commit = by_oid.get(commit["parent"])
            return self._json(200, history)
        self.hub._unhandled(self.command, self.path)
        raise HubError(501, f"fake Hub: unhandled request {self.command} {self.path}")

    def _parse_commit(self, body: bytes) -> tuple[dict, list]:
        header, ops = {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                ops.append(("add", _safe_path(value["path"]), base64.b64decode(value["content"])))
            elif key == "deletedFile":
                ops.append(("delete", _safe_path(value["path"])))
            elif key == "deletedFolder":
                ops.append(("delete_folder", _safe_path(value["path"].rstrip("/"))))
            else:
                raise HubError(422, f"fake Hub: unsupported commit operation {key!r} (LFS/Xet and copies are not "
                                    "implemented; preupload asks for regular uploads)")
        if "summary" not in header:
            raise HubError(400, "commit has no header")
        return header, ops

    def _info(self, repo: dict, commit: dict) -> dict:
        siblings = [{"rfilename": path, "size": size, "blobId": oid}
                    for path, (oid, size) in sorted(commit["files"].items())]
        org = repo["id"].split("/")[0]
        return {"_id": hashlib.sha1(repo["id"].encode()).hexdigest()[:24], "id": repo["id"], "author": org,
                "sha": commit["oid"], "lastModified": commit["date"], "createdAt": repo["createdAt"],
                "private": repo["private"], "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                "tags": [], "siblings": siblings}

    def _resolve(self, match, head: bool):
        repo_type = _PLURAL[match["kind"]] if match["kind"] else "model"
        repo = self._repo(repo_type, match["repo"])
        commit = find_commit(repo, unquote(match["rev"]))
        path = unquote(match["path"])
        if path not in commit["files"]:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        oid, size = commit["files"][path]
        headers = {"ETag": f'"{oid}"', "X-Repo-Commit": commit["oid"], "Accept-Ranges": "bytes"}
        status, start, end = 200, 0, size - 1
        range_header = self.headers.get("Range")
        if range_header:
            found = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if not found or (not found[1] and not found[2]):
                raise HubError(416, f"unsupported range {range_header!r}")
            if found[1]:
                start, end = int(found[1]), min(int(found[2]) if found[2] else size - 1, size - 1)
            else:
                start = max(0, size - int(found[2]))
            if start >= size and size:
                self._send(416, b"", headers={"Content-Range": f"bytes */{size}"}, head=head)
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        data = b""
        if not head:
            with open(self.hub.store.blob_path(oid), "rb") as f:
                f.seek(start)
                data = f.read(max(0, end - start + 1))
        length = max(0, end - start + 1) if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)
        self.hub._record(self.command, self.path, status)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeHub:
    """The fake Hub server. `start()` serves in a background thread; `stop()` (or the TTL, or leaving the `with`
    block) shuts it down.

    Attributes:
        endpoint: `http://127.0.0.1:<port>`, for `HF_ENDPOINT`.
        requests: `(method, path, status)` of every answered request, in order.
        unhandled: `(method, path)` of every request the fake does not implement (answered 501).
    """

    def __init__(self, root, *, port: int = 0, ttl: float = 600.0, tokens=("hf_fake",), quiet: bool = False):
        self.store = RepoStore(root)
        self.root = Path(root)
        self.tokens = set(tokens)
        self.ttl = ttl
        self.quiet = quiet
        self.requests: list[tuple[str, str, int]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._failures: dict[str, list] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.hub = self
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, cache_dir=None, token: str = "hf_fake") -> dict:
        """Environment variables that point the Hugging Face clients at this server (for a subprocess)."""
        env = {"HF_ENDPOINT": self.endpoint, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0",
               "TRANSFORMERS_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        if cache_dir is not None:
            cache_dir = Path(cache_dir)
            env.update(HF_HOME=str(cache_dir / "home"), HF_HUB_CACHE=str(cache_dir / "hub"),
                       HF_DATASETS_CACHE=str(cache_dir / "datasets"), HF_MODULES_CACHE=str(cache_dir / "modules"))
        return env

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> "FakeHub":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"fake-hub-{self.port}", daemon=True)
        self._thread.start()
        if self.ttl:
            self._timer = threading.Timer(self.ttl, self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _expire(self):
        self._log(f"time to live ({self.ttl:g} s) is over: stopping")
        self.stop()

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent; called by the TTL timer, `__exit__` or the test)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        if thread is not None:
            self._server.shutdown()  # never called from the serving thread itself: requests run in their own threads
            thread.join(timeout=5)
            self._server.server_close()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------------------------------------------

    def fail(self, route: str, status: int = 500, times: int | None = None) -> None:
        """Answer the next `times` requests of `route` (`create`, `preupload`, `commit`, `info`, `tree`,
        `resolve`, ...; all of them when `times` is None) with `status`, before doing anything."""
        with self._lock:
            self._failures[route] = [status, times]

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _maybe_fail(self, route: str) -> None:
        with self._lock:
            spec = self._failures.get(route)
            if spec is None:
                return
            status, times = spec
            if times is not None:
                spec[1] -= 1
                if spec[1] <= 0:
                    del self._failures[route]
        raise HubError(status, f"fake Hub: injected failure of {route!r} ({status})")

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def _unhandled(self, method: str, path: str) -> None:
        with self._lock:
            self.unhandled.append((method, path))
        self._log(f"UNHANDLED REQUEST {method} {path} (answered 501; implement it in tests/fake_hub.py)", loud=True)

    def _log(self, message: str, loud: bool = False) -> None:
        if loud or not self.quiet:
            print(f"[fake hub {self.endpoint}] {message}", file=sys.stderr, flush=True)

    # -- inspection ----------------------------------------------------------------------------------------------

    def repo(self, repo_id: str, repo_type: str = "model") -> dict | None:
        """The stored repository (`private`, `commits`, `refs`), or None."""
        return self.store.load(repo_type, repo_id)

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """`{path: content}` of a revision."""
        repo = self.store.load(repo_type, repo_id)
        if repo is None:
            raise KeyError(f"no {repo_type} repository {repo_id}")
        commit = find_commit(repo, revision)
        return {path: self.store.blob_path(oid).read_bytes() for path, (oid, _) in commit["files"].items()}

    def url(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> str:
        return f"{self.endpoint}/{_TYPE_PREFIX[repo_type]}{repo_id}/resolve/{quote(revision, safe='')}/{path}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Serve a fake Hugging Face Hub on 127.0.0.1 (tests only).")
    parser.add_argument("--root", required=True, help="folder for the repositories; ROOT/.stop stops the server")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one, printed on start)")
    parser.add_argument("--ttl", type=float, default=600.0, help="stop after this many seconds (default: 600)")
    parser.add_argument("--token", action="append", default=None, help="accepted token (default: hf_fake)")
    args = parser.parse_args(argv)
    hub = FakeHub(args.root, port=args.port, ttl=args.ttl, tokens=args.token or ("hf_fake",)).start()
    print(f"FAKE_HUB_ENDPOINT={hub.endpoint}", flush=True)
    stop_file = Path(args.root) / ".stop"
    try:
        while hub._thread is not None and not stop_file.exists():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
