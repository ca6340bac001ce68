"""Fetch selected tensors of a TensorFlow checkpoint on the Hugging Face hub with HTTP Range requests.

Only the small ``.index`` is downloaded whole (hf_hub_download: cached, offline-capable); the ``.data``
shards are read in byte ranges, so a generator comes out of an 8 GB training checkpoint without the rest.
Which ranges, how they are streamed, resumed and kept between runs: ``tf_ranges``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceedit import __version__, hubnet
from faceedit.convert.tf_bundle import (
    BundleIndex,
    TensorEntry,
    parse_index,
    shard_name,
)
from faceedit.convert.tf_prefix import choose_prefix
from faceedit.convert.tf_ranges import (
    MERGE_GAP,
    FetchStats,
    PartialStore,
    RangeFetcher,
    Segment,
    _RangeWriter,
    plan_requests,
)
from faceedit.errors import CheckpointError, ModelUnavailableError

if TYPE_CHECKING:
    from faceedit.models import FaceModel

log = logging.getLogger("faceedit")


ProgressCallback = Callable[[int, int], None]  # (payload bytes done, payload bytes in total)


# ----------------------------------------------------------------------------------- hub plumbing


def _download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None,
    endpoint: str | None,
    token: bool | str | None,
    offline: bool,
) -> Path:
    from huggingface_hub import hf_hub_download

    errors = hubnet.hub_errors(repo_id, filename, revision=revision, endpoint=endpoint, offline=offline)
    with errors, hubnet.bounded():
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                endpoint=endpoint,
                token=token,
                local_files_only=offline,
                library_name="faceedit",
                library_version=__version__,
            )
        )


# ------------------------------------------------------------------------------- locating the files


@dataclass(frozen=True)
class RemoteCheckpoint:
    """A checkpoint on the hub whose index has been downloaded and parsed."""

    repo_id: str
    folder: str
    prefix: str
    revision: str | None
    index: BundleIndex

    def path_in_repo(self, name: str) -> str:
        return f"{self.folder}/{name}" if self.folder else name

    def data_file(self, shard: int) -> str:
        return self.path_in_repo(shard_name(self.prefix, shard, self.index.num_shards))

    @property
    def index_file(self) -> str:
        return self.path_in_repo(self.prefix + ".index")


def discover_prefix(
    repo_id: str,
    folder: str,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    token: bool | str | None = None,
    offline: bool = False,
) -> str:
    """The newest checkpoint prefix of a hub folder (:func:`~faceedit.convert.tf_prefix.choose_prefix`)."""
    folder = folder.strip("/")
    where = f"{repo_id}/{folder}"
    try:
        state = _download(
            repo_id,
            f"{folder}/checkpoint" if folder else "checkpoint",
            revision=revision,
            endpoint=endpoint,
            token=token,
            offline=offline,
        )
    except ModelUnavailableError as e:
        from huggingface_hub.errors import RemoteEntryNotFoundError

        if offline or not isinstance(e.__cause__, RemoteEntryNotFoundError):  # not merely unreachable
            raise
        return choose_prefix(where, None, _files_in(repo_id, folder, revision, endpoint, token))
    return choose_prefix(where, state.read_text(encoding="utf-8", errors="replace"), [])


def _files_in(
    repo_id: str, folder: str, revision: str | None, endpoint: str | None, token: bool | str | None
) -> list[str]:
    """Names of the files directly inside ``folder`` of the repo."""
    from huggingface_hub import HfApi

    with hubnet.hub_errors(repo_id, folder, revision=revision, endpoint=endpoint), hubnet.bounded():
        files = HfApi(endpoint=endpoint, token=token).list_repo_files(repo_id, revision=revision)
    inside = [f for f in files if f.startswith(f"{folder}/" if folder else "")]
    return [f.rsplit("/", 1)[-1] for f in inside if f.count("/") == folder.count("/") + (1 if folder else 0)]


def open_remote_checkpoint(
    repo_id: str,
    folder: str,
    *,
    prefix: str | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    token: bool | str | None = None,
    offline: bool = False,
) -> RemoteCheckpoint:
    """Download (or take from the cache) and parse the ``.index`` of a checkpoint in a hub folder."""
    folder = folder.strip("/")
    if prefix is None:
        prefix = discover_prefix(
            repo_id, folder, revision=revision, endpoint=endpoint, token=token, offline=offline
        )
    index_file = f"{folder}/{prefix}.index" if folder else f"{prefix}.index"
    path = _download(repo_id, index_file, revision=revision, endpoint=endpoint, token=token, offline=offline)
    index = parse_index(path.read_bytes(), f"{repo_id}/{index_file}")
    return RemoteCheckpoint(repo_id, folder, prefix, revision, index)


def fetch_tensors(
    remote: RemoteCheckpoint,
    names: Iterable[str],
    *,
    endpoint: str | None = None,
    token: bool | str | None = None,
    max_gap: int = MERGE_GAP,
    progress: ProgressCallback | None = None,
    store_root: Path | None = None,
    stats: FetchStats | None = None,
) -> dict[str, np.ndarray]:
    """Named tensors of a hub checkpoint, fetched by Range requests and crc-verified.

    Finished tensors are kept on disk until the whole set is verified, so an interrupted run resumes;
    on success that temporary store is removed (callers cache the converted model instead).
    """
    stats = stats if stats is not None else FetchStats()
    wanted = [remote.index.entries[n] for n in dict.fromkeys(names)]
    by_shard: dict[int, list[TensorEntry]] = {}
    for entry in wanted:
        by_shard.setdefault(entry.shard, []).append(entry)
    started = time.perf_counter()
    out: dict[str, np.ndarray] = {}
    for shard, entries in sorted(by_shard.items()):
        out.update(
            _fetch_shard(
                remote,
                shard,
                entries,
                endpoint=endpoint,
                token=token,
                max_gap=max_gap,
                progress=progress,
                store_root=store_root,
                stats=stats,
            )
        )
    stats.seconds = time.perf_counter() - started
    return {e.name: out[e.name] for e in wanted}


def _fetch_shard(
    remote: RemoteCheckpoint,
    shard: int,
    entries: list[TensorEntry],
    *,
    endpoint: str | None,
    token: bool | str | None,
    max_gap: int,
    progress: ProgressCallback | None,
    store_root: Path | None,
    stats: FetchStats,
) -> dict[str, np.ndarray]:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    data_file = remote.data_file(shard)
    errors = hubnet.hub_errors(remote.repo_id, data_file, revision=remote.revision, endpoint=endpoint)
    with errors, hubnet.bounded():
        meta = get_hf_file_metadata(
            hf_hub_url(remote.repo_id, data_file, revision=remote.revision, endpoint=endpoint),
            token=token,
            endpoint=endpoint,
            library_name="faceedit",
            library_version=__version__,
        )
    _check_data_size(remote, shard, meta.size, data_file)
    # Pin every range to the commit the metadata came from: all bytes from one version of the file.
    url = hf_hub_url(
        remote.repo_id, data_file, revision=meta.commit_hash or remote.revision, endpoint=endpoint
    )
    stats.files.append({"path": data_file, "commit": meta.commit_hash, "etag": meta.etag, "size": meta.size})
    store = PartialStore(remote.repo_id, data_file, meta.etag or "no-etag", store_root)
    segments = [Segment(e, e.offset + store.have(e)) for e in entries]
    stats.bytes_resumed += sum(s.start - s.entry.offset for s in segments)
    missing = [s for s in segments if s.start < s.end]
    total = sum(s.end - s.start for s in missing)
    with _progress(progress, total, f"fetching {len(missing)} tensors") as advance:
        fetcher = RangeFetcher(url, meta.size, token, stats)
        for request in plan_requests(missing, max_gap):
            writer = _RangeWriter(request, store, advance)
            try:
                with hubnet.hub_errors(
                    remote.repo_id, data_file, revision=remote.revision, endpoint=endpoint
                ):
                    fetcher.run(request, writer)
            finally:
                writer.close()
        stats.bytes_payload += total
    source = f"{remote.repo_id}/{data_file}"
    tensors = {e.name: store.load(e, source) for e in entries}
    store.remove()
    return tensors


def _check_data_size(remote: RemoteCheckpoint, shard: int, size: int | None, data_file: str) -> None:
    """The shard must be at least as long as the index says (it is exactly that long for Saver files)."""
    needed = max((e.end for e in remote.index.entries.values() if e.shard == shard), default=0)
    if size is not None and size < needed:
        raise CheckpointError(
            f"{remote.repo_id}/{data_file} has {size} bytes but the index needs {needed}",
            "the index and data files do not belong together",
        )
    if size is not None and size != needed:
        log.info("%s: %d bytes, index accounts for %d", data_file, size, needed)


@contextlib.contextmanager
def _progress(
    callback: ProgressCallback | None, total: int, description: str
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: drives ``callback(done, total)`` or, without one, a rich bar on stderr."""
    done = 0
    if callback is not None:

        def advance(n: int) -> None:
            nonlocal done
            done += n
            callback(done, total)

        callback(0, total)
        yield advance
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from faceedit import console

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(
        *columns, console=console.err, transient=True, disable=not console.progress_enabled()
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


# ----------------------------------------------------------------------------------- U-GAT-IT


def import_ugatit_from_hub(
    repo_id: str,
    folder: str,
    revision: str | None = None,
    direction: str = "A2B",
    endpoint: str | None = None,
    token: bool | str | None = None,
    offline: bool = False,
    progress: ProgressCallback | None = None,
    *,
    prefix: str | None = None,
    max_gap: int = MERGE_GAP,
    smoothing: bool | None = None,
    stats: FetchStats | None = None,
) -> FaceModel:
    """The U-GAT-IT generator of an official TF checkpoint on the hub, fetched alone by byte ranges.

    ``direction`` A2B (selfie -> anime) reads scope ``generator_B``, B2A reads ``generator_A``. The Adam
    slots and discriminators stay on the server. ``smoothing`` defaults to the folder name's ``_smoothing``.
    """
    from faceedit.convert import tf_plans as tfimport

    if offline:
        raise ModelUnavailableError(
            f"{repo_id}/{folder}: importing the TF checkpoint needs the hub (its tensors are read remotely)",
            "run once online; the converted model is cached afterwards",
        )
    remote = open_remote_checkpoint(
        repo_id, folder, prefix=prefix, revision=revision, endpoint=endpoint, token=token, offline=offline
    )
    names = tfimport.ugatit_tensor_names(remote.index.entries, direction)
    if smoothing is None:
        smoothing = "smoothing" in folder.rsplit("/", 1)[-1]
    stats = stats if stats is not None else FetchStats()
    tensors = fetch_tensors(
        remote, names, endpoint=endpoint, token=token, max_gap=max_gap, progress=progress, stats=stats
    )
    data = stats.files[0] if stats.files else {}
    provenance = {
        "source_file": f"hf://{repo_id}/{remote.index_file}",
        "source_sha256": remote.index.sha256,  # the index; each fetched tensor was crc32c-checked against it
        "source_revision": data.get("commit") or remote.revision,
        "index_sha256": remote.index.sha256,
        "index_size": remote.index.nbytes,
        "data_file": data.get("path"),
        "data_etag": data.get("etag"),  # for LFS files the sha256 of the whole 8 GB file
        "data_size": data.get("size"),
        "fetched_bytes": stats.bytes_requested,
    }
    return tfimport.ugatit_from_tensors(
        remote.index.entries, tensors, direction=direction, smoothing=smoothing, provenance=provenance
    )
