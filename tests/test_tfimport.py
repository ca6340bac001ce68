"""Official TF checkpoints -> our models: the tiny TF fixtures reproduce TensorFlow's own outputs."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from faceedit import models
from faceedit.convert.tf_bundle import TensorEntry, open_checkpoint
from faceedit.convert.tf_plans import (
    detect_arch,
    import_tf_checkpoint,
    is_slot,
    is_tf_checkpoint,
    plan_import,
    ugatit_tensor_names,
)
from faceedit.errors import CheckpointError, UsageError

# The tolerances of fixtures/tf/README.md. U-GAT-IT meets 4e-6 because the TF variant's encoder
# instance norm computes in TF's order (x * inv + (beta - mean * inv)); see models/ugatit.py.
TOL = {"ugatit": 4e-6, "stgan": 2e-7, "attgan": 1e-7}
INDEX_SHA256 = {
    "ugatit_tiny": "a47c233279e21dabedd8ef57ee255d5c7843409ae6a9d0616d7988a821b80f7e",
    "stgan_tiny": "8eaaecd1990a84a7d772092ba43656cf6f6bf9772451b0013bf98a8f2d1b8359",
    "attgan_v1_tiny": "8f51a4c4a04ebe2025f4c6d284f74fe29490a993f71c913127fcf01e3d7a1a8b",
}


@pytest.fixture
def tf_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "tf"


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _ugatit_run(model: models.FaceModel, ref: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with torch.no_grad():
        image, cam, heat = model.generator(_nchw(ref["x_nhwc"]))
    return image.permute(0, 2, 3, 1).numpy(), cam.numpy(), heat[0, 0].numpy()


# ------------------------------------------------------------------------------- outputs match TF


@pytest.mark.parametrize(("direction", "key"), [("A2B", "genB"), ("B2A", "genA")])
def test_ugatit_matches_tensorflow(tf_dir: Path, direction: str, key: str) -> None:
    ref = dict(np.load(tf_dir / "ugatit_tiny" / "ref.npz"))
    model = import_tf_checkpoint("ugatit", tf_dir / "ugatit_tiny", direction=direction)
    image, cam, heat = _ugatit_run(model, ref)
    for got, want in ((image, ref[f"{key}_out"]), (cam, ref[f"{key}_cam"]), (heat, ref[f"{key}_heat"])):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL["ugatit"])
    cfg = model.config
    assert (cfg["arch"], cfg["variant"], cfg["direction"], cfg["template"], cfg["attributes"]) == (
        "ugatit", "tf", direction, "selfie", [],
    )  # fmt: skip
    assert cfg["conditioning"] == {"scheme": "none", "thres_int": 0.5, "rules": "tf"}
    kwargs = cfg["generator_kwargs"]
    assert (kwargs["img_size"], kwargs["ngf"], kwargs["light"], kwargs["unbiased_var"]) == (
        16,
        1,
        False,
        False,
    )
    assert cfg["provenance"]["source_sha256"] == INDEX_SHA256["ugatit_tiny"]
    assert cfg["provenance"]["tf_scope"] == {"A2B": "generator_B", "B2A": "generator_A"}[direction]


def test_ugatit_float64_shows_the_mapping_is_exact(tf_dir: Path) -> None:
    ref = dict(np.load(tf_dir / "ugatit_tiny" / "ref.npz"))
    model = import_tf_checkpoint("ugatit", tf_dir / "ugatit_tiny")
    model.generator.double()
    with torch.no_grad():
        image, _, _ = model.generator(_nchw(ref["x_nhwc"]).double())
    assert np.abs(image.permute(0, 2, 3, 1).numpy() - ref["genB_out"]).max() < 2e-6


@pytest.mark.parametrize(("arch", "folder"), [("stgan", "stgan_tiny"), ("attgan", "attgan_v1_tiny")])
def test_stgan_and_attgan_match_tensorflow(tf_dir: Path, arch: str, folder: str) -> None:
    ref = dict(np.load(tf_dir / folder / "ref.npz"))
    model = import_tf_checkpoint(arch, tf_dir / folder / "model.ckpt.index", image_size=32)
    with torch.no_grad():
        y = model.generator(_nchw(ref["x"]), torch.from_numpy(ref["a"]))
    np.testing.assert_allclose(y.permute(0, 2, 3, 1).numpy(), ref["y"], rtol=0, atol=TOL[arch])
    cfg = model.config
    assert (cfg["variant"], cfg["template"], cfg["resize"], cfg["image_size"]) == (
        "tf",
        "celeba-tf",
        "bicubic",
        32,
    )
    assert cfg["conditioning"] == {"scheme": arch, "thres_int": 0.5, "rules": "tf"}
    assert len(cfg["attributes"]) == 13 and cfg["attributes"][0] == "Bald"
    assert cfg["generator_kwargs"]["bn_eps"] == 1e-3
    assert cfg["provenance"]["source_sha256"] == INDEX_SHA256[folder]
    assert (
        cfg["provenance"]["data_files"][0]["size"]
        == (tf_dir / folder / "model.ckpt.data-00000-of-00001").stat().st_size
    )


def test_imported_model_saves_and_loads_identically(tf_dir: Path, tmp_path: Path) -> None:
    ref = dict(np.load(tf_dir / "stgan_tiny" / "ref.npz"))
    model = import_tf_checkpoint("stgan", tf_dir / "stgan_tiny", image_size=32)
    loaded = models.load(models.save(model, tmp_path / "stgan-tf"))
    assert loaded.config == model.config
    with torch.no_grad():
        a = torch.from_numpy(ref["a"])
        assert torch.equal(loaded.generator(_nchw(ref["x"]), a), model.generator(_nchw(ref["x"]), a))


# ------------------------------------------------------------------------------------ U-GAT-IT rho


def test_rho_smoothing_switch(tf_dir: Path) -> None:
    ckpt = open_checkpoint(tf_dir / "ugatit_tiny")
    raw = ckpt.read("generator_B/adaptive_resblock2/res2/instance_layer_norm/rho")
    lin = ckpt.read("generator_B/layer_ins_norm_1/rho")
    smooth = import_tf_checkpoint("ugatit", tf_dir / "ugatit_tiny").generator
    plain = import_tf_checkpoint("ugatit", tf_dir / "ugatit_tiny", smoothing=False).generator
    np.testing.assert_array_equal(
        smooth.UpBlock1_3.norm2.rho.detach().flatten(), np.clip(np.clip(raw, 0, 1) - 0.1, 0, 1)
    )
    np.testing.assert_array_equal(plain.UpBlock1_3.norm2.rho.detach().flatten(), np.clip(raw, 0, 1))
    for g in (smooth, plain):  # LIN's rho is never shifted
        np.testing.assert_array_equal(g.UpBlock2[8].rho.detach().flatten(), np.clip(lin, 0, 1))
    assert not np.array_equal(np.clip(raw, 0, 1), np.clip(np.clip(raw, 0, 1) - 0.1, 0, 1))


# ------------------------------------------------------------- the real U-GAT-IT layout (tf-import.md §3.2)


def _ugatit_layout(s: str, ch: int = 64, n_res: int = 4, img: int = 256) -> dict[str, tuple[int, ...]]:
    """Names and shapes of one taki0112 generator as tf-import.md §3.2 lists them (written independently)."""
    d = 4 * ch
    out = {f"{s}conv/conv2d/kernel": (7, 7, 3, ch), f"{s}conv/conv2d/bias": (ch,)}
    out |= {f"{s}ins_norm/gamma": (ch,), f"{s}ins_norm/beta": (ch,)}
    for i, (c_in, c_out) in enumerate(((ch, 2 * ch), (2 * ch, d))):
        out |= {f"{s}conv_{i}/conv2d/kernel": (3, 3, c_in, c_out), f"{s}conv_{i}/conv2d/bias": (c_out,)}
        out |= {f"{s}ins_norm_{i}/gamma": (c_out,), f"{s}ins_norm_{i}/beta": (c_out,)}
    for i in range(n_res):
        for half in ("res1", "res2"):
            p = f"{s}resblock_{i}/{half}/"
            out |= {p + "conv_0/conv2d/kernel": (3, 3, d, d), p + "conv_0/conv2d/bias": (d,)}
            out |= {p + "instance_norm/gamma": (d,), p + "instance_norm/beta": (d,)}
            q = f"{s}adaptive_resblock{i}/{half}/"
            out |= {q + "conv_0/conv2d/kernel": (3, 3, d, d), q + "conv_0/conv2d/bias": (d,)}
            out |= {q + "instance_layer_norm/rho": (d,)}
    out |= {f"{s}CAM_logit/kernel": (d, 1), f"{s}CAM_logit/bias": (1,)}
    out |= {f"{s}conv_1x1/conv2d/kernel": (1, 1, 2 * d, d), f"{s}conv_1x1/conv2d/bias": (d,)}
    out |= {f"{s}MLP/linear_0/dense/kernel": ((img // 4) ** 2 * d, d), f"{s}MLP/linear_0/dense/bias": (d,)}
    for layer in ("linear_1", "gamma", "beta"):
        out |= {f"{s}MLP/{layer}/dense/kernel": (d, d), f"{s}MLP/{layer}/dense/bias": (d,)}
    for j, (c_in, c_out) in enumerate(((d, 2 * ch), (2 * ch, ch))):
        out |= {f"{s}up_conv_{j}/conv2d/kernel": (3, 3, c_in, c_out), f"{s}up_conv_{j}/conv2d/bias": (c_out,)}
        out |= {f"{s}layer_ins_norm_{j}/{p}": (c_out,) for p in ("rho", "gamma", "beta")}
    return out | {f"{s}G_logit/conv2d/kernel": (7, 7, ch, 3), f"{s}G_logit/conv2d/bias": (3,)}


def _index(layout: dict[str, tuple[int, ...]], with_slots: bool = True) -> dict[str, TensorEntry]:
    """Index entries packed in sorted-name order, each variable followed by its two Adam slots."""
    names = sorted(
        n + suffix for n in layout for suffix in (("", "/Adam", "/Adam_1") if with_slots else ("",))
    )
    entries, offset = {}, 0
    for name in names:
        shape = layout[name.removesuffix("/Adam_1").removesuffix("/Adam")]
        size = 4 * math.prod(shape)
        entries[name] = TensorEntry(name, 1, shape, 0, offset, size, 0)
        offset += size
    return entries


def test_layout_helper_agrees_with_a_real_tf_index(tf_dir: Path) -> None:
    entries = open_checkpoint(tf_dir / "ugatit_tiny").entries
    real = {n: e.shape for n, e in entries.items() if n.startswith("generator_B/") and not is_slot(n)}
    assert real == _ugatit_layout("generator_B/", ch=1, img=16)


def test_full_size_ugatit_index_plans_92_tensors_and_1_1_gb() -> None:
    layout = _ugatit_layout("generator_A/") | _ugatit_layout("generator_B/")
    entries = _index(layout)
    names = ugatit_tensor_names(entries, "A2B")  # also builds the 279 M-parameter model on the meta device
    assert len(names) == 92 and all(n.startswith("generator_B/") and not is_slot(n) for n in names)
    assert sum(entries[n].size for n in names) == 1_115_881_232
    assert entries["generator_B/MLP/linear_0/dense/kernel"].size == 1_073_741_824
    plan = plan_import("ugatit", entries)
    assert plan.generator_kwargs == {
        "input_nc": 3, "output_nc": 3, "ngf": 64, "n_blocks": 4, "img_size": 256, "light": False,
        "conv_bias": True, "in_affine": True, "unbiased_var": False, "cam_bias": True, "mlp_bias": True,
    }  # fmt: skip
    assert plan.fc_grid == (64, 64, 256)


def test_light_model_is_recognised() -> None:
    layout = _ugatit_layout("generator_B/")
    layout["generator_B/MLP/linear_0/dense/kernel"] = (256, 256)
    plan = plan_import("ugatit", _index(layout, with_slots=False))
    assert plan.generator_kwargs["light"] and plan.fc_grid is None


def test_older_cam_tensors_are_ignored_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    layout = _ugatit_layout("generator_B/", ch=1, img=16)
    layout |= {"generator_B/CAM_logit/dense/kernel": (4, 1), "generator_B/CAM_logit/dense/bias": (1,)}
    with caplog.at_level(logging.INFO, logger="faceedit"):
        names = ugatit_tensor_names(_index(layout))
    assert "generator_B/CAM_logit/dense/kernel" not in names and "older U-GAT-IT code" in caplog.text


def test_missing_and_mismatched_tensors_are_listed() -> None:
    layout = _ugatit_layout("generator_B/", ch=1, img=16)
    del layout["generator_B/up_conv_1/conv2d/bias"], layout["generator_B/MLP/beta/dense/bias"]
    with pytest.raises(CheckpointError, match=r"missing .*up_conv_1/conv2d/bias") as info:
        ugatit_tensor_names(_index(layout))
    assert "MLP/beta/dense/bias" in str(info.value) and "\n" not in str(info.value)
    layout = _ugatit_layout("generator_B/", ch=1, img=16)
    layout["generator_B/CAM_logit/kernel"] = (5, 1)
    layout["generator_B/up_conv_0/conv2d/kernel"] = (3, 3, 4, 3)
    with pytest.raises(
        CheckpointError, match=r"CAM_logit/kernel is \[5, 1\], the model needs \[1, 4\]"
    ) as info:
        ugatit_tensor_names(_index(layout))
    assert "up_conv_0/conv2d/kernel is [3, 3, 4, 3]" in str(info.value)


# ------------------------------------------------------------------------------------- refusals


def test_arch_detection_and_wrong_arch(tf_dir: Path) -> None:
    found = {
        f: detect_arch(open_checkpoint(tf_dir / f).entries)
        for f in ("ugatit_tiny", "stgan_tiny", "attgan_v1_tiny", "basic")
    }
    assert found == {
        "ugatit_tiny": "ugatit",
        "stgan_tiny": "stgan",
        "attgan_v1_tiny": "attgan",
        "basic": "ugatit",
    }
    with pytest.raises(
        CheckpointError, match="expected a TensorFlow attgan checkpoint, found a stgan checkpoint"
    ):
        import_tf_checkpoint("attgan", tf_dir / "stgan_tiny")
    with pytest.raises(CheckpointError, match="missing"):  # basic has a lone generator_B tensor
        import_tf_checkpoint("ugatit", tf_dir / "basic")
    with pytest.raises(UsageError):
        import_tf_checkpoint("stargan", tf_dir / "stgan_tiny")
    assert is_tf_checkpoint(tf_dir / "stgan_tiny") and not is_tf_checkpoint(tf_dir / "stgan_tiny" / "ref.npz")


def test_bad_options_are_usage_errors(tf_dir: Path) -> None:
    with pytest.raises(UsageError, match="direction"):
        import_tf_checkpoint("ugatit", tf_dir / "ugatit_tiny", direction="A2A")
    with pytest.raises(UsageError, match="3 attribute names given"):
        import_tf_checkpoint("attgan", tf_dir / "attgan_v1_tiny", attrs=["Bald", "Bangs", "Male"])
    with pytest.raises(UsageError, match="unknown import options: colour"):
        import_tf_checkpoint("attgan", tf_dir / "attgan_v1_tiny", colour="red")
    custom = ["bald", "bangs", "black hair", "blond-hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses",
              "Male", "Mouth_Slightly_Open", "Mustache", "No_Beard", "Pale_Skin", "Smiling"]  # fmt: skip
    model = import_tf_checkpoint("attgan", tf_dir / "attgan_v1_tiny", attrs=custom, thres_int=0.4)
    assert (
        model.config["attributes"][2:4] == ["Black_Hair", "Blond_Hair"]
        and model.config["attributes"][-1] == "Smiling"
    )
    assert model.config["conditioning"]["thres_int"] == 0.4 and model.config["image_size"] == 128


def test_corrupt_generator_bytes_give_no_model(tf_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stgan"
    shutil.copytree(tf_dir / "stgan_tiny", folder)
    data = folder / "model.ckpt.data-00000-of-00001"
    data.chmod(0o644)
    entry = open_checkpoint(folder).entries["Gdec/Conv2d_transpose_2/weights"]
    blob = bytearray(data.read_bytes())
    blob[entry.offset + 3] ^= 1
    data.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="Gdec/Conv2d_transpose_2/weights' fails its crc32c"):
        import_tf_checkpoint("stgan", folder)
