"""Range fetch of a TF checkpoint from a loopback hub + CDN: only the generator's bytes, verified, resumed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants as hf_constants

from faceedit.convert import tf_ranges
from faceedit.convert import tf_remote as tfremote
from faceedit.convert.tf_bundle import TensorEntry, open_checkpoint
from faceedit.convert.tf_plans import import_tf_checkpoint, is_slot
from faceedit.convert.tf_ranges import FetchStats, Segment, plan_requests
from faceedit.convert.tf_remote import import_ugatit_from_hub
from faceedit.errors import CheckpointError, ModelUnavailableError
from tests.rangeserver import FakeHub

FOLDER = "UGATIT_selfie2anime_tiny_smoothing"
DATA = "UGATIT.model-3.data-00000-of-00001"
TOKEN = "hf_test_token_123"
_ids = itertools.count()


@pytest.fixture
def tiny(fixtures_dir: Path) -> Path:
    return fixtures_dir / "tf" / "ugatit_tiny"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Talk to the loopback hub (conftest makes the session offline) with a private faceedit cache."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("FACEEDIT_CACHE", str(tmp_path / "faceedit-cache"))
    monkeypatch.setattr(tf_ranges, "RETRY_WAIT", 0.0)


@pytest.fixture
def hub(tiny: Path, online: None) -> Iterator[FakeHub]:
    repo = f"test/ugatit-{next(_ids)}"  # a fresh repo id: nothing cached from another test
    with FakeHub.from_folder(repo, tiny, FOLDER, (".data-00000-of-00001",)) as server:
        yield server


def _fetch(hub: FakeHub, **kwargs: object) -> tuple[object, FetchStats]:
    stats = FetchStats()
    model = import_ugatit_from_hub(
        hub.repo_id, FOLDER, endpoint=hub.endpoint, token=TOKEN, stats=stats, **kwargs
    )
    return model, stats


def _same_weights(model: object, reference: object) -> None:
    got, want = model.generator.state_dict(), reference.generator.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key


def _selected(tiny: Path, scope: str) -> list[TensorEntry]:
    entries = open_checkpoint(tiny).entries
    return sorted(
        (e for n, e in entries.items() if n.startswith(scope) and not is_slot(n)), key=lambda e: e.offset
    )


def _cdn_gets(hub: FakeHub) -> list:
    return [r for r in hub.requests if r.server == "cdn" and r.method == "GET"]


# -------------------------------------------------------------------------------------- the happy path


def test_only_generator_ranges_are_fetched_and_match_a_local_read(hub: FakeHub, tiny: Path) -> None:
    max_gap = 64
    model, stats = _fetch(hub, max_gap=max_gap, progress=lambda done, total: None)
    _same_weights(model, import_tf_checkpoint("ugatit", tiny, direction="A2B"))
    assert model.config["variant"] == "tf" and model.config["direction"] == "A2B"
    assert model.config["provenance"]["data_etag"] and model.config["provenance"]["source_revision"]

    wanted = _selected(tiny, "generator_B/")
    everything = open_checkpoint(tiny).entries.values()
    data_size = max(e.end for e in everything)
    ranges = hub.served_ranges()
    assert len(ranges) == stats.requests == len(_cdn_gets(hub)) < len(wanted)  # some neighbours merged
    covered = set()
    for first, last in ranges:
        inside = [e for e in wanted if e.offset <= last and e.end > first]
        assert inside[0].offset == first and inside[-1].end == last + 1  # starts and ends on wanted tensors
        for a, b in itertools.pairwise(inside):
            assert b.offset - a.end <= max_gap  # only small gaps were bridged
        covered.update(e.name for e in inside)
    assert covered == {e.name for e in wanted}
    big_slots = [e for e in everything if is_slot(e.name) and e.size > max_gap]
    for first, last in ranges:  # no Adam slot's bulk is ever requested
        assert not [s.name for s in big_slots if s.offset <= last and s.end > first]
    payload = sum(e.size for e in wanted)
    assert stats.bytes_payload == payload and payload <= stats.bytes_requested < payload + max_gap * len(
        wanted
    )
    assert stats.bytes_requested < 0.2 * data_size


def test_auth_stays_on_the_hub_and_every_data_get_is_ranged(hub: FakeHub) -> None:
    _fetch(hub, max_gap=0)
    hub_requests = [r for r in hub.requests if r.server == "hub"]
    assert hub_requests and all(_auth(r) == f"Bearer {TOKEN}" for r in hub_requests)
    assert _cdn_gets(hub) and all(_auth(r) is None for r in _cdn_gets(hub))
    assert all(
        r.headers.get("Range", r.headers.get("range", "")).startswith("bytes=") for r in _cdn_gets(hub)
    )
    data_gets = [r for r in hub_requests if r.method == "GET" and DATA in r.path]
    assert all("0123456789abcdef" in r.path for r in data_gets)  # pinned to the commit of the metadata call


def _auth(request: object) -> str | None:
    return {k.lower(): v for k, v in request.headers.items()}.get("authorization")


def test_b2a_without_merging_is_one_request_per_tensor(hub: FakeHub, tiny: Path) -> None:
    model, stats = _fetch(hub, direction="B2A", max_gap=0)
    _same_weights(model, import_tf_checkpoint("ugatit", tiny, direction="B2A"))
    wanted = _selected(tiny, "generator_A/")
    assert sorted(hub.served_ranges()) == [(e.offset, e.end - 1) for e in wanted]
    assert stats.requests == len(wanted) == 92


def test_prefix_found_by_listing_when_there_is_no_checkpoint_file(tiny: Path, online: None) -> None:
    with FakeHub.from_folder(f"test/nostate-{next(_ids)}", tiny, FOLDER, (".data-00000-of-00001",)) as hub:
        del hub.files[f"{FOLDER}/checkpoint"]
        remote = tfremote.open_remote_checkpoint(hub.repo_id, FOLDER, endpoint=hub.endpoint)
    assert remote.prefix == "UGATIT.model-3" and len(remote.index.entries) == 554


# ------------------------------------------------------------------------------------- failures


def test_dropped_connections_resume_mid_range(hub: FakeHub, tiny: Path) -> None:
    hub.faults.drop_after = [5, 1000, 0, 3]  # one merged request: each cut resumes where it stopped
    model, stats = _fetch(hub)
    _same_weights(model, import_tf_checkpoint("ugatit", tiny))
    firsts = [first for first, _ in hub.served_ranges()]
    assert stats.reconnects == 4 and firsts[1] == firsts[0] + 5 and firsts[2] == firsts[1] + 1000


def test_interrupted_run_fails_cleanly_then_resumes(hub: FakeHub, tiny: Path, tmp_path: Path) -> None:
    hub.faults.drop_from = 40  # the 41st range request and all after it die before their first byte
    with pytest.raises(ModelUnavailableError, match="keeps failing") as info:
        _fetch(hub, max_gap=0)
    assert "\n" not in str(info.value)
    finished = {r for r in hub.served_ranges()[:40]}
    hub.faults.drop_from, hub.requests[:] = None, []
    model, stats = _fetch(hub, max_gap=0)
    _same_weights(model, import_tf_checkpoint("ugatit", tiny))
    assert stats.requests == 92 - 40 and not finished & set(hub.served_ranges())
    assert stats.bytes_resumed == sum(last - first + 1 for first, last in finished)
    assert not list((tmp_path / "faceedit-cache" / "tf-ranges").iterdir())  # store removed after success


def test_next_run_continues_inside_a_half_fetched_tensor(hub: FakeHub, tiny: Path) -> None:
    wanted = _selected(tiny, "generator_B/")
    fc = open_checkpoint(tiny).entries["generator_B/MLP/linear_0/dense/kernel"]
    cut = fc.offset + 100  # the single merged request starts at the first wanted tensor
    hub.faults.drop_after, hub.faults.drop_from = [cut - wanted[0].offset], 1  # then the network is gone
    with pytest.raises(ModelUnavailableError):
        _fetch(hub)
    assert hub.served_ranges()[0][0] == wanted[0].offset
    hub.faults.drop_from, hub.requests[:] = None, []
    model, stats = _fetch(hub)
    _same_weights(model, import_tf_checkpoint("ugatit", tiny))
    assert hub.served_ranges()[0][0] == cut  # continued from the partial file, not from the tensor start
    assert stats.bytes_resumed + stats.bytes_payload == sum(e.size for e in wanted)


def test_corrupted_byte_is_caught_by_crc_and_only_that_tensor_is_refetched(hub: FakeHub, tiny: Path) -> None:
    fc = open_checkpoint(tiny).entries["generator_B/MLP/linear_0/dense/kernel"]
    hub.faults.flip_byte = fc.offset + 17
    with pytest.raises(CheckpointError, match="MLP/linear_0/dense/kernel' fails its crc32c") as info:
        _fetch(hub, max_gap=0)
    assert "\n" not in str(info.value)
    hub.faults.flip_byte, hub.requests[:] = None, []
    model, stats = _fetch(hub, max_gap=0)
    assert hub.served_ranges() == [(fc.offset, fc.end - 1)] and stats.requests == 1
    _same_weights(model, import_tf_checkpoint("ugatit", tiny))


def test_a_server_ignoring_range_is_refused(hub: FakeHub) -> None:
    hub.faults.ignore_range = True
    with pytest.raises(ModelUnavailableError, match="200 instead of 206"):
        _fetch(hub)


def test_data_file_shorter_than_the_index_says(hub: FakeHub) -> None:
    name = f"{FOLDER}/{DATA}"
    hub.files[name] = hub.files[name][:-100]
    hub.by_sha = {__import__("hashlib").sha256(d).hexdigest(): d for d in hub.files.values()}
    with pytest.raises(CheckpointError, match="index needs 80048"):
        _fetch(hub)


def test_offline_is_a_clear_error_without_any_request(tiny: Path) -> None:
    with FakeHub.from_folder("test/offline", tiny, FOLDER, (".data-00000-of-00001",)) as hub:
        for call in (
            lambda: import_ugatit_from_hub(hub.repo_id, FOLDER, endpoint=hub.endpoint, offline=True),
            lambda: import_ugatit_from_hub(hub.repo_id, FOLDER, endpoint=hub.endpoint),  # HF_HUB_OFFLINE=1
        ):
            with pytest.raises(ModelUnavailableError) as info:
                call()
            assert "\n" not in str(info.value)
        assert hub.requests == []


def test_index_is_cached_for_offline_use(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    tfremote.open_remote_checkpoint(hub.repo_id, FOLDER, endpoint=hub.endpoint)
    before = len(hub.requests)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    remote = tfremote.open_remote_checkpoint(hub.repo_id, FOLDER, endpoint=hub.endpoint, offline=True)
    assert remote.prefix == "UGATIT.model-3" and len(hub.requests) == before


# ------------------------------------------------------------------------------------------- plans


def _entry(offset: int, size: int, shard: int = 0) -> TensorEntry:
    return TensorEntry(f"t{offset}", 1, (size // 4,), shard, offset, size, 0)


def test_plan_merges_small_gaps_per_shard_only() -> None:
    entries = [_entry(0, 8), _entry(8, 4), _entry(20, 4), _entry(1000, 40), _entry(0, 8, shard=1)]
    segments = [Segment(e, e.offset) for e in entries] + [
        Segment(_entry(2000, 100), 2060)
    ]  # 40 bytes resumed
    plan = plan_requests(segments, max_gap=8)
    assert [(r.shard, r.start, r.end, len(r.segments)) for r in plan] == [
        (0, 0, 24, 3), (0, 1000, 1040, 1), (0, 2060, 2100, 1), (1, 0, 8, 1),
    ]  # fmt: skip
    assert len(plan_requests(segments, max_gap=10_000)) == 2
    assert len(plan_requests(segments, max_gap=0)) == 5  # adjacent tensors still share a request


def test_received_bytes_land_in_the_right_tensor(tmp_path: Path) -> None:
    entries = [_entry(0, 4), _entry(10, 8)]
    store = tf_ranges.PartialStore("r", "f", "etag", tmp_path)
    (request,) = plan_requests([Segment(e, e.offset) for e in entries], max_gap=100)
    seen = []
    writer = tf_ranges._RangeWriter(request, store, seen.append)
    blob = bytes(range(18))
    for piece in (blob[:3], blob[3:12], blob[12:]):
        writer.feed(piece)
    assert (tmp_path / "tf-ranges").exists() and sum(seen) == 12
    assert np.frombuffer((store.folder / "0-10-8.bin").read_bytes(), np.uint8).tolist() == list(range(10, 18))
    with pytest.raises(CheckpointError, match="more bytes than requested"):
        writer.feed(b"x")
