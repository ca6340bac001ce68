"""Detail modes of ``faceedit edit``: the change lands at the photo's resolution (``--detail transfer``),
no-op edits change no pixel, non-finite generator outputs fail their photo and are never pasted."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceedit import api, attributes, images, models
from faceedit.batch import OutputPlan
from faceedit.cli import app
from faceedit.face import align, blend, detect
from tests.standin import ATTRIBUTES, standin_engine

runner = CliRunner()


@pytest.fixture(scope="module")
def big_photo(astronaut_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The astronaut at 2x (a ~200-px face, twice the model's crop) with fine texture added."""
    rgb = np.asarray(Image.open(astronaut_path).convert("RGB"))
    big = cv2.resize(rgb, (1024, 1024), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    grain = np.random.default_rng(0).integers(-12, 13, big.shape[:2])[..., None]  # skin-like texture
    path = tmp_path_factory.mktemp("photos") / "big.png"
    Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8)).save(path)
    return path


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = np.asarray(a) != np.asarray(b)
    return diff.reshape(diff.shape[0], diff.shape[1], -1).any(axis=2)


def _laplacian_energy(rgb: np.ndarray, box: tuple[int, ...]) -> float:
    x0, y0, x1, y1 = box
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float((cv2.Laplacian(gray, cv2.CV_32F)[y0:y1, x0:x1] ** 2).mean())


def _edit(paths: list[Path], out: Path, detail: str, engine: Any = None, **kwargs: Any) -> api.Report:
    request = api.EditRequest(
        spec=attributes.EditSpec(add=("Blond_Hair",), **kwargs),
        source=attributes.parse_source("Black_Hair", ATTRIBUTES),
        paste=api.PasteOptions(detail=detail),
    )
    plan = OutputPlan(out_dir=out, suffix=f"_{detail}", format="png")
    return api.edit_many(paths, engine or standin_engine(), request, plan, workers=1)


# ----------------------------------------------------------------------------------- blend level


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_zero_change_leaves_every_pixel_exact(astronaut_path: Path, dtype: type) -> None:
    photo = images.read(astronaut_path)
    face = detect.detect(photo.rgb)[0]
    aligned = align.align(photo.rgb, face, "celeba-178", 128)
    scale = {np.uint8: 1, np.uint16: 257, np.float32: 1 / 255}[dtype]
    pixels = np.dstack([photo.rgb.astype(np.float64) * scale, np.full((512, 512), 9 * scale)]).astype(dtype)
    out = pixels.copy()
    tiny = np.full((128, 128, 3), 1.0 / 255, np.float32)  # below the significance threshold
    for delta in (np.zeros((128, 128, 3), np.float32), tiny):
        assert blend.add_change_into(out, delta, aligned.matrix) is False
    np.testing.assert_array_equal(out, pixels)


