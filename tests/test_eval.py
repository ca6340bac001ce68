"""`faceedit eval`: the STGAN paper's protocol on a synthetic CelebA folder, checked against independent
computations on the images it saved; known answers for an editor that changes nothing; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn
from typer.testing import CliRunner

from faceedit import attributes, classifier, evaluation, models
from faceedit.cli import app
from faceedit.cli.eval import table
from faceedit.data import TEMPLATES, load_image
from faceedit.errors import UsageError
from faceedit.runtime import Engine
from faceedit.training import config, loop
from tests._tiny import _randomise, tiny_model
from tests.synthdata import make_celeba

ATTRS = ("Blond_Hair", "Eyeglasses")
runner = CliRunner()


def _classifier() -> models.FaceModel:
    """A random attcls classifier at the release's 128 px frame (tiny width)."""
    model = models.build(classifier.attcls_config({"dim": 2}))
    _randomise(model.classifier, 3)
    return model


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic CelebA folder, an AttGAN trained on it for a few steps, the classifier folder."""
    tmp = tmp_path_factory.mktemp("eval")
    root = make_celeba(tmp / "celeba", n=24, seed=2)
    cfg = config.load(
        "attgan",
        overrides={
            "data": str(root), "attrs": ",".join(ATTRS), "steps": 12, "batch_size": 8, "image_size": 32,
            "split": "celeba", "log_every": 100, "sample_every": 0, "checkpoint_every": 0, "workers": 0,
            "device": "cpu", "seed": 0, "enc_dim": 8, "dec_dim": 8, "enc_layers": 3, "dec_layers": 3,
            "dis_dim": 8, "dis_layers": 3, "dis_fc_dim": 16,
        },
    )  # fmt: skip
    model = loop.fit(cfg, tmp / "run")
    cls = models.save(_classifier(), tmp / "cls")
    return {"root": root, "model": model, "cls": cls, "tmp": tmp}


def _eval(world: dict[str, Path], *extra: str) -> tuple[int, str]:
    args = ["eval", f"local:{world['model']}", "--data", str(world["root"]), "--classifier"]
    result = runner.invoke(app, [*args, f"local:{world['cls']}", "--device", "cpu", *extra])
    return result.exit_code, result.output


def _labels(root: Path) -> dict[str, np.ndarray]:
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    header = lines[1].split()
    cols = [header.index(a) + 1 for a in ATTRS]
    return {f.split()[0]: (np.array([int(f.split()[c]) for c in cols]) > 0) for f in lines[2:]}


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_end_to_end_metrics_match_independent_computations(world: dict[str, Path]) -> None:
    saved = world["tmp"] / "saved"
    code, out = _eval(
        world, "--split", "all", "--limit", "6", "--batch-size", "4", "--json", "--save-images", str(saved)
    )
    assert code == 0, out
    doc = json.loads(out)
    (result,) = doc["models"]
    assert doc["images"] == result["images"] == 6 and doc["split"] == "all"
    names = sorted(p.name[: -len("_input.png")] for p in saved.glob("*_input.png"))
    assert names == [f"{i:06d}" for i in range(1, 7)]
    inputs = [_png(saved / f"{n}_input.png") for n in names]
    recons = [_png(saved / f"{n}_recon.png") for n in names]
    assert inputs[0].shape == (32, 32, 3)
    psnrs = [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(inputs, recons, strict=True)]
    ssims = [
        structural_similarity(a, b, channel_axis=-1, data_range=255)
        for a, b in zip(inputs, recons, strict=True)
    ]
    assert result["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-9)
    assert result["ssim"] == pytest.approx(np.mean(ssims), abs=1e-9)

    classifier = models.load(world["cls"])
    matrix = evaluation.frame_matrix("celeba-170", 32, "celeba-tf", 128)
    labels = _labels(world["root"])
    truth = np.stack([labels[f"{n}.jpg"] for n in names])
    columns = [attributes.CELEBA_ATTRIBUTES.index(a) for a in ATTRS]
    for i, attr in enumerate(ATTRS):
        edited = [_png(saved / f"{n}_{attr}.png") for n in names]
        x = torch.from_numpy(np.stack(evaluation.to_frame(edited, matrix, 128))).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            pred = classifier.classifier(x / 127.5 - 1)[:, columns].numpy() > 0
        acc = np.mean(pred[:, i] == ~truth[:, i])  # the official toggle flips the attribute
        err = np.mean(pred[:, 1 - i] != truth[:, 1 - i])
        assert result["attributes"][attr]["accuracy"] == pytest.approx(acc)
        assert result["attributes"][attr]["preservation_error"] == pytest.approx(err)
    means = [np.mean([result["attributes"][a][k] for a in ATTRS]) for k in ("accuracy", "preservation_error")]
    assert [result["mean_accuracy"], result["mean_preservation_error"]] == pytest.approx(means)
    assert "celeba-170@32 -> celeba-tf@128" in result["crop_mapping"]


def test_same_run_twice_same_numbers_and_default_test_split(world: dict[str, Path]) -> None:
    runs = [_eval(world, "--json") for _ in range(2)]
    assert all(code == 0 for code, _ in runs), runs[0][1]
    first, second = (json.loads(out) for _, out in runs)
    assert first == second
    assert first["split"] == "test" and first["images"] == 3  # partition 2 of the synthetic folder
    code, out = _eval(world, "--limit", "2")
    assert code == 0, out
    assert "Blond_Hair" in out and "reconstruction PSNR" in out and "images" in out


class Passthrough(nn.Module):
    """An editor that returns its input unchanged, whatever it is asked."""

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return x.clone()


def test_editor_that_changes_nothing_known_answers(tmp_path: Path) -> None:
    base = tiny_model("attgan")
    cfg = {**base.config, "attributes": list(ATTRS), "template": "celeba-178"}
    editor = Engine(models.FaceModel(Passthrough(), cfg), "cpu", "fp32", optimise=False)
    judge = Engine(_classifier(), "cpu", "fp32", optimise=False)
    scorer = evaluation.Scorer(editor, judge, "identity", evaluation.Options(batch_size=16))
    root = make_celeba(tmp_path / "celeba", n=8, seed=5, partition=False)
    # labels = what the classifier sees in each face, so an unchanged image is "correctly preserved"
    names = sorted(p.name for p in (root / "img_align_celeba").iterdir())
    crops = [load_image(root / "img_align_celeba" / n, TEMPLATES["celeba-178"], 32) for n in names]
    seen = scorer._predict(crops)
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    header = lines[1].split()
    rows = []
    for line, pred in zip(lines[2:], seen, strict=True):
        fields = line.split()
        for attr, value in zip(ATTRS, pred, strict=True):
            fields[header.index(attr) + 1] = "1" if value else "-1"
        rows.append(" ".join(fields))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines[:2] + rows) + "\n")

    from faceedit.data.celeba import read_index

    index = read_index(root, ATTRS, split="all")
    result = evaluation.evaluate(scorer, index, evaluation.eval_rows(index, "all", None))
    assert result["images"] == 8
    assert all(s == {"accuracy": 0.0, "preservation_error": 0.0} for s in result["attributes"].values())
    assert result["psnr"] == "inf" and result["ssim"] == pytest.approx(1.0)
    lines = table({"models": [result]})
    assert any("PSNR" in line and line.split()[-1] == "inf" for line in lines)
    assert json.loads(json.dumps(result))["psnr"] == "inf"  # valid JSON, said in words


def test_frame_mapping_is_geometric() -> None:
    """A smooth aligned photo cropped for the model, mapped into the classifier's frame, equals the
    classifier's own crop of the same photo (up to resampling)."""
    yy, xx = np.mgrid[0:218, 0:178].astype(np.float64)
    photo = np.stack([xx * 1.2, yy, 255 - (xx + yy) / 2], axis=-1).clip(0, 255).astype(np.uint8)
    aligned = Image.fromarray(photo)
    for template, size in (("celeba-178", 128), ("celeba-170", 32), ("celeba-178", 256)):
        src = _crop(aligned, template, size)
        mapped = evaluation.to_frame([src], evaluation.frame_matrix(template, size, "celeba-tf", 128), 128)[0]
        direct = _crop(aligned, "celeba-tf", 128)
        inner = (slice(4, -4), slice(4, -4))  # borders are replicated where the model's crop ends
        assert np.abs(mapped[inner].astype(int) - direct[inner].astype(int)).max() <= 3, template
    assert evaluation.frame_matrix("celeba-tf", 128, "celeba-tf", 128) is None
    with pytest.raises(UsageError, match="not a box of CelebA"):
        evaluation.frame_matrix("selfie", 256, "celeba-tf", 128)


