"""`faceedit edit` and `faceedit anime` end to end: tiny models, the astronaut photo, the fake hub."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceedit import models
from faceedit.cli import app
from tests import fakehub
from tests.fakehub import TINY_FILES, TINY_REPO, FakeHub, install_cards, tiny_stargan_card, tiny_stargan_files

fake_hub = fakehub.fake_hub  # fixture: a running fake hub, this process online, per-test caches
runner = CliRunner()
STARGAN_ATTRS = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"]


def _stargan_folder(root: Path, size: int = 32, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    config = models.make_config(
        "stargan",
        {"conv_dim": 8, "c_dim": 5, "repeat_num": 1},
        attributes=STARGAN_ATTRS,
        image_size=size,
        template="celeba-178",
        resize="bilinear",
        conditioning={"scheme": "stargan", "thres_int": 0.5, "rules": "port"},
        classifier_kwargs={"image_size": size, "conv_dim": 8, "c_dim": 5, "repeat_num": 3},
    )
    return models.save(models.build(config), root / "stargan-tiny")


def _ugatit_folder(root: Path) -> Path:
    import torch

    torch.manual_seed(1)
    config = models.make_config(
        "ugatit",
        {"ngf": 4, "n_blocks": 1, "img_size": 64, "light": True},
        attributes=[],
        image_size=64,
        template="selfie",
        resize="bilinear",
        conditioning={"scheme": "none", "thres_int": 0.5, "rules": "port"},
    )
    return models.save(models.build(config), root / "ugatit-tiny")


@pytest.fixture(scope="module")
def stargan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _stargan_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def ugatit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _ugatit_folder(tmp_path_factory.mktemp("models"))


def _face_box(path: Path) -> tuple[float, float, float, float]:
    from faceedit import images
    from faceedit.face import detect

    return detect.detect(images.read(path).rgb)[0].box


def _changed_box(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int]:
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    ys, xs = np.nonzero(diff.reshape(diff.shape[0], diff.shape[1], -1).max(axis=2))
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_edit_changes_only_the_face_region(astronaut_path: Path, stargan_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Blond_Hair", "-m", str(stargan_dir),
                                 "-o", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = tmp_path / "astronaut_edited.png"
    assert result.stdout.strip().splitlines() == [str(out)]
    before, after = Image.open(astronaut_path), Image.open(out)
    assert after.size == before.size and after.mode == before.mode
    a, b = np.asarray(before), np.asarray(after)
    assert not np.array_equal(a, b)
    x0, y0, x1, y1 = _changed_box(a, b)
    fx0, fy0, fx1, fy1 = _face_box(astronaut_path)
    side = max(fx1 - fx0, fy1 - fy0)
    cx, cy = (fx0 + fx1) / 2, (fy0 + fy1) / 2
    # the CelebA framing reaches ~1.2 face widths around the face centre; nothing beyond it may change
    assert cx - 1.6 * side <= x0 and x1 <= cx + 1.6 * side
    assert cy - 1.6 * side <= y0 and y1 <= cy + 1.6 * side
    assert (x1 - x0) * (y1 - y0) < 0.5 * a.shape[0] * a.shape[1]


def test_edit_keeps_mode_and_depth(astronaut_path: Path, stargan_dir: Path, tmp_path: Path) -> None:
    import cv2

    rgb = np.asarray(Image.open(astronaut_path))
    alpha = np.full(rgb.shape[:2], 200, np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    cv2.imwrite(str(tmp_path / "deep.png"), (rgb[..., ::-1].astype(np.uint16) * 257))
    out = tmp_path / "out"
    result = runner.invoke(app, ["edit", str(tmp_path / "rgba.png"), str(tmp_path / "gray.png"),
                                 str(tmp_path / "deep.png"), "--remove", "Young", "-m", str(stargan_dir),
                                 "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    rgba = Image.open(out / "rgba_edited.png")
    assert rgba.mode == "RGBA" and np.array_equal(np.asarray(rgba)[..., 3], alpha)
    assert Image.open(out / "gray_edited.png").mode == "L"
    deep = cv2.imread(str(out / "deep_edited.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == rgb.shape


def test_folder_with_a_corrupt_file_writes_the_rest_and_exits_5(
    astronaut_path: Path, stargan_dir: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(astronaut_path, photos / "a.png")
    shutil.copy(astronaut_path, photos / "c.png")
    (photos / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    out = tmp_path / "out"
    result = runner.invoke(app, ["edit", str(photos), "--add", "Male", "-m", str(stargan_dir), "-o", str(out),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 5, result.output
    doc = json.loads(result.stdout)
    status = {Path(item["input"]).name: item["status"] for item in doc["items"]}
    assert status == {"a.png": "ok", "b.jpg": "failed", "c.png": "ok"}
    assert doc["summary"] == {"ok": 2, "skipped": 0, "no_face": 0, "failed": 1} and doc["exit_code"] == 5
    assert sorted(p.name for p in out.iterdir()) == ["a_edited.png", "c_edited.png"]  # nothing half-written
    failed = next(item for item in doc["items"] if item["status"] == "failed")
    assert "b.jpg" in failed["error"]
    faces = next(item for item in doc["items"] if item["status"] == "ok")["faces_detail"]
    assert len(faces) == 1 and set(faces[0]["probabilities"]) == set(STARGAN_ATTRS)


def test_unknown_attribute_exits_2_and_lists_the_known_ones(
    astronaut_path: Path, stargan_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Blond_Hiar", "-m", str(stargan_dir),
                                 "-o", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2
    assert "Blond_Hair" in result.output and "Black_Hair" in result.output
    assert not list(tmp_path.iterdir())


def test_no_face_anywhere_exits_3(stargan_dir: Path, tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    Image.fromarray(np.dstack([ramp, ramp[::-1], ramp.T])).save(tmp_path / "ramp.png")
    result = runner.invoke(app, ["edit", str(tmp_path / "ramp.png"), "--add", "Male", "-m", str(stargan_dir),
                                 "-o", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "no face" in result.output


def test_existing_outputs_are_refused_skipped_or_replaced(
    astronaut_path: Path, stargan_dir: Path, tmp_path: Path
) -> None:
    args = ["edit", str(astronaut_path), "--add", "Male", "-m", str(stargan_dir), "-o", str(tmp_path)]
    args += ["--source", "none"]  # so that the two edits below really differ
    assert runner.invoke(app, args).exit_code == 0
    target = tmp_path / "astronaut_edited.png"
    first = target.read_bytes()
    refused = runner.invoke(app, args)
    assert refused.exit_code == 5 and "already exists" in refused.output and target.read_bytes() == first
    assert runner.invoke(app, [*args, "--skip-existing"]).exit_code == 0
    replaced = runner.invoke(app, [*args[:3], "Young", *args[4:], "--overwrite"])
    assert replaced.exit_code == 0 and target.read_bytes() != first


def test_grid_and_crops_are_written(astronaut_path: Path, stargan_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Male,Young", "-m", str(stargan_dir),
                                 "-o", str(tmp_path), "--grid", "--save-crops"])  # fmt: skip
    assert result.exit_code == 0, result.output
    grid = Image.open(tmp_path / "astronaut_edited_grid.png")
    # input, reconstruction, Male alone, Young alone, both: 5 cells of 32 px with 2 px gutters
    assert grid.size == (5 * 32 + 4 * 2, 32)
    assert Image.open(tmp_path / "astronaut_edited_face0_in.png").size == (32, 32)


def test_sweep_grid_has_one_column_per_intensity(
    astronaut_path: Path, stargan_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Blond_Hair", "-m", str(stargan_dir),
                                 "-o", str(tmp_path), "--grid", "--sweep", "0:1:3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "astronaut_edited_grid.png").size == (5 * 32 + 4 * 2, 32)


def test_source_override_replaces_the_classifier_estimate(
    astronaut_path: Path, stargan_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Blond_Hair", "-m", str(stargan_dir),
                                 "-o", str(tmp_path), "--source", "Brown_Hair,Young", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    face = json.loads(result.stdout)["items"][0]["faces_detail"][0]
    assert face["source"] == ["Brown_Hair", "Young"]


def test_usage_errors_exit_2(astronaut_path: Path, stargan_dir: Path, tmp_path: Path) -> None:
    base = ["edit", str(astronaut_path), "-m", str(stargan_dir), "-o", str(tmp_path)]
    assert runner.invoke(app, base).exit_code == 2  # nothing to edit
    assert runner.invoke(app, [*base, "--add", "Male", "--remove", "Male"]).exit_code == 2
    assert runner.invoke(app, [*base, "--add", "Male", "--device", "cuda:7"]).exit_code == 2
    assert runner.invoke(app, [*base, "--add", "Male", "--face", "leftmost"]).exit_code == 2
    missing = runner.invoke(
        app, ["edit", str(tmp_path / "nothing-*.png"), "--add", "Male", "-m", str(stargan_dir)]
    )
    assert missing.exit_code == 2 and "no input images" in missing.output


def test_missing_model_folder_exits_4(astronaut_path: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Male", "-m", str(tmp_path / "nope")])
    assert result.exit_code in (2, 4), result.output


def test_anime_on_the_face_and_on_the_whole_picture(
    astronaut_path: Path, ugatit_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["anime", str(astronaut_path), "-m", str(ugatit_dir), "-o", str(tmp_path),
                                 "--grid"])  # fmt: skip
    assert result.exit_code == 0, result.output
    before = np.asarray(Image.open(astronaut_path))
    face = np.asarray(Image.open(tmp_path / "astronaut_anime.png"))
    assert face.shape == before.shape and not np.array_equal(face, before)
    assert np.array_equal(face[-20:], before[-20:])  # far from the face nothing moved
    assert Image.open(tmp_path / "astronaut_anime_grid.png").size == (
        3 * 64 + 2 * 2,
        64,
    )  # input, output, CAM
    whole = runner.invoke(app, ["anime", str(astronaut_path), "-m", str(ugatit_dir), "-o", str(tmp_path),
                                "--whole", "--suffix", "_whole"])  # fmt: skip
    assert whole.exit_code == 0, whole.output
    translated = np.asarray(Image.open(tmp_path / "astronaut_whole.png"))
    assert translated.shape == before.shape and not np.array_equal(translated[-20:], before[-20:])


def test_anime_intensity_zero_returns_the_photo_almost_unchanged(
    astronaut_path: Path, ugatit_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["anime", str(astronaut_path), "-m", str(ugatit_dir), "-o", str(tmp_path),
                                 "--intensity", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    before = np.asarray(Image.open(astronaut_path)).astype(np.int32)
    after = np.asarray(Image.open(tmp_path / "astronaut_anime.png")).astype(np.int32)
    assert np.abs(after - before).mean() < 1.0  # only resampling of the round trip


def test_anime_refuses_an_attribute_model(astronaut_path: Path, stargan_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["anime", str(astronaut_path), "-m", str(stargan_dir), "-o", str(tmp_path)])
    assert result.exit_code == 2 and "U-GAT-IT" in result.output


# --------------------------------------------------------------------------------------- fake hub


@pytest.fixture
def tiny_card(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> str:
    fake_hub.commit(TINY_REPO, tiny_stargan_files(image_size=32))
    card = dataclasses.replace(tiny_stargan_card(), image_size=32)
    install_cards(monkeypatch, card)
    return card.name


def test_first_edit_downloads_then_works_with_the_hub_gone(
    astronaut_path: Path, fake_hub: FakeHub, tiny_card: str, tmp_path: Path
) -> None:
    args = ["edit", str(astronaut_path), "--add", "Blond_Hair", "-m", tiny_card, "-o", str(tmp_path)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert fake_hub.count("GET") == 2  # generator and discriminator files, once
    fake_hub.stop()
    fake_hub.clear_log()
    second = runner.invoke(app, [*args, "--overwrite"])
    assert second.exit_code == 0, second.output
    assert fake_hub.count() == 0


def test_tampered_weights_exit_4_and_nothing_is_written(
    astronaut_path: Path, fake_hub: FakeHub, tiny_card: str, tmp_path: Path
) -> None:
    args = ["edit", str(astronaut_path), "--add", "Male", "-m", tiny_card, "-o", str(tmp_path / "out")]
    assert runner.invoke(app, args).exit_code == 0
    fake_hub.tamper(TINY_REPO, TINY_FILES[0])  # same size, other bytes, history rewritten
    result = runner.invoke(app, ["models", "download", tiny_card, "--force"])
    assert result.exit_code == 4, result.output
    assert "sha256" in result.output or "does not match" in result.output


def test_missing_repo_exits_4_with_a_hint(
    astronaut_path: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_cards(monkeypatch, tiny_stargan_card(name="stargan-missing", repo_id="nobody/nothing"))
    result = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Male", "-m", "stargan-missing",
                                 "-o", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 4, result.output
    assert "nobody/nothing" in result.output
    assert not list(tmp_path.iterdir())


def test_real_process_offline_without_cache_exits_4(astronaut_path: Path, tmp_path: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "FACEEDIT_CACHE": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf"),
           "PATH": "/usr/bin:/bin", "FACEEDIT_NO_PROGRESS": "1"}  # fmt: skip
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "faceedit",
            "edit",
            str(astronaut_path),
            "--add",
            "Blond_Hair",
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 4, proc.stderr
    assert "faceedit models download stargan-celeba-128" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.png"))


def test_anime_with_the_official_tf_card_through_a_ranged_hub(
    astronaut_path: Path,
    fake_hub: FakeHub,
    fixtures_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`faceedit anime` with a card like ugatit-selfie2anime-256: TF index + only the generator's ranges."""
    from faceedit import registry

    src = fixtures_dir / "tf" / "ugatit_tiny"
    folder = "UGATIT_tiny_smoothing"
    fake_hub.redirect_lfs = True  # /resolve/ answers 302 to a second origin, like the hub's CDN
    fake_hub.commit("test/ugatit-tiny", {f"{folder}/{p.name}": p.read_bytes() for p in src.iterdir()})
    base = registry.get_card("ugatit-selfie2anime-256")
    files = (registry.SourceFile("UGATIT.model-3.index", "checkpoint-index"),)
    card = dataclasses.replace(
        base,
        name="ugatit-tiny",
        image_size=16,
        generator_kwargs={**base.generator_kwargs, "ngf": 1, "img_size": 16},
        source=dataclasses.replace(base.source, repo_id="test/ugatit-tiny", folder=folder, files=files),
    )
    install_cards(monkeypatch, card)
    result = runner.invoke(app, ["anime", str(astronaut_path), "-m", "ugatit-tiny", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data_gets = [r for r in fake_hub.requests if r.method == "GET" and ".data-" in r.path]
    assert data_gets and all("Range" in r.headers or "range" in r.headers for r in data_gets)
    assert (tmp_path / "astronaut_anime.png").is_file()
    fake_hub.stop()
    again = runner.invoke(app, ["anime", str(astronaut_path), "-m", "ugatit-tiny", "-o", str(tmp_path / "2")])
    assert again.exit_code == 0, again.output  # cached: the hub is no longer needed


def test_unresolvable_hub_fails_fast_without_library_chatter(
    astronaut_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import time

    import huggingface_hub.constants as constants

    fakehub.isolate_caches(monkeypatch, tmp_path / "caches")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.faceedit-test.invalid")  # .invalid never resolves
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    start = time.monotonic()
    result = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Male", "-o", str(tmp_path / "out")])
    assert result.exit_code == 4, result.output
    assert time.monotonic() - start < 10  # huggingface_hub alone would retry for ~23 s
    assert "faceedit models download stargan-celeba-128" in result.output
    assert "Retrying" not in result.output
    anime = runner.invoke(app, ["anime", str(astronaut_path), "-o", str(tmp_path / "out")])  # the TF card
    assert anime.exit_code == 4 and "Retrying" not in anime.output, anime.output
    assert "faceedit models download ugatit-selfie2anime-256" in anime.output
