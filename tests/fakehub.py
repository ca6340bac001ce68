"""A local stand-in for the Hugging Face hub (stdlib HTTP on 127.0.0.1) and pytest fixtures around it.

It speaks the download protocol huggingface_hub 2.4 uses (HEAD/GET on ``/{repo}/resolve/{rev}/{path}``,
X-Repo-Commit, ETag, Content-Length, optional 302 to a second "CDN" origin with X-Linked-Etag/-Size,
Range requests, X-Error-Code errors), logs every request, and can tamper with files. Use it with
``pytest_plugins = ["tests.fakehub"]`` and the ``fake_hub`` / ``hub_env`` fixtures below.
"""

from __future__ import annotations

import hashlib
import http.server
import itertools
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_TEXT_SUFFIXES = (".json", ".md", ".txt", ".gitattributes")


def git_blob_sha1(data: bytes) -> str:
    """The git object id the hub uses as ETag for small (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    data: bytes
    lfs: bool
    etag: str  # what the server advertises (sha256 for LFS files, git sha1 otherwise)


@dataclass
class HubRepo:
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit
    gated: bool = False


@dataclass(frozen=True)
class LoggedRequest:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    status: int
    headers: Mapping[str, str]


class FakeHub:
    """In-memory repos served over HTTP; ``redirect_lfs`` sends LFS files through a second origin."""

    def __init__(self, *, redirect_lfs: bool = False, token: str | None = None) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[LoggedRequest] = []
        self.redirect_lfs = redirect_lfs
        self.token = token  # the token a gated repo accepts
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._servers: list[http.server.ThreadingHTTPServer] = []
        self.url = self.cdn_url = ""

    # --- content ---------------------------------------------------------------------------------
    def commit(
        self, repo_id: str, files: Mapping[str, bytes], *, branch: str = "main", keep: bool = False
    ) -> str:
        """Create a commit holding ``files`` (plus the branch's files when ``keep``); returns its hash."""
        repo = self.repos.setdefault(repo_id, HubRepo())
        previous = dict(repo.commits.get(repo.refs.get(branch, ""), {})) if keep else {}
        previous.update({path: _hub_file(path, data) for path, data in files.items()})
        seed = f"{repo_id}:{next(self._counter)}:" + ",".join(
            f"{p}={f.etag}" for p, f in sorted(previous.items())
        )
        sha = hashlib.sha1(seed.encode()).hexdigest()
        repo.commits[sha] = previous
        repo.refs[branch] = sha
        return sha

    def publish_model_folder(self, repo_id: str, folder: Path | str, *, branch: str = "main") -> str:
        """Serve a faceedit model folder (config.json + model.safetensors) as a hub repo."""
        folder = Path(folder)
        files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
        return self.commit(repo_id, files, branch=branch)

    def tamper(
        self,
        repo_id: str,
        path: str,
        *,
        revision: str = "main",
        data: bytes | None = None,
        keep_etag: bool = False,
    ) -> bytes:
        """Replace a served file in place (same commit). Default: same size, one byte flipped per KiB.

        ``keep_etag`` keeps advertising the original ETag (a corrupting proxy/CDN); otherwise the ETag
        follows the new bytes (a repo whose history was rewritten). Returns the new bytes.
        """
        repo = self.repos[repo_id]
        entry = repo.commits[repo.refs.get(revision, revision)][path]
        new = bytes(data) if data is not None else _flip_bytes(entry.data)
        entry.data = new
        if not keep_etag:
            entry.etag = _hub_file(path, new).etag
        return new

    def file_bytes(self, repo_id: str, path: str, revision: str = "main") -> bytes:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs.get(revision, revision)][path].data

    # --- request log -----------------------------------------------------------------------------
    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, method: str | None = None, contains: str = "") -> int:
        """Requests seen so far (optionally of one method, and whose path contains ``contains``)."""
        with self._lock:
            return sum(1 for r in self.requests if (method in (None, r.method)) and contains in r.path)

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        for role in ("hub", "cdn"):
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        """Stop both servers: later connections are refused (the "no network" case)."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    @property
    def running(self) -> bool:
        return bool(self._servers)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.stop()


def _hub_file(path: str, data: bytes) -> HubFile:
    # Like the hub: text files are plain git blobs, binaries live in LFS (ETag = sha256 of the content).
    lfs = not path.endswith(_TEXT_SUFFIXES)
    return HubFile(data, lfs, hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data))


def _flip_bytes(data: bytes) -> bytes:
    out = bytearray(data)
    for i in range(len(out) // 2, len(out), 1024):
        out[i] ^= 0xFF
    if out == bytearray(data):  # empty file: cannot keep the size
        out += b"\0"
    return bytes(out)


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_BLOB = re.compile(r"^/blobs/(?P<repo>[^/]+/[^/]+)/(?P<commit>[0-9a-f]{40})/(?P<path>.+)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _handler(hub: FakeHub, role: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a stopped server really refuses every later request.
        server_version = "fakehub/1"

        def log_message(self, format: str, *args: object) -> None:  # silence stderr
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            status, headers, payload = (_serve_hub if role == "hub" else _serve_cdn)(hub, path, self.headers)
            if status == 200 and payload and (rng := self.headers.get("Range")):
                status, headers, payload = _apply_range(rng, headers, payload)
            hub._log(LoggedRequest(role, self.command, path, status, dict(self.headers)))
            self.send_response(status)
            headers.setdefault("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(payload)

    return Handler


Answer = tuple[int, dict[str, str], bytes]


def _error(status: int, code: str, message: str, commit: str | None = None) -> Answer:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit:
        headers["X-Repo-Commit"] = commit
    return status, headers, message.encode()


def _serve_hub(hub: FakeHub, path: str, request_headers: Mapping[str, str]) -> Answer:
    match = _RESOLVE.match(path)
    if not match:
        return _error(404, "EntryNotFound", f"no route {path}")
    repo = hub.repos.get(match["repo"])
    if repo is None:
        return _error(404, "RepoNotFound", "Repository not found")
    if repo.gated and request_headers.get("authorization") != f"Bearer {hub.token}":
        return _error(403, "GatedRepo", "Access to this model is restricted: accept the conditions first")
    commit = repo.refs.get(match["rev"], match["rev"])
    if commit not in repo.commits:
        return _error(404, "RevisionNotFound", f"Invalid rev id: {match['rev']}")
    entry = repo.commits[commit].get(match["path"])
    if entry is None:
        return _error(404, "EntryNotFound", f"{match['path']} does not exist", commit)
    headers = {"X-Repo-Commit": commit, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
    if entry.lfs and hub.redirect_lfs:
        location = f"{hub.cdn_url}/blobs/{match['repo']}/{commit}/{urllib.parse.quote(match['path'])}"
        headers.update(
            {"Location": location, "X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(len(entry.data))}
        )
        return 302, headers, b""
    return 200, headers, entry.data


def _serve_cdn(hub: FakeHub, path: str, request_headers: Mapping[str, str]) -> Answer:
    match = _BLOB.match(path)
    repo = hub.repos.get(match["repo"]) if match else None
    entry = repo.commits.get(match["commit"], {}).get(match["path"]) if repo and match else None
    if entry is None:
        return 404, {}, b"no such blob"
    return 200, {"ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}, entry.data


def _apply_range(spec: str, headers: dict[str, str], payload: bytes) -> Answer:
    match = _RANGE.match(spec.strip())
    if not match or not (match[1] or match[2]):
        return 416, {"Content-Range": f"bytes */{len(payload)}"}, b""
    if match[1]:
        start, end = int(match[1]), int(match[2]) if match[2] else len(payload) - 1
    else:  # suffix range: the last N bytes
        start, end = max(len(payload) - int(match[2]), 0), len(payload) - 1
    if start >= len(payload):
        return 416, {"Content-Range": f"bytes */{len(payload)}"}, b""
    end = min(end, len(payload) - 1)
    headers = {**headers, "Content-Range": f"bytes {start}-{end}/{len(payload)}"}
    return 206, headers, payload[start : end + 1]


# --- pytest fixtures ------------------------------------------------------------------------------


def online(monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> None:
    """Let this process talk to ``hub``: offline mode off, endpoint env pointing at it."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("FACEEDIT_HF_ENDPOINT", raising=False)


