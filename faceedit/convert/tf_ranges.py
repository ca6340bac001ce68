"""HTTP Range transfers of TF checkpoint tensors: which byte ranges to ask for (neighbours merged), the
partial store that keeps finished tensors between runs, and the resumable streaming fetcher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from faceedit import __version__, settings
from faceedit.convert.tf_bundle import TensorEntry, read_entry
from faceedit.errors import CheckpointError, ModelUnavailableError
from faceedit.hubnet import first_line as _one_line

if TYPE_CHECKING:
    import httpx2

log = logging.getLogger("faceedit")

MERGE_GAP = 1 << 20  # bytes of unwanted data worth reading to save one request (~latency x bandwidth)
MAX_STALLS = 4  # consecutive reconnects that bring no new byte before giving up
RETRY_WAIT = 0.5  # seconds before the 2nd reconnect without progress; doubles up to 8 s

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


# ------------------------------------------------------------------------------------- range plan


@dataclass(frozen=True)
class Segment:
    """The still-missing bytes ``[start, end)`` of one tensor in its shard."""

    entry: TensorEntry
    start: int

    @property
    def end(self) -> int:
        return self.entry.end


@dataclass(frozen=True)
class RangeRequest:
    """One HTTP Range request: ``[start, end)`` of a shard, covering one or more segments (gaps skipped)."""

    shard: int
    start: int
    end: int
    segments: tuple[Segment, ...]


def plan_requests(segments: Iterable[Segment], max_gap: int = MERGE_GAP) -> list[RangeRequest]:
    """Merge segments of the same shard whose gap is at most ``max_gap`` bytes into one request each."""
    ordered = sorted(segments, key=lambda s: (s.entry.shard, s.start))
    requests: list[RangeRequest] = []
    group: list[Segment] = []
    for seg in ordered:
        if group and (seg.entry.shard != group[0].entry.shard or seg.start - group[-1].end > max_gap):
            requests.append(RangeRequest(group[0].entry.shard, group[0].start, group[-1].end, tuple(group)))
            group = []
        group.append(seg)
    if group:
        requests.append(RangeRequest(group[0].entry.shard, group[0].start, group[-1].end, tuple(group)))
    return requests


# -------------------------------------------------------------------------------- the partial store


class PartialStore:
    """Fetched tensor bytes on disk, keyed by the data file's ETag, so an interrupted fetch resumes.

    ``<key>/<shard>-<offset>-<size>.part`` grows as bytes arrive and is renamed ``.bin`` once complete;
    every tensor is crc-checked when loaded, so a damaged or stale piece is refetched, never used.
    """

    def __init__(self, repo_id: str, data_file: str, etag: str, root: Path | None = None) -> None:
        key = hashlib.sha256(f"{repo_id}\0{data_file}\0{etag}".encode()).hexdigest()[:24]
        self.folder = (root or settings.cache_root()) / "tf-ranges" / key
        self.folder.mkdir(parents=True, exist_ok=True)
        about = self.folder / "source.json"
        if not about.exists():
            about.write_text(json.dumps({"repo_id": repo_id, "file": data_file, "etag": etag}) + "\n")

    def _path(self, entry: TensorEntry, suffix: str) -> Path:
        return self.folder / f"{entry.shard}-{entry.offset}-{entry.size}{suffix}"

    def have(self, entry: TensorEntry) -> int:
        """Bytes of ``entry`` already on disk (its size when complete)."""
        done = self._path(entry, ".bin")
        if done.exists():
            if done.stat().st_size == entry.size:
                return entry.size
            done.unlink()
        part = self._path(entry, ".part")
        if part.exists():
            if part.stat().st_size <= entry.size:
                return part.stat().st_size
            part.unlink()
        return 0

    def open_part(self, entry: TensorEntry, at: int) -> BinaryIO:
        """Append handle positioned ``at`` bytes into the tensor (anything beyond is dropped)."""
        f = open(self._path(entry, ".part"), "ab")  # noqa: SIM115 - closed by the writer
        f.truncate(at)
        return f

    def complete(self, entry: TensorEntry) -> None:
        os.replace(self._path(entry, ".part"), self._path(entry, ".bin"))

    def load(self, entry: TensorEntry, source: str) -> np.ndarray:
        """The tensor, crc-verified; a bad piece is deleted so that the next run refetches it."""
        path = self._path(entry, ".bin")
        try:
            with open(path, "rb") as f:
                return read_entry(f, entry, source, at=0)
        except CheckpointError:
            path.unlink(missing_ok=True)
            raise

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# --------------------------------------------------------------------------------- the transfer


@dataclass
class FetchStats:
    """What a fetch cost: HTTP requests sent, bytes asked for (incl. merged gaps), payload, resumed bytes."""

    requests: int = 0
    bytes_requested: int = 0
    bytes_payload: int = 0
    bytes_resumed: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    ranges: list[tuple[int, int, int]] = field(default_factory=list)  # (shard, first byte, last byte)
    files: list[dict[str, Any]] = field(default_factory=list)  # per data file: path, commit, etag, size


class _RangeWriter:
    """Routes the bytes of one request into the part files of its segments, skipping the gaps."""

    def __init__(self, request: RangeRequest, store: PartialStore, on_payload: Callable[[int], None]) -> None:
        self.request, self.store, self.on_payload = request, store, on_payload
        self.pos = request.start
        self._pending = list(request.segments)
        self._file: BinaryIO | None = None

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if not self._pending:
                raise CheckpointError("the server sent more bytes than requested", "retry the download")
            seg = self._pending[0]
            if self.pos < seg.start:  # merged gap: bytes of tensors we do not want
                skip = min(len(view), seg.start - self.pos)
                view, self.pos = view[skip:], self.pos + skip
                continue
            if self._file is None:
                self._file = self.store.open_part(seg.entry, self.pos - seg.entry.offset)
            take = min(len(view), seg.end - self.pos)
            self._file.write(view[:take])
            view, self.pos = view[take:], self.pos + take
            self.on_payload(take)
            if self.pos == seg.end:
                self._file.close()
                self._file = None
                self.store.complete(seg.entry)
                self._pending.pop(0)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _check_partial_response(response: httpx2.Response, first: int, last: int, size: int | None) -> None:
    if response.status_code != 206:
        raise ModelUnavailableError(
            f"the hub answered {response.status_code} instead of 206 to a Range request",
            "a proxy may strip Range headers; whole-file downloads are refused (the file is huge)",
        )
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    total = None if not match or match.group(3) == "*" else int(match.group(3))
    if not match or (int(match.group(1)), int(match.group(2))) != (first, last) or (size and total != size):
        raise ModelUnavailableError(
            f"the hub sent bytes {response.headers.get('Content-Range')!r} for a request of {first}-{last}"
            + (f"/{size}" if size else ""),
            "retry later",
        )


class RangeFetcher:
    """Streams range requests from a hub file's resolve URL (redirects followed; auth stays on the hub)."""

    def __init__(self, url: str, size: int | None, token: bool | str | None, stats: FetchStats) -> None:
        from huggingface_hub.utils import build_hf_headers

        self.url, self.size, self.stats = url, size, stats
        self.headers = build_hf_headers(token=token, library_name="faceedit", library_version=__version__)
        self.headers["Accept-Encoding"] = "identity"  # byte offsets must be those of the file

    def run(self, request: RangeRequest, writer: _RangeWriter) -> None:
        """Fetch ``request``; a dropped connection resumes from the last byte received."""
        stalls = 0
        while writer.pos < request.end:
            before = writer.pos
            try:
                self._stream(writer.pos, request.end - 1, writer)
            except _transient_errors() as e:
                log.info("connection lost at byte %d (%s); resuming", writer.pos, _one_line(e))
            if writer.pos < request.end:
                stalls = 0 if writer.pos > before else stalls + 1
                self.stats.reconnects += 1
                if stalls > MAX_STALLS:
                    raise ModelUnavailableError(
                        f"the transfer of bytes {writer.pos}-{request.end - 1} keeps failing",
                        "check your connection and run the command again: finished tensors are kept",
                    )
                time.sleep(min(RETRY_WAIT * 2 ** (stalls - 1), 8.0) if stalls else 0.0)

    def _stream(self, first: int, last: int, writer: _RangeWriter) -> None:
        from huggingface_hub import constants
        from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff

        headers = {**self.headers, "Range": f"bytes={first}-{last}"}
        self.stats.requests += 1
        self.stats.bytes_requested += last - first + 1
        self.stats.ranges.append((writer.request.shard, first, last))
        with http_stream_backoff(
            "GET",
            self.url,
            headers=headers,
            timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT,
            retry_on_exceptions=(),
        ) as response:
            hf_raise_for_status(response)
            _check_partial_response(response, first, last, self.size)
            for chunk in response.iter_bytes():  # as received: bytes before a cut are kept
                writer.feed(chunk)


def _transient_errors() -> tuple[type[Exception], ...]:
    import httpx2

    return (httpx2.NetworkError, httpx2.TimeoutException, httpx2.RemoteProtocolError)
