"""A loopback stand-in for the Hugging Face hub and its CDN, for tests that must not touch the network.

The hub server answers ``/{repo}/resolve/{rev}/{path}`` (HEAD/GET) with the metadata headers
huggingface_hub needs (X-Repo-Commit, ETag); LFS files get a 302 to a second server on another port
(another origin, like the CDN) that serves HTTP Range requests. Every request is recorded, and faults
(dropped connections, a flipped byte, an ignored Range header) can be switched on.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    byte_range: tuple[int, int] | None = None  # first and last byte served (inclusive)


@dataclass
class Faults:
    """Misbehaviour of the CDN, consumed as it happens."""

    # Close the connection after N body bytes, one entry per Range GET, consumed in order.
    drop_after: list[int] = field(default_factory=list)
    drop_from: int | None = None  # from this Range GET on (0-based count), cut every one before any byte
    flip_byte: int | None = None  # file offset whose byte is XOR-ed on the way out
    ignore_range: bool = False  # answer 200 with the whole file


class FakeHub:
    """``with FakeHub(repo_id, {path: bytes}, lfs={paths}) as hub:`` then pass ``endpoint=hub.endpoint``."""

    def __init__(self, repo_id: str, files: dict[str, bytes], lfs: set[str] | None = None) -> None:
        self.repo_id, self.files = repo_id, dict(files)
        self.lfs = set(lfs or ())
        self.by_sha = {hashlib.sha256(data).hexdigest(): data for data in self.files.values()}
        self.requests: list[Request] = []
        self.faults = Faults()
        self.range_gets = 0
        self._lock = threading.Lock()
        self._hub = _QuietServer(("127.0.0.1", 0), _handler(self, "hub"))
        self._cdn = _QuietServer(("127.0.0.1", 0), _handler(self, "cdn"))

    @classmethod
    def from_folder(cls, repo_id: str, folder: Path, in_repo: str, lfs_suffixes: tuple[str, ...]) -> FakeHub:
        """Serve every file of ``folder`` under ``in_repo/`` in the repo; names ending in a suffix are LFS."""
        files = {f"{in_repo}/{p.name}": p.read_bytes() for p in folder.iterdir() if p.is_file()}
        return cls(repo_id, files, {name for name in files if name.endswith(lfs_suffixes)})

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def served_ranges(self) -> list[tuple[int, int]]:
        """(first, last) byte of every Range GET the CDN answered with 206."""
        return [r.byte_range for r in self.requests if r.server == "cdn" and r.status == 206 and r.byte_range]

    def __enter__(self) -> FakeHub:
        for server in (self._hub, self._cdn):
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients closing a kept-alive connection (or a stream they refused) are not errors here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(hub: FakeHub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            request = Request(role, self.command, self.path, dict(self.headers.items()))
            hub.record(request)
            if role == "hub":
                _serve_hub(self, hub, request, body)
            else:
                _serve_cdn(self, hub, request, body)

    return Handler


def _reply(
    handler: BaseHTTPRequestHandler,
    request: Request,
    status: int,
    headers: dict[str, str],
    payload: bytes = b"",
    body: bool = True,
) -> None:
    request.status = status
    handler.send_response(status)
    for key, value in {**headers, "Content-Length": str(len(payload))}.items():  # HEAD: same headers as GET
        handler.send_header(key, value)
    handler.end_headers()
    if body and payload:
        handler.wfile.write(payload)


def _serve_hub(handler: BaseHTTPRequestHandler, hub: FakeHub, request: Request, body: bool) -> None:
    prefix = f"/{hub.repo_id}/resolve/"
    path = urllib.parse.unquote(urllib.parse.urlsplit(handler.path).path)
    if path.startswith(f"/api/models/{hub.repo_id}/tree/"):
        _serve_tree(handler, hub, request, body)
        return
    if not path.startswith(prefix):
        _reply(handler, request, 404, {"X-Error-Code": "RepoNotFound"}, b"repo not found", body)
        return
    revision, _, name = path[len(prefix) :].partition("/")
    if revision not in ("main", COMMIT):
        _reply(handler, request, 404, {"X-Error-Code": "RevisionNotFound"}, b"no such revision", body)
        return
    if name not in hub.files:
        _reply(
            handler, request, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, b"none", body
        )
        return
    data = hub.files[name]
    sha = hashlib.sha256(data).hexdigest()
    if name in hub.lfs:  # like the hub: metadata on the redirect itself, bytes from another origin
        headers = {
            "Location": f"{hub.cdn}/blobs/{sha}",
            "X-Repo-Commit": COMMIT,
            "X-Linked-Etag": f'"{sha}"',
            "X-Linked-Size": str(len(data)),
            "ETag": f'"{sha}"',
        }
        _reply(handler, request, 302, headers, b"", body)
        return
    git_sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{git_sha}"', "Accept-Ranges": "bytes"}
    _reply(handler, request, 200, headers, data, body)


def _serve_tree(handler: BaseHTTPRequestHandler, hub: FakeHub, request: Request, body: bool) -> None:
    """``list_repo_files``: the whole (recursive) tree in one page."""
    listing = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
               for name, data in sorted(hub.files.items())]  # fmt: skip
    folders = sorted({name.rsplit("/", 1)[0] for name in hub.files if "/" in name})
    listing += [{"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in folders]
    _reply(handler, request, 200, {"Content-Type": "application/json"}, json.dumps(listing).encode(), body)


def _serve_cdn(handler: BaseHTTPRequestHandler, hub: FakeHub, request: Request, body: bool) -> None:
    sha = urllib.parse.urlsplit(handler.path).path.rsplit("/", 1)[-1]
    data = hub.by_sha.get(sha)
    if data is None:
        _reply(handler, request, 404, {}, b"no such blob", body)
        return
    faults = hub.faults
    if faults.flip_byte is not None:
        data = bytearray(data)
        data[faults.flip_byte] ^= 0xFF
        data = bytes(data)
    match = _RANGE.match(handler.headers.get("Range", ""))
    if match is None or faults.ignore_range:
        _reply(handler, request, 200, {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"}, data, body)
        return
    first, last = int(match.group(1)), int(match.group(2) or len(data) - 1)
    last = min(last, len(data) - 1)
    if first > last:
        _reply(handler, request, 416, {"Content-Range": f"bytes */{len(data)}"}, b"", body)
        return
    request.byte_range = (first, last)
    headers = {
        "Content-Range": f"bytes {first}-{last}/{len(data)}",
        "ETag": f'"{sha}"',
        "Accept-Ranges": "bytes",
    }
    payload = data[first : last + 1]
    with hub._lock:
        hub.range_gets += body
        count = hub.range_gets
    if body and faults.drop_from is not None and count > faults.drop_from:
        _drop_midway(handler, request, headers, payload, 0)
        return
    if body and faults.drop_after:
        _drop_midway(handler, request, headers, payload, faults.drop_after.pop(0))
        return
    _reply(handler, request, 206, headers, payload, body)


def _drop_midway(
    handler: BaseHTTPRequestHandler, request: Request, headers: dict[str, str], payload: bytes, after: int
) -> None:
    """Promise the whole range, send ``after`` bytes, then cut the connection."""
    request.status = 206
    handler.send_response(206)
    for key, value in {**headers, "Content-Length": str(len(payload))}.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(payload[:after])
    handler.wfile.flush()
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)
