"""hub.resolve against a local fake hub: download once, verify, convert, then zero requests offline."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from faceedit import hub, hubnet, models
from faceedit.errors import CheckpointError, ModelUnavailableError, UsageError
from tests import fakehub
from tests.fakehub import (
    TINY_FILES,
    TINY_REPO,
    FakeHub,
    install_cards,
    tiny_stargan_card,
    tiny_stargan_files,
)

fake_hub = fakehub.fake_hub  # fixture: a running fake hub, this process online, per-test caches

NAME = "stargan-tiny"


@pytest.fixture(scope="module")
def tiny_files() -> dict[str, bytes]:
    return tiny_stargan_files()


@pytest.fixture
def tiny_hub(fake_hub: FakeHub, tiny_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    """The fake hub serving the tiny StarGAN files, and a registry card pointing at them."""
    fake_hub.commit(TINY_REPO, tiny_files)
    install_cards(monkeypatch, tiny_stargan_card())
    return fake_hub


def _blobs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("blobs/*") if p.is_file())


def test_first_resolve_downloads_imports_and_caches(tiny_hub: FakeHub, tiny_files: dict[str, bytes]) -> None:
    resolved = hub.resolve(NAME)
    assert resolved.downloaded and resolved.verified and "first download" in resolved.verification
    assert tiny_hub.count("HEAD") == 2 and tiny_hub.count("GET") == 2  # one HEAD + GET per file
    model = models.load(resolved.folder)
    assert model.config["attributes"] == ["Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"]
    assert model.config["image_size"] == 16 and model.classifier is not None
    prov = model.config["provenance"]
    assert prov["card"] == NAME and prov["hub_repo"] == TINY_REPO
    assert prov["hub_files"][TINY_FILES[0]] == hashlib.sha256(tiny_files[TINY_FILES[0]]).hexdigest()
    # raw downloads stay in the shared HF cache (visible to `hf cache ls`), named by their sha256
    hf_cache = Path(os.environ["HF_HUB_CACHE"])
    assert {p.name for p in _blobs(hf_cache)} == {hashlib.sha256(b).hexdigest() for b in tiny_files.values()}
    assert resolved.folder.is_relative_to(Path(os.environ["FACEEDIT_CACHE"]))


def test_second_run_with_the_server_stopped_makes_no_request(tiny_hub: FakeHub) -> None:
    first = hub.resolve(NAME)
    tiny_hub.stop()
    tiny_hub.clear_log()
    start = time.perf_counter()
    again = hub.resolve(NAME)
    elapsed = time.perf_counter() - start
    assert again.folder == first.folder and not again.downloaded and again.verified
    assert tiny_hub.count() == 0 and elapsed < 1.0
    assert models.load(again.folder).generator is not None


def test_lost_converted_folder_is_rebuilt_from_the_cache_without_network(tiny_hub: FakeHub) -> None:
    import shutil

    first = hub.resolve(NAME)
    shutil.rmtree(first.folder)
    tiny_hub.stop()
    tiny_hub.clear_log()
    rebuilt = hub.resolve(NAME)  # the ledger pins the commit: the raw files come from the HF cache
    assert rebuilt.downloaded and tiny_hub.count() == 0
    assert "same sha256 as the first download" in rebuilt.verification


def test_tampered_file_is_rejected_and_nothing_bad_stays_cached(tiny_hub: FakeHub) -> None:
    good = hub.resolve(NAME)
    tampered = tiny_hub.tamper(TINY_REPO, TINY_FILES[0])  # same size, other bytes, honest ETag
    assert len(tampered) == len(tiny_hub.file_bytes(TINY_REPO, TINY_FILES[1])) or True
    with pytest.raises(CheckpointError) as info:
        hub.resolve(NAME, force=True)
    assert info.value.exit_code == 4
    assert "first download" in info.value.message and f"models download {NAME} --force" in info.value.hint
    bad = hashlib.sha256(tampered).hexdigest()
    assert bad not in {p.name for p in _blobs(Path(os.environ["HF_HUB_CACHE"]))}
    assert not good.folder.exists()
    with pytest.raises(ModelUnavailableError):  # nothing usable left: offline fails instead of using it
        hub.resolve(NAME, offline=True)


def test_corrupting_cdn_is_caught_on_the_first_download(
    fake_hub: FakeHub, tiny_files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub.redirect_lfs = True  # LFS files come from a second origin, like the hub's CDN
    fake_hub.commit(TINY_REPO, tiny_files)
    fake_hub.tamper(TINY_REPO, TINY_FILES[1], keep_etag=True)  # the hub still advertises the good sha256
    install_cards(monkeypatch, tiny_stargan_card())
    with pytest.raises(CheckpointError, match="checksum the hub sent"):
        hub.resolve(NAME)
    assert fake_hub.count(contains="/blobs/") >= 1  # the body really came from the "CDN"
    hf_cache = Path(os.environ["HF_HUB_CACHE"])
    assert hashlib.sha256(tiny_files[TINY_FILES[1]]).hexdigest() not in {p.name for p in _blobs(hf_cache)}
    assert not hub.converted_dir(NAME).exists() and hub.Ledger().data["files"] == {}


def test_card_sha256_is_enforced(
    fake_hub: FakeHub, tiny_files: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = {f"{role}_sha256": hashlib.sha256(tiny_files[f]).hexdigest()
            for f, role in zip(TINY_FILES, ("generator", "discriminator"), strict=True)}  # fmt: skip
    commit = fake_hub.commit(TINY_REPO, tiny_files)
    install_cards(monkeypatch, tiny_stargan_card(revision=commit, **good))
    assert hub.resolve(NAME).verification == "sha256 of every file matches the model card"
    fake_hub.tamper(TINY_REPO, TINY_FILES[0], revision=commit)
    with pytest.raises(CheckpointError, match="pinned by the model card"):
        hub.resolve(NAME, force=True)


def test_named_and_official_generator_layouts_import_alike(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    fake_hub.commit("test/named", tiny_stargan_files(seed=3, named=True))
    fake_hub.commit("test/official", tiny_stargan_files(seed=3, named=False))
    install_cards(monkeypatch, tiny_stargan_card("tiny-named", "test/named"),
                  tiny_stargan_card("tiny-official", "test/official"))  # fmt: skip
    a = models.load(hub.resolve("tiny-named").folder).generator.state_dict()
    b = models.load(hub.resolve("tiny-official").folder).generator.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("setup", "message", "hint"),
    [
        ("no-repo", "not found (or private)", "HF_ENDPOINT"),
        ("no-file", "does not exist on the hub", "layout changed"),
        ("gated", "is gated", "HF_TOKEN"),
    ],
)
def test_hub_errors_become_one_line_with_a_hint(
    fake_hub: FakeHub, tiny_files: dict, monkeypatch: pytest.MonkeyPatch, setup: str, message: str, hint: str
) -> None:
    if setup == "no-file":
        fake_hub.commit(TINY_REPO, {TINY_FILES[1]: tiny_files[TINY_FILES[1]]})
    if setup == "gated":
        fake_hub.commit(TINY_REPO, tiny_files)
        fake_hub.repos[TINY_REPO].gated = True
    install_cards(monkeypatch, tiny_stargan_card())
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        hub.resolve(NAME, token=False)
    assert time.perf_counter() - start < 2.0  # an answer from the hub is not retried
    assert message in info.value.message and hint in info.value.hint and info.value.exit_code == 4


def test_missing_revision_names_it(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub.commit("test/ours", {"config.json": b"{}", "model.safetensors": b"x"})
    with pytest.raises(ModelUnavailableError, match="revision v9 not found") as info:
        hub.resolve("hf:test/ours@v9")
    assert "--update" in info.value.hint


@pytest.mark.parametrize("how", ["flag", "env"])
def test_offline_and_not_cached_fails_fast_with_the_hint(
    tiny_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at call time, not at import
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        hub.resolve(NAME, offline=how == "flag")
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5 and tiny_hub.count() == 0
    assert "not cached and offline" in info.value.message
    assert f"faceedit models download {NAME}" in info.value.hint


def test_our_format_repo_resolves_by_commit_and_serves_offline(
    fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _tiny_model_folder(tmp_path / "m")
    commit = fake_hub.publish_model_folder("test/ours", folder)
    first = hub.resolve("hf:test/ours")
    assert first.folder.name == commit and first.verified and fake_hub.count("GET") == 2
    assert models.load(first.folder).config == models.load(folder).config
    fake_hub.clear_log()
    hub.resolve("hf:test/ours", update=True)  # asking for news: one HEAD for the branch, then by commit
    assert fake_hub.count("HEAD") == 1 and fake_hub.count("GET") == 0
    fake_hub.stop()
    fake_hub.clear_log()
    for spec in ("hf:test/ours", f"hf:test/ours@{commit}"):
        assert hub.resolve(spec).folder == first.folder
    assert fake_hub.count() == 0


def test_local_specs(tmp_path: Path) -> None:
    folder = _tiny_model_folder(tmp_path / "m")
    for spec in (f"local:{folder}", str(folder), str(folder / "config.json")):
        resolved = hub.resolve(spec)
        assert resolved.folder == folder and not resolved.verified
    ckpt = tmp_path / "200000-G.ckpt"
    ckpt.write_bytes(b"\x80\x02")
    with pytest.raises(UsageError, match="checkpoint file"):
        hub.resolve(str(ckpt))
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        hub.resolve(f"local:{tmp_path / 'nope'}")
    with pytest.raises(UsageError, match="unknown model"):
        hub.resolve("stargan-celeba-12")


def test_card_name_wins_over_a_same_named_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stargan-celeba-128").mkdir()
    monkeypatch.chdir(tmp_path)
    assert hub.parse_spec("stargan-celeba-128") == ("card", "stargan-celeba-128")
    assert hub.parse_spec("./stargan-celeba-128") == ("local", "./stargan-celeba-128")
    assert hub.parse_spec("StarGAN-CelebA-128") == ("card", "stargan-celeba-128")
    with pytest.raises(UsageError, match="bad hub spec"):
        hub.parse_spec("hf:no-slash")


def test_download_progress_bridge_forwards_bytes_to_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """hf_hub_download drives the bar through tqdm's API: total, update(n), close()."""
    from rich.progress import Progress

    seen: list[float] = []
    monkeypatch.setattr(Progress, "advance", lambda self, task, n: seen.append(n))
    with hubnet.download_bar("stargan-tiny: g.pth", enabled=True) as cls:
        bar = cls(total=300, desc="g.pth", unit="B", unit_scale=True, initial=0, name="huggingface_hub")
        bar.update(100)
        bar.update(200)
        bar.close()
    assert seen == [100, 200]