def isolate_caches(monkeypatch: pytest.MonkeyPatch, root: Path) -> dict[str, Path]:
    """Fresh HF hub cache and faceedit cache under ``root`` for this process and its subprocesses."""
    import huggingface_hub.constants as constants

    paths = {"hf_home": root / "hf", "hf_cache": root / "hf" / "hub", "faceedit_cache": root / "faceedit"}
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(paths["hf_cache"]))
    monkeypatch.setenv("HF_HOME", str(paths["hf_home"]))
    monkeypatch.setenv("HF_HUB_CACHE", str(paths["hf_cache"]))
    monkeypatch.setenv("FACEEDIT_CACHE", str(paths["faceedit_cache"]))
    return paths


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A running fake hub, this process switched online to it, with per-test HF and faceedit caches."""
    isolate_caches(monkeypatch, tmp_path / "caches")
    with FakeHub() as hub:
        online(monkeypatch, hub)
        yield hub


@pytest.fixture
def hub_env(fake_hub: FakeHub) -> dict[str, str]:
    """Environment for a ``faceedit`` subprocess that talks to ``fake_hub`` with the same caches."""
    keys = ("HF_HOME", "HF_HUB_CACHE", "FACEEDIT_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in keys}
    env.update({k: os.environ[k] for k in keys})
    env.update({"HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "FACEEDIT_NO_PROGRESS": "1"})
    return env


# --- tiny models and test cards -------------------------------------------------------------------

TINY_REPO = "test/stargan-tiny"
TINY_FILES = ("g_celeba-16x16.pth.tar", "d_celeba-16x16.pth.tar")


def named_stargan_keys(state: Mapping[str, object], repeat_num: int) -> dict[str, object]:
    """Official ``main.N`` generator keys -> the named layout of goodfellowliu/StarGAN-PyTorch."""
    r = repeat_num
    layers = {0: "first_layer.0", 1: "first_layer.1", 3: "down_sampling.0", 4: "down_sampling.1",
              6: "down_sampling.3", 7: "down_sampling.4", 9 + r: "up_sampling.0", 10 + r: "up_sampling.1",
              12 + r: "up_sampling.3", 13 + r: "up_sampling.4", 15 + r: "last_layer.0"}  # fmt: skip
    out = {}
    for key, value in state.items():  # official order = the hub layout's module registration order
        _, index, rest = key.split(".", 2)
        if int(index) in layers:
            out[f"{layers[int(index)]}.{rest}"] = value
        else:  # residual block k: main.{9+k}.main.{j}.* -> trunk.{k}.main.{j}.*
            out[f"trunk.{int(index) - 9}.{rest}"] = value
    return out


def tiny_stargan_files(*, seed: int = 0, named: bool = True, image_size: int = 16) -> dict[str, bytes]:
    """A tiny StarGAN G and D in the hub's format: ``torch.save({"state_dict": ..., "epoch", ...})``.

    G = Generator(conv_dim=8, c_dim=5, repeat_num=2) with the named (``named``) or official key layout;
    D = Discriminator(image_size, conv_dim=8, c_dim=5, repeat_num=3). Returns {file name: bytes}.
    """
    import io

    import torch

    from faceedit.models import stargan

    torch.manual_seed(seed)
    g = stargan.Generator(conv_dim=8, c_dim=5, repeat_num=2)
    d = stargan.Discriminator(image_size=image_size, conv_dim=8, c_dim=5, repeat_num=3)
    g_state = named_stargan_keys(g.state_dict(), 2) if named else g.state_dict()
    files = {}
    for name, state in zip(TINY_FILES, (g_state, d.state_dict()), strict=True):
        buffer = io.BytesIO()
        extras = {"epoch": 200, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]}}
        torch.save({"state_dict": state, **extras}, buffer)
        files[name] = buffer.getvalue()
    return files


def tiny_stargan_card(name: str = "stargan-tiny", repo_id: str = TINY_REPO, **source: object) -> object:
    """A card like stargan-celeba-128 for the tiny files of :func:`tiny_stargan_files`."""
    import dataclasses

    from faceedit import registry

    files = tuple(
        registry.SourceFile(path, role, sha256=source.pop(f"{role}_sha256", None))  # type: ignore[arg-type]
        for path, role in zip(TINY_FILES, ("generator", "discriminator"), strict=True)
    )
    src = registry.ModelSource(kind=registry.HUB_UPSTREAM, repo_id=repo_id, files=files, **source)  # type: ignore[arg-type]
    return dataclasses.replace(
        registry.get_card("stargan-celeba-128"),
        name=name,
        image_size=16,
        source=src,
        generator_kwargs={"conv_dim": 8, "c_dim": 5, "repeat_num": 2},
    )


def install_cards(monkeypatch: pytest.MonkeyPatch, *cards: object) -> None:
    """Add test cards to the registry table for this test only."""
    from types import MappingProxyType

    from faceedit import registry

    table = registry.CARDS + tuple(cards)  # type: ignore[operator]
    monkeypatch.setattr(registry, "CARDS", table)
    monkeypatch.setattr(registry, "_BY_NAME", MappingProxyType({c.name: c for c in table}))
