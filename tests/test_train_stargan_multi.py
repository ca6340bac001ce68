"""StarGAN training on RaFD and on CelebA + RaFD (train_multi): the RaFD layouts, the config, bit-exact
resume, and an exported model that `faceedit edit` uses for --expression and --add."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from faceedit import expressions, models
from faceedit.cli import app
from faceedit.data import rafd
from faceedit.errors import UsageError
from faceedit.training import checkpoint, config, loop
from tests.synthdata import RAFD_EXPRESSIONS, make_celeba, make_rafd
from tests.test_training import record_losses

runner = CliRunner()
TINY = {"g_conv_dim": 8, "d_conv_dim": 8, "g_repeat_num": 1, "d_repeat_num": 3, "n_critic": 2}
# rafd_crop 178: the synthetic RaFD faces are drawn in CelebA's 178x218 frame.
COMMON = {"batch_size": 2, "image_size": 32, "split": "all", "rafd_crop": 178, "workers": 0, "device": "cpu"}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {
        "celeba": make_celeba(root / "celeba", n=8),
        "rafd": make_rafd(root / "rafd", n_per=1),
        "rafd_names": make_rafd(root / "rafd_names", n_per=1, rafd_names=True),
    }


def test_rafd_folder_layouts(data: dict[str, Path], tmp_path: Path) -> None:
    folders, names = rafd.read_index(data["rafd"]), rafd.read_index(data["rafd_names"])
    assert folders.names[0] == "angry/000.png" and list(folders.labels) == list(range(8))  # ImageFolder order
    assert list(names.labels) == list(range(8)) and "_angry_" in names.names[0]
    assert rafd.expression_of("Rafd000_12_Moroccan_male_surprised_left.jpg") == "surprised"
    (tmp_path / "odd" / "happy").mkdir(parents=True)
    (tmp_path / "odd" / "smiling").mkdir()
    with pytest.raises(UsageError) as e:
        rafd.read_index(tmp_path / "odd")
    assert "not expressions: smiling" in e.value.message and "no folder for angry" in e.value.message
    assert "holds no images" in e.value.message
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "portrait.png")
    with pytest.raises(UsageError, match="1 file\\(s\\) name no expression"):
        rafd.read_index(tmp_path / "flat")


def test_config_checks_the_dataset(data: dict[str, Path]) -> None:
    base = {"data": str(data["rafd"]), "steps": 1}
    with pytest.raises(UsageError, match="no CelebA attributes"):
        config.load("stargan", overrides={**base, "dataset": "rafd"})  # the CelebA default attrs
    assert config.load("stargan", overrides={**base, "dataset": "rafd", "attrs": ""}).attrs == ()
    both = config.load("stargan", overrides={**base, "dataset": "both", "data": str(data["celeba"])})
    with pytest.raises(UsageError, match="no RaFD folder is given"):
        loop.check_data(both)
    with pytest.raises(UsageError, match="dataset = 'faces': must be one of celeba, rafd, both"):
        config.load("stargan", overrides={**base, "dataset": "faces"})
    with pytest.raises(UsageError, match="only read with dataset = 'both'"):
        config.load("stargan", overrides={**base, "rafd": "x"})


def test_both_interrupt_resume_is_bit_exact(
    data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = {**COMMON, **TINY, "dataset": "both", "data": str(data["celeba"]), "rafd": str(data["rafd"])}
    cfg = config.load(
        "stargan", overrides={**overrides, "steps": 4, "log_every": 1, "sample_every": 4, "n_samples": 2}
    )
    reference = record_losses(monkeypatch, "stargan")
    loop.fit(cfg, tmp_path / "a")
    assert len(reference) == 4 and all(math.isfinite(v) for step in reference for v in step.values())
    assert {"D/celeba/loss_cls", "D/rafd/loss_cls", "G/rafd/loss_cls"} <= set(reference[1])
    first = record_losses(monkeypatch, "stargan", interrupt_at=1)
    with pytest.raises(KeyboardInterrupt):
        loop.fit(cfg, tmp_path / "b")
    resumed = record_losses(monkeypatch, "stargan")
    loop.fit(cfg, tmp_path / "b", resume="auto")
    assert first + resumed == reference  # exactly equal floats
    saved = [checkpoint.load(checkpoint.latest(tmp_path / run)) for run in ("a", "b")]
    for name, state in saved[0]["models"].items():
        assert all(torch.equal(t, saved[1]["models"][name][k]) for k, t in state.items()), name
    # The sample grid (2 fixed CelebA faces): the input, the 5 default attributes, the 8 expressions.
    grid = Image.open(tmp_path / "a" / "samples" / "step-00000004.png")
    assert grid.size == ((1 + 5 + 8) * 32, 2 * 32)


def _train(*args: str) -> tuple[int, str, str]:
    base = ["train", "stargan", "--steps", "2", "--batch-size", "2", "--image-size", "32", "--device", "cpu",
            "--workers", "0", "--set", "split=all", "--set", "rafd_crop=178"]  # fmt: skip
    settings = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    result = runner.invoke(app, [*base, *settings, *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_trains_both_and_the_export_edits(
    data: dict[str, Path], astronaut_path: Path, tmp_path: Path
) -> None:
    code, out, err = _train("--dataset", "both", "--data", str(data["celeba"]), "--rafd", str(data["rafd"]),
                            "--attrs", "Blond_Hair,Eyeglasses", "--out", str(tmp_path / "run"))  # fmt: skip
    assert code == 0, err
    release = Path(out.strip().splitlines()[0])
    config_json = json.loads((release / "config.json").read_text())
    assert expressions.dataset_of(config_json) == "both"
    assert config_json["conditioning"]["expressions"] == list(RAFD_EXPRESSIONS)
    assert models.load(release).classifier.conv2.out_channels == 2 + 8
    before = np.asarray(Image.open(astronaut_path))
    for args, name in ((["--expression", "happy"], "happy"), (["--add", "Blond_Hair"], "blond")):
        edit = ["edit", str(astronaut_path), "-m", str(release), "-o", str(tmp_path / "out")]
        result = runner.invoke(app, [*edit, "--suffix", f"_{name}", *args])
        assert result.exit_code == 0, result.output
        after = np.asarray(Image.open(tmp_path / "out" / f"astronaut_{name}.png"))
        assert after.shape == before.shape and not np.array_equal(after, before)


def test_cli_trains_rafd_from_rafd_file_names(data: dict[str, Path], tmp_path: Path) -> None:
    code, out, err = _train(
        "--dataset", "rafd", "--data", str(data["rafd_names"]), "--out", str(tmp_path / "r")
    )
    assert code == 0, err
    model = models.load(Path(out.strip().splitlines()[0]))
    assert model.config["attributes"] == [] and expressions.dataset_of(model.config) == "rafd"
    assert model.config["generator_kwargs"]["c2_dim"] == 8


def test_cli_training_usage_errors(data: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = _train("--dataset", "both", "--data", str(data["celeba"]), "--out", str(tmp_path / "x"))
    assert code == 2 and "--rafd DIR" in err and len(err.strip().splitlines()) == 1
    code, _, err = _train("--dataset", "rafd", "--data", str(data["celeba"]), "--out", str(tmp_path / "y"))
    assert code == 2 and "not expressions" in err  # a CelebA folder is not a RaFD folder
    result = runner.invoke(app, ["train", "attgan", "--dataset", "rafd", "--data", str(data["rafd"])])
    assert result.exit_code == 2 and "stargan only" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