def _crop(photo: Image.Image, template: str, size: int) -> np.ndarray:
    box = TEMPLATES[template].box(*photo.size)
    return np.asarray(photo.crop(box).resize((size, size), Image.Resampling.BILINEAR))


def test_official_test_range_without_partition_file() -> None:
    class Index:
        root, names, partition = Path("x"), tuple(f"{i:06d}.jpg" for i in range(1, 182641)), None

    rows = evaluation.eval_rows(Index(), "test", None)
    assert [Index.names[r] for r in rows] == ["182638.jpg", "182639.jpg", "182640.jpg"]
    assert len(evaluation.eval_rows(Index(), "test", 2)) == 2
    with pytest.raises(UsageError, match="--split all"):
        evaluation.eval_rows(
            type("Small", (), {"root": Path("x"), "names": ("a",), "partition": None})(), "test", None
        )


@pytest.mark.parametrize("case", ["no-folder", "malformed", "ugatit", "classifier-lacks", "saved-not-empty"])
def test_bad_input_is_one_line_exit_2(world: dict[str, Path], tmp_path: Path, case: str) -> None:
    args = {"model": f"local:{world['model']}", "data": str(world["root"]), "cls": f"local:{world['cls']}"}
    extra: list[str] = []
    expect = ""
    if case == "no-folder":  # checked before the model, which does not exist either
        args["data"], expect = str(tmp_path / "missing"), "does not exist"
        args["model"] = f"local:{tmp_path / 'no-model'}"
    elif case == "malformed":
        bad = tmp_path / "bad"
        (bad / "img_align_celeba").mkdir(parents=True)
        (bad / "list_attr_celeba.txt").write_text("2\nBlond_Hair Eyeglasses\nx.jpg 1\n")
        args["data"], expect = str(bad), "malformed"
    elif case == "ugatit":
        args["model"] = f"local:{models.save(tiny_model('ugatit'), tmp_path / 'ug')}"
        expect = "does not edit attributes"
    elif case == "classifier-lacks":  # StarGAN's discriminator head knows 5 attributes, not Eyeglasses
        args["cls"] = f"local:{models.save(tiny_model('stargan'), tmp_path / 'sg')}"
        expect = "classifier does not know Eyeglasses"
    else:
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x.txt").write_text("x")
        extra, expect = ["--save-images", str(tmp_path / "full")], "not empty"
    result = runner.invoke(
        app,
        [
            "eval",
            args["model"],
            "--data",
            args["data"],
            "--classifier",
            args["cls"],
            "--device",
            "cpu",
            *extra,
        ],
    )
    assert result.exit_code == 2, result.output
    assert expect in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) <= 3  # one (wrapped) line


