"""Importing official checkpoints: layouts, configuration recovery, full-size key manifests, bad files."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from faceedit import specs, upstream
from faceedit.errors import CheckpointError, UsageError
from faceedit.models import stargan
from faceedit.upstream import import_checkpoint, tf_checkpoint_prefix
from tests import _tiny


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny 32-px models gain nothing from threads, and OpenMP barriers stall on shared, busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------
# Full-size official layouts from the key manifests (stride-0 tensors: tiny files, no memory)


def _zeros(fixtures_dir: Path, model: str, manifest: str, prefix: str = "") -> dict[str, torch.Tensor]:
    shapes = json.loads((fixtures_dir / model / f"{manifest}.json").read_text())
    return {prefix + k: torch.zeros(1).expand(s) if s else torch.tensor(0) for k, s in shapes.items()}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_size_stargan_with_discriminator(fixtures_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    torch.save(_zeros(fixtures_dir, "stargan", "manifest_default"), tmp_path / "models" / "200000-G.ckpt")
    torch.save(_zeros(fixtures_dir, "stargan", "manifest_default_D"), tmp_path / "models" / "200000-D.ckpt")
    model = import_checkpoint("stargan", tmp_path)
    assert _count(model.generator) == 8_430_528
    assert model.config["generator_kwargs"] == {"conv_dim": 64, "c_dim": 5, "repeat_num": 6, "c2_dim": 0}
    assert model.config["image_size"] == 128  # from D's conv2 kernel (2 = 128 / 2**6)
    assert set(model.classifier.state_dict()) == set(
        _zeros(fixtures_dir, "stargan", "manifest_default_D")
    ) - {"conv1.weight"}
    assert model.config["template"] == "celeba-178" and model.config["resize"] == "bilinear"


@pytest.mark.parametrize(
    ("manifest", "inject", "count"),
    [("manifest_default", 0, 43_352_707), ("manifest_128_shortcut1_inject1", 1, 43_459_203)],
)
def test_full_size_attgan(fixtures_dir: Path, tmp_path: Path, manifest: str, inject: int, count: int) -> None:
    ckpt = tmp_path / "output" / "run" / "checkpoint"
    ckpt.mkdir(parents=True)
    data = {
        "G": _zeros(fixtures_dir, "attgan", manifest),
        "D": _zeros(fixtures_dir, "attgan", "manifest_default_D"),
    }
    torch.save({**data, "optim_G": {}, "optim_D": {}}, ckpt / "weights.49.pth")
    model = import_checkpoint("attgan", ckpt.parent)  # no setting.txt: everything from the shapes
    kwargs = model.config["generator_kwargs"]
    assert (kwargs["enc_dim"], kwargs["enc_layers"], kwargs["n_attrs"]) == (64, 5, 13)
    assert (kwargs["shortcut_layers"], kwargs["inject_layers"]) == (1, inject)
    assert _count(model.generator) == count
    assert model.classifier is not None and model.config["classifier_kwargs"]["img_size"] == 128
    assert model.config["template"] == "celeba-170"


def test_full_size_stgan_module_prefixed(fixtures_dir: Path, tmp_path: Path) -> None:
    optim = {"state": {}, "param_groups": []}
    for name, manifest in (("G_1000000", "manifest_default"), ("D_1000000", "manifest_default_D")):
        state = _zeros(fixtures_dir, "stgan", manifest, prefix="module.")
        torch.save({"state_dict": state, "optimizer": optim}, tmp_path / f"{name}.pth.tar")
    model = import_checkpoint("stgan", tmp_path / "G_1000000.pth.tar")
    assert _count(model.generator) == 74_379_600
    kwargs = model.config["generator_kwargs"]
    assert (kwargs["attr_dim"], kwargs["conv_dim"], kwargs["n_layers"], kwargs["shortcut_layers"]) == (
        10,
        64,
        5,
        3,
    )
    assert kwargs["one_more_conv"] is True and kwargs["inject_layers"] == 0 and kwargs["stu_norm"] is True
    assert model.config["image_size"] == 128 and model.classifier is not None


@pytest.mark.parametrize(
    ("manifest", "count", "light"),
    [("manifest_default", 278_959_808, False), ("manifest_light", 10_589_888, True)],
)
def test_full_size_ugatit(fixtures_dir: Path, tmp_path: Path, manifest: str, count: int, light: bool) -> None:
    gen = _zeros(fixtures_dir, "ugatit", manifest)
    dis_g, dis_l = (
        _zeros(fixtures_dir, "ugatit", m) for m in ("manifest_default_disG", "manifest_default_disL")
    )
    data = {"genA2B": gen, "genB2A": gen, "disGA": dis_g, "disGB": dis_g, "disLA": dis_l, "disLB": dis_l}
    (tmp_path / "model").mkdir()
    torch.save(data, tmp_path / "model" / "selfie2anime_params_1000000.pt")
    model = import_checkpoint("ugatit", tmp_path)
    assert _count(model.generator) == count
    assert model.config["generator_kwargs"]["light"] is light
    assert model.config["image_size"] == 256 and model.config["template"] == "selfie"
    assert model.config["attributes"] == [] and model.classifier is None


# --------------------------------------------------------------------------------------------------
# Provenance and configuration


def test_provenance_records_source_and_checksums(fixtures_dir: Path) -> None:
    sums = dict(
        reversed(line.split())
        for line in (fixtures_dir / "SHA256SUMS").read_text().splitlines()
        if line.strip()
    )
    model = import_checkpoint("stargan", fixtures_dir / "stargan/stargan_fixture/models/10000-G.ckpt")
    prov = model.config["provenance"]
    assert prov["source_file"] == "10000-G.ckpt" and prov["upstream"] == "yunjey/stargan@94dd002"
    assert prov["source_sha256"] == sums["./stargan/stargan_fixture/models/10000-G.ckpt"]
    assert prov["classifier_source_sha256"] == sums["./stargan/stargan_fixture/models/10000-D.ckpt"]
    assert prov["created_by"].startswith("faceedit ")
    stg = import_checkpoint("stgan", fixtures_dir / "stgan/experiments/stgan_fixture").config["provenance"]
    assert stg["upstream"] == "bluestyle97/STGAN-pytorch@1136a5d" and stg["source_file"] == "G_20000.pth.tar"


def test_overrides_attrs_image_size_direction(fixtures_dir: Path) -> None:
    names = ["A", "B", "C", "D", "E"]
    model = import_checkpoint("stargan", fixtures_dir / "stargan/stargan_fixture", attrs=",".join(names))
    assert model.attributes == names
    light = fixtures_dir / "ugatit/results/fixture_light"
    assert import_checkpoint("ugatit", light, image_size=64).config["image_size"] == 64
    b2a = import_checkpoint("ugatit", light, direction="B2A")
    raw = torch.load(next((light / "model").glob("*.pt")), weights_only=True)
    assert torch.equal(b2a.generator.state_dict()["DownBlock.1.weight"], raw["genB2A"]["DownBlock.1.weight"])
    with pytest.raises(UsageError, match="has 5 attributes but --attrs lists 2"):
        import_checkpoint("stargan", fixtures_dir / "stargan/stargan_fixture", attrs=["A", "B"])
    with pytest.raises(UsageError, match="only runs at 32 px"):
        import_checkpoint("ugatit", fixtures_dir / "ugatit/results/fixture_full", image_size=64)
    with pytest.raises(UsageError, match="U-GAT-IT only"):
        import_checkpoint("stgan", fixtures_dir / "stgan/experiments/stgan_fixture", direction="B2A")
    with pytest.raises(UsageError, match="unknown import option"):
        import_checkpoint("stgan", fixtures_dir / "stgan/experiments/stgan_fixture", crop="celeba")
    with pytest.raises(UsageError, match="contradicts the discriminator"):
        import_checkpoint("stargan", fixtures_dir / "stargan/stargan_fixture", image_size=128)


def test_unknown_attribute_count_needs_names(tmp_path: Path) -> None:
    G = stargan.Generator(conv_dim=8, c_dim=7, repeat_num=1)
    torch.save(G.state_dict(), tmp_path / "5-G.ckpt")
    with pytest.raises(UsageError, match="7 attributes and their names are not stored"):
        import_checkpoint("stargan", tmp_path / "5-G.ckpt")
    names = [f"a{i}" for i in range(7)]
    model = import_checkpoint("stargan", tmp_path / "5-G.ckpt", attrs=names)
    assert model.attributes == names and model.classifier is None and model.config["image_size"] == 128


# --------------------------------------------------------------------------------------------------
# Layouts: run folders, latest files, wrappers, prefixes, old containers


def test_latest_iteration_and_epoch_are_numeric(tmp_path: Path) -> None:
    _tiny.write_stargan(tmp_path / "sg", seed=1, iteration=9000)
    newest = _tiny.write_stargan(tmp_path / "sg", seed=2, iteration=10000)
    model = import_checkpoint("stargan", tmp_path / "sg")
    assert model.config["provenance"]["source_file"] == newest.name
    _tiny.write_attgan(tmp_path / "ag", seed=1, epoch=9)
    _tiny.write_attgan(tmp_path / "ag", seed=2, epoch=10)
    assert (
        import_checkpoint("attgan", tmp_path / "ag").config["provenance"]["source_file"] == "weights.10.pth"
    )
    _tiny.write_stgan(tmp_path / "st", iteration=80000)
    _tiny.write_stgan(tmp_path / "st", iteration=100000)
    assert (
        import_checkpoint("stgan", tmp_path / "st").config["provenance"]["source_file"] == "G_100000.pth.tar"
    )


def _fixture_out(fixtures_dir: Path, model) -> float:
    ref = np.load(fixtures_dir / "stargan" / "stargan_fixture.npz")
    with torch.no_grad():
        out = model.generator(torch.from_numpy(ref["x"]), torch.from_numpy(ref["c_trg"][3]))
    return float(np.abs(out.numpy() - ref["out_train_mode"][3]).max())


def _official_to_named(state: dict, repeat_num: int, inner: tuple[str, ...] = ("0", "1", "3", "4")) -> dict:
    """Rename official keys into a first_layer/down_sampling/trunk/up_sampling/last_layer layout."""
    R, out = repeat_num, {}
    names = {
        "main.0": "first_layer.0",
        "main.1": "first_layer.1",
        "main.3": "down_sampling.0",
        "main.4": "down_sampling.1",
        "main.6": "down_sampling.3",
        "main.7": "down_sampling.4",
        f"main.{9 + R}": "up_sampling.0",
        f"main.{10 + R}": "up_sampling.1",
        f"main.{12 + R}": "up_sampling.3",
        f"main.{13 + R}": "up_sampling.4",
        f"main.{15 + R}": "last_layer.0",
    }
    for k in range(R):
        for j, name in zip(("0", "1", "3", "4"), inner, strict=True):
            names[f"main.{9 + k}.main.{j}"] = f"trunk.{k}.{name}"
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        out[f"{names[owner]}.{leaf}"] = value
    return out


@pytest.mark.parametrize("layout", ["wrapped-main", "named", "named-words", "named-blocks-reordered"])
def test_stargan_hub_state_dict_wrappers(fixtures_dir: Path, tmp_path: Path, layout: str) -> None:
    official = torch.load(fixtures_dir / "stargan/stargan_fixture/models/10000-G.ckpt", weights_only=True)
    if layout == "wrapped-main":
        state = dict(official)
    elif layout == "named":
        state = _official_to_named(official, 2)
    else:
        state = _official_to_named(official, 2, inner=("conv1", "norm1", "conv2", "norm2"))
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        if (
            layout == "named-blocks-reordered"
        ):  # blocks registered in another order; layers within keep theirs
            state = dict(sorted(state.items(), key=lambda kv: kv[0].split(".")[0] != "last_layer"))
    torch.save({"state_dict": state}, tmp_path / "StarGAN-CelebA-128.pth")
    model = import_checkpoint("stargan", tmp_path / "StarGAN-CelebA-128.pth")
    assert _fixture_out(fixtures_dir, model) <= 1e-5
    assert model.config["provenance"]["source_format"] == "hub {'state_dict'} wrapper"
    assert model.classifier is None


def test_stargan_named_layout_with_wrong_layer_count_is_explained(fixtures_dir: Path, tmp_path: Path) -> None:
    official = torch.load(fixtures_dir / "stargan/stargan_fixture/models/10000-G.ckpt", weights_only=True)
    state = {k: v for k, v in _official_to_named(official, 2).items() if not k.startswith("down_sampling.3")}
    torch.save({"state_dict": state}, tmp_path / "hub.pth")
    with pytest.raises(CheckpointError, match="block 'down_sampling' has 1 conv layers, expected 2"):
        import_checkpoint("stargan", tmp_path / "hub.pth")


@pytest.mark.parametrize("variant", ["module", "orig_mod", "no-counters", "legacy-container"])
def test_stargan_prefixes_counters_and_containers(fixtures_dir: Path, tmp_path: Path, variant: str) -> None:
    state = torch.load(fixtures_dir / "stargan/stargan_fixture/models/10000-G.ckpt", weights_only=True)
    zip_format = True
    if variant == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    elif variant == "orig_mod":
        state = {f"_orig_mod.{k}": v for k, v in state.items()}
    elif variant == "no-counters":  # files written by PyTorch 0.4.0
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    else:
        zip_format = False
    torch.save(state, tmp_path / "10000-G.ckpt", _use_new_zipfile_serialization=zip_format)
    assert _fixture_out(fixtures_dir, import_checkpoint("stargan", tmp_path / "10000-G.ckpt")) <= 1e-5


def test_attgan_file_layouts_and_save_format_with_discriminator(tmp_path: Path) -> None:
    run = _tiny.write_attgan(tmp_path / "output" / "exp", with_d=True, multi_gpu=True)
    for target in (run, run / "checkpoint", run / "checkpoint" / "weights.3.pth"):
        model = import_checkpoint("attgan", target)
        assert model.config["provenance"]["setting_file"] == "setting.txt"
        assert model.config["image_size"] == 32 and model.config["generator_kwargs"]["inject_layers"] == 1
    assert model.classifier is not None and model.config["classifier_kwargs"]["n_layers"] == 3
    raw = torch.load(run / "checkpoint" / "weights.3.pth", weights_only=True)
    D = _tiny.attgan.Discriminators(dim=8, fc_dim=16, n_layers=3, img_size=32)
    D.load_state_dict(raw["D"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model.classifier(x), D(x)[1], atol=1e-6)
    (run / "setting.txt").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"setting\.txt is not the JSON written by AttGAN's train\.py"):
        import_checkpoint("attgan", run)


def test_attgan_without_setting_uses_official_defaults(tmp_path: Path) -> None:
    run = _tiny.write_attgan(tmp_path / "exp")
    (run / "setting.txt").unlink()
    model = import_checkpoint("attgan", run, image_size=32)
    assert model.attributes == list(specs.ATTGAN_ATTRIBUTES)
    assert model.config["generator_kwargs"]["enc_acti_fn"] == "lrelu" and model.config["image_size"] == 32
    assert model.config["conditioning"] == {"scheme": "attgan", "thres_int": 0.5, "rules": "port"}


def test_stgan_discriminator_beside_explicit_or_unusable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    g_path = _tiny.write_stgan(tmp_path / "run")
    assert import_checkpoint("stgan", g_path).classifier is not None
    moved = tmp_path / "elsewhere.pth.tar"
    shutil.move(g_path.with_name("D_20000.pth.tar"), moved)
    assert import_checkpoint("stgan", g_path).classifier is None
    model = import_checkpoint("stgan", g_path, discriminator=moved)
    assert model.classifier is not None and model.config["provenance"]["classifier_source_file"] == moved.name
    g_path.with_name("D_20000.pth.tar").write_bytes(b"\x80\x02garbage")
    with caplog.at_level(logging.WARNING, logger="faceedit"):
        assert import_checkpoint("stgan", g_path).classifier is None
    assert "ignoring D_20000.pth.tar" in caplog.text
    with pytest.raises(CheckpointError, match=r"D_20000\.pth\.tar"):
        import_checkpoint("stgan", g_path, discriminator=g_path.with_name("D_20000.pth.tar"))


def test_ugatit_results_folder_and_model_folder(tmp_path: Path) -> None:
    pt = _tiny.write_ugatit(tmp_path / "results" / "selfie2anime", light=True)
    for target in (tmp_path / "results" / "selfie2anime", pt.parent, pt):
        model = import_checkpoint("ugatit", target)
        assert model.config["provenance"]["source_file"] == pt.name and model.config["direction"] == "A2B"


# --------------------------------------------------------------------------------------------------
# Files that are not what the user said: one line, expected vs found, nothing written


class _Net:  # pickled by reference to this module: torch.load(weights_only=True) must refuse it
    def __init__(self) -> None:
        self.weight = torch.zeros(2)


def _bad_file(kind: str, folder: Path, fixtures_dir: Path) -> Path:
    path = folder / f"{kind}.ckpt"
    good = (fixtures_dir / "stargan/stargan_fixture/models/10000-G.ckpt").read_bytes()
    if kind == "text":
        path.write_text("this is a README, not weights\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "needs-code":
        torch.save({"G": _Net()}, path)
    elif kind == "numpy":
        np.save(folder / "arr.npy", np.zeros(3))
        path = folder / "arr.npy"
    elif kind == "list":
        torch.save([torch.zeros(2)], path)
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "is a text file, not a PyTorch checkpoint"),
        ("empty", "is empty"),
        ("truncated", "is truncated or corrupt"),
        ("needs-code", "need their original code"),
        ("numpy", "is a NumPy .npy array"),
        ("list", "found a list, not a dict of weights"),
    ],
)
@pytest.mark.parametrize("arch", ["stargan", "attgan", "stgan", "ugatit"])
def test_unusable_files(fixtures_dir: Path, tmp_path: Path, arch: str, kind: str, message: str) -> None:
    path = _bad_file(kind, tmp_path, fixtures_dir)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(CheckpointError) as info:
        import_checkpoint(arch, path)
    assert message in info.value.message and "\n" not in info.value.message and info.value.hint
    assert info.value.exit_code == 4
    assert sorted(tmp_path.iterdir()) == before


FILES = {
    "stargan": "stargan/stargan_fixture/models/10000-G.ckpt",
    "attgan": "attgan/output/fixture_32_shortcut2_inject1/checkpoint/weights.49.pth",
    "stgan": "stgan/experiments/stgan_fixture/checkpoints/G_20000.pth.tar",
    "ugatit": "ugatit/results/fixture_light/model/fixture_light_params_0100000.pt",
}


@pytest.mark.parametrize(("asked", "given"), [(a, g) for a in FILES for g in FILES if a != g])
def test_wrong_architecture_names_what_was_found(fixtures_dir: Path, asked: str, given: str) -> None:
    with pytest.raises(CheckpointError) as info:
        import_checkpoint(asked, fixtures_dir / FILES[given])
    assert "expected" in info.value.message and "found" in info.value.message
    assert f"faceedit models import {given}" in info.value.hint


@pytest.mark.parametrize(
    ("arch", "path"),
    [
        ("stargan", "stargan/stargan_fixture/models/10000-D.ckpt"),
        ("stgan", "stgan/experiments/stgan_fixture/checkpoints/D_20000.pth.tar"),
    ],
)
def test_discriminator_instead_of_generator(fixtures_dir: Path, arch: str, path: str) -> None:
    with pytest.raises(CheckpointError, match=r"found .*discriminator") as info:
        import_checkpoint(arch, fixtures_dir / path)
    assert "pass the generator checkpoint" in info.value.hint


def test_missing_paths_and_empty_folders_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        import_checkpoint("stargan", tmp_path / "nope.ckpt")
    for arch in ("stargan", "attgan", "stgan", "ugatit"):
        with pytest.raises(UsageError, match=r"no .* in"):
            import_checkpoint(arch, tmp_path)
    with pytest.raises(UsageError, match="unknown architecture 'cyclegan'"):
        import_checkpoint("cyclegan", tmp_path)


# --------------------------------------------------------------------------------------------------
# TensorFlow checkpoints are routed to their own importer


def test_tf_checkpoint_paths_are_recognised(fixtures_dir: Path, tmp_path: Path) -> None:
    tf = fixtures_dir / "tf" / "ugatit_tiny"
    prefix = tf / "UGATIT.model-3"
    assert tf_checkpoint_prefix(tf) == prefix  # folder with a `checkpoint` state file
    assert tf_checkpoint_prefix(tf / "UGATIT.model-3.index") == prefix
    assert tf_checkpoint_prefix(tf / "UGATIT.model-3.data-00000-of-00001") == prefix
    assert tf_checkpoint_prefix(prefix) == prefix  # bare prefix (no such file)
    assert (
        tf_checkpoint_prefix(fixtures_dir / "tf" / "snappy_index")
        == fixtures_dir / "tf/snappy_index/model.ckpt-7"
    )
    assert tf_checkpoint_prefix(fixtures_dir / FILES["stargan"]) is None
    assert tf_checkpoint_prefix(fixtures_dir / "attgan/output/fixture_32_shortcut2_inject1") is None
    assert tf_checkpoint_prefix(tmp_path) is None


def test_tf_checkpoints_are_dispatched(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(
        upstream, "import_tf_checkpoint", lambda arch, prefix, **kw: calls.append((arch, prefix, kw))
    )
    import_checkpoint("ugatit", fixtures_dir / "tf" / "ugatit_tiny", direction="B2A")
    assert calls == [("ugatit", fixtures_dir / "tf/ugatit_tiny/UGATIT.model-3", {"direction": "B2A"})]