def test_a_local_change_touches_only_where_it_rounds_to_something(astronaut_path: Path) -> None:
    photo = images.read(astronaut_path)
    aligned = align.align(photo.rgb, detect.detect(photo.rgb)[0], "celeba-178", 128)
    delta = np.zeros((128, 128, 3), np.float32)
    delta[20:40, 40:90] = (0.2, 0.1, -0.1)  # a hair-colour patch
    gray = cv2.cvtColor(photo.rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([photo.rgb, np.full((512, 512), 77, np.uint8)])
    for pixels in (rgba, gray):
        out = pixels.copy()
        assert blend.add_change_into(out, delta, aligned.matrix)
        weight = blend.change_weight(delta)
        inverse = cv2.invertAffineTransform(aligned.matrix)
        reach = cv2.warpAffine(weight, inverse, (512, 512), flags=cv2.INTER_LINEAR) > 0
        reach = cv2.dilate(reach.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # bicubic support
        moved = _changed(out, pixels)
        assert moved.any() and not (moved & ~reach).any()  # nothing beyond the soft mask moved
        assert reach.mean() < 0.1  # the mask is the patch's neighbourhood, not the crop
        if pixels.ndim == 3:
            assert (out[..., 3] == 77).all()
            centre = cv2.transform(np.array([[[65.0, 30.0]]]), inverse)[0, 0].round().astype(int)
            shift = out[centre[1], centre[0], :3].astype(int) - pixels[centre[1], centre[0], :3]
            np.testing.assert_allclose(shift, np.array([0.2, 0.1, -0.1]) * 255, atol=3)


def test_a_non_finite_change_is_refused(astronaut_path: Path) -> None:
    photo = images.read(astronaut_path)
    aligned = align.align(photo.rgb, detect.detect(photo.rgb)[0], "celeba-178", 128)
    delta = np.zeros((128, 128, 3), np.float32)
    delta[5, 5, 0] = np.nan
    out = photo.pixels.copy()
    with pytest.raises(ValueError, match="non-finite"):
        blend.add_change_into(out, delta, aligned.matrix)
    np.testing.assert_array_equal(out, photo.pixels)


# ---------------------------------------------------------------------- with the stand-in model


def test_transfer_keeps_the_detail_and_shows_the_edit(big_photo: Path, tmp_path: Path) -> None:
    before = np.asarray(Image.open(big_photo))
    box = tuple(int(v) for v in detect.detect(before)[0].box)
    top = slice(max(box[1] - (box[3] - box[1]) // 2, 0), box[1])  # above the face box: hair
    ratios, hair, after = {}, {}, {}
    for detail in ("transfer", "replace"):
        report = _edit([big_photo], tmp_path, detail)
        assert report.exit_code == 0, report.items
        after[detail] = np.asarray(Image.open(report.items[0].outputs[0]))
        ratios[detail] = _laplacian_energy(after[detail], box) / _laplacian_energy(before, box)
        red = after[detail][top, box[0] : box[2], 0].astype(int) - before[top, box[0] : box[2], 0]
        hair[detail] = float(red.mean())
    assert ratios["transfer"] >= 0.8, ratios
    assert ratios["replace"] < 0.5, ratios  # the measure tells the two modes apart
    assert hair["transfer"] > 10 and hair["replace"] > 5, hair  # the blond shift is visible in both
    moved = _changed(after["transfer"], before)
    assert 0.005 < moved.mean() < 0.5 * _changed(after["replace"], before).mean()  # the hair band only
    assert not moved[box[3] :].any()  # below the face box (the stand-in changes the hair) all is exact


class _Poisoned:
    """An engine whose generator returns NaN for grey faces (R = G = B), like a damaged weight would."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.config = engine, engine.config

    def classify(self, x: Any, batch_size: int = 16) -> None:
        return None

    def generate(self, x: Any, cond: Any = None, batch_size: int = 16) -> Any:
        out = self.engine.generate(x, cond, batch_size)
        grey = (x[:, 0] - x[:, 1]).abs().flatten(1).amax(1) == 0
        out.images[grey] = float("nan")
        return out


def test_non_finite_output_fails_that_photo_and_writes_the_rest(astronaut_path: Path, tmp_path: Path) -> None:
    grey = np.repeat(np.asarray(Image.open(astronaut_path).convert("L"))[..., None], 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    for detail in ("transfer", "replace"):
        out = tmp_path / detail
        report = _edit(
            [tmp_path / "grey.png", astronaut_path], out, detail, engine=_Poisoned(standin_engine())
        )
        bad, good = report.items
        assert report.exit_code == 5
        assert bad.status == "failed" and "not finite" in (bad.error or "") and not bad.outputs
        assert good.status == "ok" and good.outputs[0].exists()
        assert sorted(p.name for p in out.iterdir()) == [f"astronaut_{detail}.png"]


# ----------------------------------------------------------------------------- through the CLI


def _stargan_folder(root: Path, poison: bool = False) -> Path:
    import torch

    torch.manual_seed(0)
    config = models.make_config(
        "stargan",
        {"conv_dim": 8, "c_dim": 5, "repeat_num": 1},
        attributes=ATTRIBUTES,
        image_size=32,
        template="celeba-178",
        resize="bilinear",
        conditioning={"scheme": "stargan", "thres_int": 0.5, "rules": "port"},
    )
    model = models.build(config)
    if poison:  # finite weights (a NaN weight is refused at save and load) whose outputs overflow to NaN
        with torch.no_grad():
            next(model.generator.parameters()).fill_(3e38)
    return models.save(model, root / ("poisoned" if poison else "tiny"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _stargan_folder(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize(
    "args",
    [
        ["--add", "Black_Hair", "--source", "Black_Hair"],
        ["--add", "Blond_Hair", "--source", "Male", "--intensity", "0"],
        ["--add", "Black_Hair", "--source", "Black_Hair", "--detail", "replace"],
    ],
)
def test_cli_no_op_changes_no_pixel(
    astronaut_path: Path, tiny: Path, tmp_path: Path, args: list[str]
) -> None:
    rgba = np.dstack([np.asarray(Image.open(astronaut_path)), np.full((512, 512), 200, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    result = runner.invoke(app, ["edit", str(astronaut_path), str(tmp_path / "rgba.png"), "-m", str(tiny),
                                 "-o", str(tmp_path / "out"), *args])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name, original in (("astronaut", astronaut_path), ("rgba", tmp_path / "rgba.png")):
        after = np.asarray(Image.open(tmp_path / "out" / f"{name}_edited.png"))
        np.testing.assert_array_equal(after, np.asarray(Image.open(original)))


def test_cli_detail_modes_and_their_options(astronaut_path: Path, tiny: Path, tmp_path: Path) -> None:
    base = ["edit", str(astronaut_path), "-m", str(tiny), "-o", str(tmp_path), "--add", "Blond_Hair",
            "--source", "Black_Hair"]  # fmt: skip
    outputs = {}
    for detail in ("transfer", "replace"):
        result = runner.invoke(app, [*base, "--detail", detail, "--suffix", f"_{detail}"])
        assert result.exit_code == 0, result.output
        outputs[detail] = np.asarray(Image.open(tmp_path / f"astronaut_{detail}.png"))
    before = np.asarray(Image.open(astronaut_path))
    assert _changed(outputs["replace"], before).sum() > _changed(outputs["transfer"], before).sum()
    poisson = runner.invoke(app, [*base, "--detail", "replace", "--blend", "poisson", "--suffix", "_p"])
    assert poisson.exit_code == 0, poisson.output
    for bad in (["--color-match", "full"], ["--blend", "poisson"], ["--detail", "sharp"]):
        result = runner.invoke(app, [*base, *bad, "--suffix", "_x"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert not (tmp_path / "astronaut_x.png").exists()
    assert "--detail replace" in runner.invoke(app, [*base, "--blend", "poisson"]).output


def test_cli_damaged_model_fails_each_photo_and_pastes_nothing(astronaut_path: Path, tmp_path: Path) -> None:
    poisoned = _stargan_folder(tmp_path, poison=True)
    out = tmp_path / "out"
    result = runner.invoke(app, ["edit", str(astronaut_path), "-m", str(poisoned), "-o", str(out),
                                 "--add", "Blond_Hair", "--source", "Black_Hair"])  # fmt: skip
    assert result.exit_code == 5, result.output
    assert "not finite" in result.output and "Traceback" not in result.output
    assert not list(out.glob("*.png"))


@pytest.mark.slow
def test_shared_png_photos_no_op_and_sharpness(shared_dir: Path, tmp_path: Path) -> None:
    """Issue 12's done-when on the real photos: a no-op is 0 pixels; transfer keeps >= 0.8 sharpness."""
    photos = sorted((shared_dir / "photos").glob("*.png"))
    assert len(photos) >= 5
    engine = standin_engine()
    noop = api.EditRequest(
        spec=attributes.EditSpec(add=("Black_Hair",)),
        source=attributes.parse_source("Black_Hair", ATTRIBUTES),
    )
    report = api.edit_many(photos, engine, noop, OutputPlan(out_dir=tmp_path / "noop", suffix=""), workers=1)
    for item in report.items:
        assert item.status == "ok", item
        assert not _changed(images.read(item.outputs[0]).pixels, images.read(item.input).pixels).any(), item
    edited = _edit(photos, tmp_path / "edit", "transfer", engine=engine)
    for item in edited.items:
        before, after = images.read(item.input), images.read(item.outputs[0])
        for face in detect.detect(before.rgb):
            box = tuple(int(v) for v in face.box)
            ratio = _laplacian_energy(after.rgb, box) / _laplacian_energy(before.rgb, box)
            assert ratio >= 0.8, (item.input.name, ratio)
        assert _changed(after.pixels, before.pixels).any(), item.input.name


def test_paste_options_default_to_transfer_and_anime_replaces() -> None:
    assert api.PasteOptions().detail == "transfer"
    assert api.AnimeRequest().paste.detail == "replace"
    assert dataclasses.replace(api.PasteOptions(), detail="replace").color_match == "partial"


@pytest.mark.parametrize("scheme", ["stargan", "attgan", "stgan-tf"])
def test_no_op_edits_are_recognised_for_every_scheme(scheme: str) -> None:
    """AttGAN and TF STGAN scale the edited entries, so their conditioning differs from the
    reconstruction's even when the edit asks for nothing: the labels decide."""
    arch, variant = ("stgan", "tf") if scheme == "stgan-tf" else (scheme, "port")
    conditioning = attributes.default_conditioning(arch, variant)
    names = list(attributes.ATTGAN_ATTRIBUTES) if scheme != "stargan" else ATTRIBUTES
    source = np.zeros((2, len(names)), np.float32)
    source[0, names.index("Black_Hair")] = 1.0

    def no_op(spec: attributes.EditSpec) -> list[bool]:
        cond = attributes.encode(conditioning, names, source, spec)
        rebuilt = attributes.encode(conditioning, names, source, attributes.EditSpec())
        return api._asks_nothing(conditioning, names, source, spec, cond, rebuilt).tolist()

    assert no_op(attributes.EditSpec(add=("Black_Hair",))) == [True, False]
    assert no_op(attributes.EditSpec(add=("Blond_Hair",), intensity=0.0)) == [True, True]
    assert no_op(attributes.EditSpec(add=("Blond_Hair",))) == [False, False]