def test_intensity_reaches_the_conditioning(world: dict[str, Path], tmp_path: Path) -> None:
    outs = []
    for value in ("1", "2"):
        saved = tmp_path / value
        code, out = _eval(world, "--json", "--limit", "2", "--intensity", value, "--save-images", str(saved))
        assert code == 0, out
        outs.append((json.loads(out), saved))
    (doc1, dir1), (doc2, dir2) = outs
    assert (doc1["intensity"], doc2["intensity"]) == (1.0, 2.0)
    r1, r2 = doc1["models"][0], doc2["models"][0]
    assert r1["psnr"] == r2["psnr"] and r1["ssim"] == r2["ssim"]  # reconstruction ignores test_int
    name = sorted(p.name for p in dir1.glob("*_Blond_Hair.png"))[0]
    assert not np.array_equal(_png(dir1 / name), _png(dir2 / name))  # the edit itself is stronger
    recon = name.replace("Blond_Hair", "recon")
    assert np.array_equal(_png(dir1 / recon), _png(dir2 / recon))


def test_several_models_side_by_side(world: dict[str, Path], tmp_path: Path) -> None:
    other = models.save(tiny_model("stgan"), tmp_path / "stgan")  # 10 attributes, celeba-178 crop
    saved = tmp_path / "saved"
    args = [
        "eval",
        f"local:{world['model']}",
        f"local:{other}",
        f"local:{other}",
        "--data",
        str(world["root"]),
    ]
    args += [
        "--classifier",
        f"local:{world['cls']}",
        "--device",
        "cpu",
        "--limit",
        "1",
        "--save-images",
        str(saved),
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [len(r["attributes"]) for r in doc["models"]] == [2, 10, 10]
    assert doc["models"][1] == {
        **doc["models"][2],
        "model": doc["models"][1]["model"],
    }  # same model, same numbers
    assert sorted(p.name for p in saved.iterdir()) == [world["model"].name, "stgan", "stgan-3"]
    assert (saved / "stgan-3" / "000022_Mustache.png").is_file()
    lines = table(doc)
    assert "Mustache" in "\n".join(lines) and "Eyeglasses" in "\n".join(lines)


def test_stargan_on_both_datasets_is_scored_on_its_celeba_part(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: StarGAN Both's CelebA part, with the labels test_multi builds ([c, 0 (RaFD), 1 0])."""
    from faceedit import expressions, specs

    model = tiny_model("stargan")
    kwargs = {**model.config["generator_kwargs"], "c2_dim": 8}
    cfg = models.make_config(
        "stargan",
        kwargs,
        attributes=list(specs.STARGAN_ATTRIBUTES),
        image_size=32,
        template="celeba-178",
        resize="bilinear",
        conditioning=expressions.conditioning_block("both"),
    )
    both = models.save(models.build(cfg), tmp_path / "both")
    seen: list[np.ndarray] = []
    generate = Engine.generate

    def spy(self: Engine, x: torch.Tensor, cond: np.ndarray | None, *a: object, **k: object) -> object:
        seen.append(np.asarray(cond))
        return generate(self, x, cond, *a, **k)

    monkeypatch.setattr(Engine, "generate", spy)
    args = ["eval", f"local:{both}", "--data", str(world["root"]), "--classifier", f"local:{world['cls']}"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--limit", "2", "--split", "all", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["models"][0]["attributes"] and len(doc["models"][0]["attributes"]) == 5
    assert len(seen) == 1 + 5  # the reconstruction, then one edit per CelebA attribute
    for cond in seen:
        assert cond.shape[1] == 5 + 8 + 2
        np.testing.assert_array_equal(cond[:, 5:13], 0)  # RaFD part zero
        np.testing.assert_array_equal(cond[:, 13:], [[1, 0]] * len(cond))  # mask: CelebA labels valid
    rafd = models.make_config(
        "stargan", {**kwargs, "c_dim": 0}, attributes=[], image_size=32, template="celeba-178",
        resize="bilinear", conditioning=expressions.conditioning_block("rafd"),
    )  # fmt: skip
    only_rafd = models.save(models.build(rafd), tmp_path / "rafd")
    args[1] = f"local:{only_rafd}"
    refused = runner.invoke(app, [*args, "--device", "cpu", "--limit", "1", "--split", "all"])
    assert refused.exit_code == 2 and "does not edit attributes" in refused.output