def test_load_returns_the_model(tiny_hub: FakeHub) -> None:
    model = hub.load(NAME, device="cpu")
    assert model.arch == "stargan" and not model.generator.training


def test_import_only_card_explains_how_to_get_it() -> None:
    with pytest.raises(ModelUnavailableError) as info:
        hub.resolve("attgan-celeba-128")
    assert "faceedit models import attgan" in info.value.hint


def test_verify_rehashes_and_deletes_what_changed(tiny_hub: FakeHub) -> None:
    resolved = hub.resolve(NAME)
    checks = hub.verify()
    assert checks and all(c.status == "ok" for c in checks)
    assert {c.against for c in checks} == {"ledger"} and len(checks) == 4  # 2 downloads + 2 converted files
    blob = Path(os.path.realpath(next(Path(os.environ["HF_HUB_CACHE"]).rglob(TINY_FILES[0]))))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    bad = [c for c in hub.verify(NAME) if c.status != "ok"]
    assert [(c.status, c.removed) for c in bad] == [("mismatch", True)] and not blob.exists()
    weights = resolved.folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert any(c.status == "mismatch" for c in hub.verify(NAME)) and not resolved.folder.exists()


def test_converted_folder_changed_on_disk_is_rebuilt(tiny_hub: FakeHub) -> None:
    resolved = hub.resolve(NAME)
    weights = resolved.folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # same size, new mtime, other bytes
    again = hub.resolve(NAME)
    assert again.downloaded  # rebuilt from the verified raw download instead of being trusted
    models.load(again.folder)


