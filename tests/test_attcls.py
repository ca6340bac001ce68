"""The STGAN authors' attribute classifier: TF import (tiny fixture vs TensorFlow's logits, full-width
release layout), model folder round trip, `faceedit models import attcls`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from faceedit import attributes, models
from faceedit.cli import app
from faceedit.errors import CheckpointError, UsageError
from faceedit.models import attcls
from faceedit.upstream import import_checkpoint
from tests.tfbundle import write_bundle


@pytest.fixture
def tiny(fixtures_dir: Path) -> Path:
    return fixtures_dir / "tf" / "attcls_tiny"


def _tf_logits(tiny: Path) -> tuple[torch.Tensor, np.ndarray]:
    ref = np.load(tiny / "ref.npz")
    return torch.from_numpy(ref["x_nhwc"]).permute(0, 3, 1, 2).contiguous(), ref["logits"]


def test_tiny_checkpoint_reproduces_tensorflow_logits(tiny: Path, tmp_path: Path) -> None:
    model = import_checkpoint("attcls", tiny / "128.ckpt.index")
    x, expected = _tf_logits(tiny)
    with torch.no_grad():
        got = model.classifier(x).numpy()
    assert np.abs(got - expected).max() < 1e-5
    assert model.config["attributes"] == list(attributes.CELEBA_ATTRIBUTES)
    assert model.config["classifier_kwargs"] == {"dim": 2, "att_dim": 40, "img_size": 128, "bn_eps": 1e-5}
    assert model.config["template"] == "celeba-tf" and model.config["provenance"]["skipped"] == 71
    loaded = models.load(models.save(model, tmp_path / "cls"))
    with torch.no_grad():
        again = loaded.classifier(x).numpy()
    assert np.abs(again - expected).max() < 1e-5
    assert loaded.arch == "attcls" and not list(loaded.generator.parameters())


def test_nchw_flatten_would_be_wrong(tiny: Path) -> None:
    """The NHWC flatten is what makes the fixture match (NCHW is off by ~1 per the fixture README)."""
    model = import_checkpoint("attcls", tiny)
    x, expected = _tf_logits(tiny)
    c = model.classifier
    with torch.no_grad():
        h = c.features(x).flatten(1)  # NCHW order
        wrong = c.logits(torch.relu(c.fc(h))).numpy()
    assert np.abs(wrong - expected).max() > 0.1


def _release_layout(dim: int = 32) -> dict:
    """Every name and shape of the released 128.ckpt index (125 entries), as zeros."""
    specs: dict = {"beta1_power": ((), "float32"), "beta2_power": ((), "float32")}
    specs["counter/counter"] = ((), "int64")
    n_in = 3
    trainable = {}
    for i, n_out in enumerate(attcls.widths(dim)):
        scope = "classifier/Conv" + (f"_{i}" if i else "")
        trainable[f"{scope}/weights"] = (3, 3, n_in, n_out)
        trainable[f"{scope}/BatchNorm/beta"] = trainable[f"{scope}/BatchNorm/gamma"] = (n_out,)
        specs[f"{scope}/BatchNorm/moving_mean"] = ((n_out,), "float32")
        specs[f"{scope}/BatchNorm/moving_variance"] = ((n_out,), "float32")
        n_in = n_out
    for scope, shape in (("", (4 * 4 * 8 * dim, 16 * dim)), ("_1", (16 * dim, 40))):
        trainable[f"classifier/flatten_fully_connected{scope}/fully_connected/weights"] = shape
        trainable[f"classifier/flatten_fully_connected{scope}/fully_connected/biases"] = (shape[1],)
    for name, shape in trainable.items():
        for suffix in ("", "/Adam", "/Adam_1"):
            specs[name + suffix] = (shape, "float32")
    return specs


def test_full_width_release_layout_imports(tmp_path: Path) -> None:
    specs = _release_layout()
    assert len(specs) == 125 and specs["classifier/flatten_fully_connected/fully_connected/weights"][0] == (
        4096,
        512,
    )
    rng = np.random.default_rng(0)
    gamma = "classifier/Conv_9/BatchNorm/gamma"
    specs[gamma] = rng.normal(size=256).astype(np.float32)  # one real tensor: values land where they belong
    write_bundle(tmp_path / "128.ckpt", specs)
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "128.ckpt"\n')
    model = import_checkpoint("attcls", tmp_path)
    kwargs = model.config["classifier_kwargs"]
    assert (kwargs["dim"], kwargs["att_dim"], kwargs["img_size"]) == (32, 40, 128)
    assert model.config["provenance"]["skipped"] == 71
    assert torch.equal(
        model.classifier.features[attcls._feature_index(9) + 1].weight, torch.from_numpy(specs[gamma])
    )
    with torch.no_grad():
        assert model.classifier(torch.zeros(1, 3, 128, 128)).shape == (1, 40)


def test_other_checkpoints_are_refused(fixtures_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not the att_classification classifier"):
        import_checkpoint("attcls", fixtures_dir / "tf" / "stgan_tiny")
    pth = tmp_path / "x.pth"
    torch.save({"a": torch.zeros(1)}, pth)
    with pytest.raises(UsageError, match="not a TensorFlow checkpoint"):
        import_checkpoint("attcls", pth)
    specs = _release_layout(2)
    specs["classifier/flatten_fully_connected_1/fully_connected/weights"] = ((32, 13), "float32")
    specs["classifier/flatten_fully_connected_1/fully_connected/biases"] = ((13,), "float32")
    write_bundle(tmp_path / "13.ckpt", specs)
    with pytest.raises(CheckpointError, match="13 attributes, not CelebA's 40"):
        import_checkpoint("attcls", tmp_path / "13.ckpt")


def test_cli_import_writes_a_model_folder(tiny: Path, tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    shutil.copytree(tiny, src)
    result = CliRunner().invoke(app, ["models", "import", "attcls", str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert models.load(tmp_path / "out").config["arch"] == "attcls"
    again = CliRunner().invoke(app, ["models", "import", "attcls", str(src), "--out", str(tmp_path / "out")])
    assert again.exit_code == 5 and "already exists" in again.output
