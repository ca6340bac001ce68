"""`faceedit models import` on official TensorFlow checkpoints: routed to the TF importer, same outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from faceedit import models
from faceedit.cli import app

runner = CliRunner()


def _import(arch: str, source: Path, out: Path, *extra: str) -> models.FaceModel:
    result = runner.invoke(app, ["models", "import", arch, str(source), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    return models.load(out)


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize(("direction", "key"), [("A2B", "genB"), ("B2A", "genA")])
def test_ugatit_tf_checkpoint_imports_from_the_command_line(
    fixtures_dir: Path, tmp_path: Path, direction: str, key: str
) -> None:
    ref = np.load(fixtures_dir / "tf/ugatit_tiny/ref.npz")
    model = _import("ugatit", fixtures_dir / "tf/ugatit_tiny", tmp_path / "m", "--direction", direction)
    assert model.config["variant"] == "tf" and model.config["template"] == "selfie"
    with torch.no_grad():
        image, cam, heatmap = model.generator(_nchw(ref["x_nhwc"]))
    expected = _nchw(ref[f"{key}_out"])
    assert torch.allclose(image, expected, atol=4e-6, rtol=0)
    assert torch.allclose(cam, torch.from_numpy(ref[f"{key}_cam"]), atol=4e-6, rtol=0)
    assert torch.allclose(heatmap[0, 0], torch.from_numpy(ref[f"{key}_heat"]), atol=4e-6, rtol=0)


@pytest.mark.parametrize(
    ("arch", "folder", "atol"), [("stgan", "stgan_tiny", 2e-7), ("attgan", "attgan_v1_tiny", 1e-7)]
)
def test_stgan_and_attgan_tf_checkpoints_import(
    fixtures_dir: Path, tmp_path: Path, arch: str, folder: str, atol: float
) -> None:
    ref = np.load(fixtures_dir / "tf" / folder / "ref.npz")
    index = next((fixtures_dir / "tf" / folder).glob("*.index"))
    model = _import(arch, index, tmp_path / "m")
    assert model.config["template"] == "celeba-tf" and model.config["resize"] == "bicubic"
    assert len(model.config["attributes"]) == 13
    with torch.no_grad():
        y = model.generator(_nchw(ref["x"]), torch.from_numpy(ref["a"]))
    assert torch.allclose(y, _nchw(ref["y"]), atol=atol, rtol=0)


def test_discriminator_option_is_refused_for_tf(fixtures_dir: Path, tmp_path: Path) -> None:
    d_file = tmp_path / "D_1.pth.tar"
    d_file.write_bytes(b"not used")
    result = runner.invoke(app, ["models", "import", "stgan", str(fixtures_dir / "tf/stgan_tiny"),
                                 "--out", str(tmp_path / "m"), "--discriminator", str(d_file)])  # fmt: skip
    assert result.exit_code == 2 and "--discriminator" in result.output
    assert not (tmp_path / "m").exists()


def test_wrong_architecture_for_a_tf_checkpoint_is_one_line(fixtures_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "import", "stgan", str(fixtures_dir / "tf/ugatit_tiny"),
                                 "--out", str(tmp_path / "m")])  # fmt: skip
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output and not (tmp_path / "m").exists()