def test_hub_tf_card_goes_through_the_range_importer(
    fake_hub: FakeHub, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from faceedit import registry

    src = fixtures_dir / "tf" / "ugatit_tiny"
    folder = "UGATIT_tiny_smoothing"
    fake_hub.redirect_lfs = True
    fake_hub.commit("test/ugatit-tiny", {f"{folder}/{p.name}": p.read_bytes() for p in src.iterdir()})
    base = registry.get_card("ugatit-selfie2anime-256")
    card = dataclasses.replace(
        base, name="ugatit-tiny", image_size=16,
        generator_kwargs={**base.generator_kwargs, "ngf": 1, "img_size": 16},
        source=dataclasses.replace(base.source, repo_id="test/ugatit-tiny", folder=folder,
                                   files=(registry.SourceFile("UGATIT.model-3.index", "checkpoint-index"),)),
    )  # fmt: skip
    install_cards(monkeypatch, card)
    first = hub.resolve("ugatit-tiny")
    assert "crc32c" in first.verification and fake_hub.count(contains=".data-") >= 1
    model = models.load(first.folder)
    assert model.config["direction"] == "A2B" and model.config["variant"] == "tf"
    fake_hub.stop()
    assert hub.resolve("ugatit-tiny").folder == first.folder  # cached: no network needed


def _tiny_model_folder(folder: Path) -> Path:
    config = models.make_config(
        "stargan", {"conv_dim": 8, "c_dim": 5, "repeat_num": 2},
        attributes=["Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"], image_size=16,
        template="celeba-178", resize="bilinear",
        conditioning={"scheme": "stargan", "thres_int": 0.5, "rules": "port"},
    )  # fmt: skip
    return models.save(models.build(config), folder)
