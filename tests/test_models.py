"""The four architectures against the official reference fixtures, sizes, TF flags and the model folder."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from faceedit import models
from faceedit.errors import CheckpointError, OutputError
from faceedit.models import attgan, stargan, stgan, ugatit
from faceedit.upstream import import_checkpoint
from tests._tiny import tiny_model

TOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny 32-px models gain nothing from threads, and OpenMP barriers stall on shared, busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _close(actual: torch.Tensor, expected: np.ndarray, what: str) -> None:
    err = float(np.abs(actual.detach().numpy() - expected).max())
    assert err <= TOL, f"{what}: max |diff| {err:.2e} > {TOL}"


def _roundtrip(model: models.FaceModel, tmp_path: Path) -> models.FaceModel:
    folder = models.save(model, tmp_path / "model")
    return models.load(folder)


# --------------------------------------------------------------------------------------------------
# Reference fixtures: import the official files, reproduce every stored array, again after save/load


def test_stargan_fixture_eval_equals_official_training_mode(fixtures_dir: Path, tmp_path: Path) -> None:
    ref = np.load(fixtures_dir / "stargan" / "stargan_fixture.npz")
    x = torch.from_numpy(ref["x"])
    imported = import_checkpoint("stargan", fixtures_dir / "stargan" / "stargan_fixture")
    for model in (imported, _roundtrip(imported, tmp_path)):
        assert not model.generator.training
        with torch.no_grad():
            for k in range(len(ref["c_trg"])):
                out = model.generator(x, torch.from_numpy(ref["c_trg"][k]))
                _close(out, ref["out_train_mode"][k], f"StarGAN c_trg[{k}]")
        # The running statistics are kept but ignored: the eval-mode reference really differs.
        assert np.abs(out.numpy() - ref["out_eval_mode"][-1]).max() > 1e-2
    assert model.attributes == list(ref["attr_names"])


def test_stargan_training_mode_updates_buffers_like_the_original(fixtures_dir: Path) -> None:
    model = import_checkpoint("stargan", fixtures_dir / "stargan" / "stargan_fixture")
    ref = np.load(fixtures_dir / "stargan" / "stargan_fixture.npz")
    x, c = torch.from_numpy(ref["x"]), torch.from_numpy(ref["c_trg"][0])
    norm = model.generator.main[1]
    before = norm.running_mean.clone()
    with torch.no_grad():
        model.generator(x, c)
        assert torch.equal(norm.running_mean, before)  # eval: untouched
        out = model.generator.train()(x, c)
    assert not torch.equal(norm.running_mean, before)  # train: momentum update, as nn.InstanceNorm2d
    _close(out, ref["out_train_mode"][0], "StarGAN in train()")


def test_attgan_fixture_outputs_and_slider(fixtures_dir: Path, tmp_path: Path) -> None:
    ref = np.load(fixtures_dir / "attgan" / "attgan_fixture.npz")
    x = torch.from_numpy(ref["x"])
    imported = import_checkpoint(
        "attgan", fixtures_dir / "attgan" / "output" / "fixture_32_shortcut2_inject1"
    )
    assert imported.attributes == list(ref["attr_names"])
    assert imported.config["conditioning"]["thres_int"] == pytest.approx(float(ref["thres_int"]))
    for model in (imported, _roundtrip(imported, tmp_path)):
        with torch.no_grad():
            for i in range(len(ref["att_b_scaled"])):
                _close(
                    model.generator(x, torch.from_numpy(ref["att_b_scaled"][i])), ref["out"][i], f"out[{i}]"
                )
            for j in range(len(ref["slide_att_b_scaled"])):
                out = model.generator(x, torch.from_numpy(ref["slide_att_b_scaled"][j]))
                _close(out, ref["out_slide"][j], f"out_slide[{j}]")


def test_stgan_fixture_test_and_sample_outputs(fixtures_dir: Path, tmp_path: Path) -> None:
    ref = np.load(fixtures_dir / "stgan" / "stgan_fixture.npz")
    x = torch.from_numpy(ref["x"])
    imported = import_checkpoint("stgan", fixtures_dir / "stgan" / "experiments" / "stgan_fixture")
    assert imported.attributes == list(ref["attr_names"])
    for model in (imported, _roundtrip(imported, tmp_path)):
        with torch.no_grad():
            for key, out_key in (("diff_test", "out_test"), ("diff_sample", "out_sample")):
                for k in range(len(ref[key])):
                    _close(
                        model.generator(x, torch.from_numpy(ref[key][k])), ref[out_key][k], f"{out_key}[{k}]"
                    )


@pytest.mark.parametrize("variant", ["light", "full"])
def test_ugatit_fixture_both_directions_and_cycle(fixtures_dir: Path, tmp_path: Path, variant: str) -> None:
    ref = np.load(fixtures_dir / "ugatit" / f"ugatit_fixture_{variant}.npz")
    x = torch.from_numpy(ref["x"])
    run = fixtures_dir / "ugatit" / "results" / f"fixture_{variant}"
    gens = {}
    for direction in ("A2B", "B2A"):
        imported = import_checkpoint("ugatit", run, direction=direction)
        assert imported.config["direction"] == direction
        assert imported.config["generator_kwargs"]["light"] is (variant == "light")
        for model in (imported, _roundtrip(imported, tmp_path / direction)):
            with torch.no_grad():
                image, cam_logit, heatmap = model.generator(x)
            _close(image, ref[f"{direction}_out"], f"{variant} {direction} image")
            _close(cam_logit, ref[f"{direction}_cam_logit"], f"{variant} {direction} CAM logits")
            _close(heatmap, ref[f"{direction}_heatmap"], f"{variant} {direction} heatmap")
        gens[direction] = model.generator
    with torch.no_grad():
        cycle, _, cycle_heat = gens["B2A"](gens["A2B"](x)[0])
        from_ref, _, _ = gens["B2A"](torch.from_numpy(ref["A2B_out"]))
    _close(cycle, ref["A2B2A_out"], f"{variant} A2B2A image")
    _close(cycle_heat, ref["A2B2A_heatmap"], f"{variant} A2B2A heatmap")
    _close(from_ref, ref["A2B2A_out"], f"{variant} B2A of the stored A2B image")


# --------------------------------------------------------------------------------------------------
# Classifiers = discriminator trunk + classification head


def test_classifiers_equal_their_discriminators_head(fixtures_dir: Path) -> None:
    x = torch.from_numpy(np.load(fixtures_dir / "stargan" / "stargan_fixture.npz")["x"])
    sg = import_checkpoint("stargan", fixtures_dir / "stargan" / "stargan_fixture")
    d_state = torch.load(fixtures_dir / "stargan/stargan_fixture/models/10000-D.ckpt", weights_only=True)
    D = stargan.Discriminator(image_size=32, conv_dim=8, c_dim=5, repeat_num=5)
    D.load_state_dict(d_state)
    with torch.no_grad():
        assert torch.allclose(sg.classifier(x), D(x)[1], atol=1e-6)
    st = import_checkpoint("stgan", fixtures_dir / "stgan" / "experiments" / "stgan_fixture")
    raw = torch.load(
        fixtures_dir / "stgan/experiments/stgan_fixture/checkpoints/D_20000.pth.tar", weights_only=True
    )
    D = stgan.Discriminator(image_size=32, attr_dim=10, conv_dim=8, fc_dim=16, n_layers=3)
    D.load_state_dict({k.removeprefix("module."): v for k, v in raw["state_dict"].items()})
    with torch.no_grad():  # D always ran in training mode (per-image IN statistics) when it was trained
        assert torch.allclose(st.classifier(x), D.train()(x)[1], atol=1e-5)
        assert st.classifier(x).shape == (2, 10)


def test_attgan_classifier_from_discriminators() -> None:
    D = attgan.Discriminators(dim=8, fc_dim=16, n_layers=3, img_size=32)
    C = attgan.Classifier(dim=8, fc_dim=16, n_layers=3, img_size=32)
    C.load_state_dict(attgan.classifier_state({f"module.{k}": v for k, v in D.state_dict().items()}))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(C(x), D(x)[1])


# --------------------------------------------------------------------------------------------------
# Full-size architectures: official keys, shapes and parameter counts (meta device: no memory)


def _manifest(fixtures_dir: Path, model: str, name: str) -> dict[str, tuple[int, ...]]:
    raw = json.loads((fixtures_dir / model / f"{name}.json").read_text())
    return {k: tuple(v) for k, v in raw.items()}


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


FULL_SIZE = [  # (fixture folder, manifest, constructor, official parameter count)
    ("stargan", "manifest_default", lambda: stargan.Generator(), 8_430_528),
    ("stargan", "manifest_default_D", lambda: stargan.Discriminator(), 44_762_048),
    ("attgan", "manifest_default", lambda: attgan.Generator(), 43_352_707),
    ("attgan", "manifest_128_shortcut1_inject1", lambda: attgan.Generator(inject_layers=1), 43_459_203),
    ("attgan", "manifest_default_D", lambda: attgan.Discriminators(), 44_718_990),
    ("stgan", "manifest_default", lambda: stgan.Generator(), 74_379_600),
    ("stgan", "manifest_default_D", lambda: stgan.Discriminator(), 44_717_899),
    ("ugatit", "manifest_default", lambda: ugatit.ResnetGenerator(), 278_959_808),
    ("ugatit", "manifest_light", lambda: ugatit.ResnetGenerator(light=True), 10_589_888),
    ("ugatit", "manifest_default_disG", lambda: ugatit.Discriminator(n_layers=7), 53_130_176),
    ("ugatit", "manifest_default_disL", lambda: ugatit.Discriminator(n_layers=5), 3_290_560),
]


@pytest.mark.parametrize(
    ("model", "manifest", "make", "count"), FULL_SIZE, ids=[f"{m}-{n}" for m, n, *_ in FULL_SIZE]
)
def test_default_modules_match_official_manifests(
    fixtures_dir: Path, model: str, manifest: str, make, count: int
) -> None:
    with torch.device("meta"):
        module = make()
    assert _shapes(module) == _manifest(fixtures_dir, model, manifest)
    assert _params(module) == count


def test_stgan_tf_settings_have_the_tf_variables() -> None:
    """csmliu STGAN 128 defaults: 79 TF variables (75,006,579 floats incl. BN moving statistics)."""
    kw = {
        "attr_dim": 13,
        "shortcut_layers": 4,
        "inject_layers": 4,
        "stu_norm": False,
        "stu_bias": True,
        "one_more_conv": 0,
        "bn_eps": 1e-3,
        "max_dim": 1024,
    }
    with torch.device("meta"):
        state = stgan.Generator(**kw).state_dict()
    real = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(real) == 79 and sum(v.numel() for v in real.values()) == 75_006_579
    expected = {
        "stu.0.upsample.weight": (1037, 512, 4, 4),
        "stu.3.upsample.weight": (141, 64, 4, 4),
        "stu.0.reset_gate.0.bias": (512,),
        "decoder.1.0.weight": (1549, 512, 4, 4),
        "decoder.2.0.weight": (781, 256, 4, 4),
        "decoder.3.0.weight": (397, 128, 4, 4),
        "decoder.4.0.weight": (205, 3, 4, 4),
        "decoder.4.0.bias": (3,),
    }
    assert {k: tuple(state[k].shape) for k in expected} == expected
    assert "stu.0.reset_gate.1.weight" not in state  # no BN inside the STU


def test_stgan_tf_fixture_config_builds_and_runs() -> None:
    """The shape of fixtures/tf/stgan_tiny: dim 1, 5 layers, 13 attributes, shortcut/inject 4."""
    G = stgan.Generator(
        attr_dim=13,
        conv_dim=1,
        n_layers=5,
        shortcut_layers=4,
        inject_layers=4,
        stu_norm=False,
        stu_bias=True,
        one_more_conv=0,
        bn_eps=1e-3,
        max_dim=1024,
    ).eval()
    assert tuple(G.decoder[4][0].weight.shape) == (1 + 2 + 13, 3, 4, 4)
    assert G.encoder[0][1].eps == 1e-3
    with torch.no_grad():
        assert G(torch.zeros(1, 3, 32, 32), torch.zeros(1, 13)).shape == (1, 3, 32, 32)


def test_attgan_tf_constants_keep_keys_and_count() -> None:
    """AttGAN TF v1 128_shortcut1_inject1: same keys; 43,467,011 floats including BN moving statistics."""
    with torch.device("meta"):
        tf = attgan.Generator(inject_layers=1, lrelu_slope=0.2, bn_eps=1e-3)
        port = attgan.Generator(inject_layers=1)
    assert _shapes(tf) == _shapes(port)
    floats = sum(v.numel() for k, v in tf.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert floats == 43_467_011
    assert tf.enc_layers[0].layers[2].negative_slope == 0.2 and tf.enc_layers[0].layers[1].eps == 1e-3


def test_ugatit_tf_flags() -> None:
    """TF flags add exactly the TF-only tensors (94 keys) and change the computation where TF differs."""
    tf_flags = {
        "conv_bias": True,
        "in_affine": True,
        "unbiased_var": False,
        "cam_bias": True,
        "mlp_bias": True,
    }
    with torch.device("meta"):
        full = ugatit.ResnetGenerator(**tf_flags).state_dict()
    assert len(full) == 94
    assert sum(v.numel() for v in full.values()) == 278_970_308 + 257  # TF floats + the second CAM copy
    torch.manual_seed(0)
    G = ugatit.ResnetGenerator(ngf=4, n_blocks=2, img_size=32, light=True, cam_bias=True).eval()
    port = ugatit.ResnetGenerator(ngf=4, n_blocks=2, img_size=32, light=True).eval()
    with torch.no_grad():
        G.gap_fc.bias.zero_(), G.gmp_fc.bias.zero_()
        port.load_state_dict({k: v for k, v in G.state_dict().items() if not k.endswith("fc.bias")})
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        assert torch.equal(G(x)[0], port(x)[0])  # zero CAM bias = the port
        G.gap_fc.bias.fill_(0.5), G.gmp_fc.bias.fill_(0.5)
        assert not torch.allclose(G(x)[0], port(x)[0])  # the bias also re-weights the features
        biased = ugatit.ResnetGenerator(ngf=4, n_blocks=2, img_size=32, light=True, unbiased_var=False).eval()
        biased.load_state_dict(port.state_dict())
        assert 1e-5 < (biased(x)[0] - port(x)[0]).abs().max() < 0.5


def test_attgan_and_stargan_run_at_other_sizes() -> None:
    """Labels are tiled to the actual feature size; StarGAN/STGAN/light U-GAT-IT are convolutional."""
    for arch, cond in (
        ("stargan", torch.zeros(1, 5)),
        ("attgan", torch.zeros(1, 13)),
        ("stgan", torch.zeros(1, 10)),
    ):
        G = tiny_model(arch).generator
        with torch.no_grad():
            assert G(torch.zeros(1, 3, 64, 64), cond).shape == (1, 3, 64, 64)
    with torch.no_grad():
        assert tiny_model("ugatit").generator(torch.zeros(1, 3, 48, 48))[0].shape == (1, 3, 48, 48)


# --------------------------------------------------------------------------------------------------
# Model folder: config schema v1, safetensors, strict load, clear errors, atomic writes


def test_save_writes_prefixed_safetensors_and_config(tmp_path: Path) -> None:
    from safetensors import safe_open

    model = tiny_model("stgan")
    folder = models.save(model, tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config == model.config and config["format"] == "faceedit.model" and config["format_version"] == 1
    assert set(config["generator_kwargs"]) >= {"inject_layers", "stu_norm", "stu_bias", "bn_eps", "max_dim"}
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        heads = {k.split(".", 1)[0] for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    assert heads == {"generator", "classifier"}
    loaded = models.load(folder)
    assert not loaded.generator.training and not loaded.classifier.training
    x, d = torch.rand(1, 3, 32, 32), torch.rand(1, 10)
    with torch.no_grad():
        assert torch.allclose(loaded.generator(x, d), model.generator(x, d), atol=1e-6)
        assert torch.allclose(loaded.classifier(x), model.classifier(x), atol=1e-6)


def test_save_refuses_to_overwrite_and_replaces_when_asked(tmp_path: Path) -> None:
    models.save(tiny_model("stargan"), tmp_path / "m")
    with pytest.raises(OutputError, match="already exists"):
        models.save(tiny_model("stargan", seed=1), tmp_path / "m")
    models.save(tiny_model("ugatit"), tmp_path / "m", overwrite=True)
    assert models.load(tmp_path / "m").arch == "ugatit"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folders left behind


def _saved(tmp_path: Path, arch: str = "stargan") -> Path:
    return models.save(tiny_model(arch), tmp_path / "m")


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": "cyclegan"}, "unknown arch 'cyclegan'"),
        ({"format_version": 2}, "format_version is 2"),
        ({"format": "other"}, "format is 'other'"),
        ({"template": None, "resize": None}, "missing keys: template, resize"),
        ({"attributes": ["Male"]}, "1 attributes listed but the generator takes 5"),
        (
            {"generator_kwargs": {"conv_dim": 8, "c_dim": 5, "repeat_num": 2, "dropout": 0.1}},
            "unknown arguments",
        ),
        ({"template": "celeba-999"}, "template 'celeba-999' is not one of"),
    ],
)
def test_load_rejects_bad_configs_in_one_line(tmp_path: Path, changes: dict, message: str) -> None:
    folder = _saved(tmp_path)
    _edit_config(folder, **changes)
    with pytest.raises(CheckpointError, match=r"config\.json is not a valid faceedit model config") as info:
        models.load(folder)
    assert message in info.value.message and "\n" not in info.value.message
    assert info.value.exit_code == 4


def test_load_explains_shape_mismatch_and_missing_keys(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    _edit_config(folder, generator_kwargs={"conv_dim": 16, "c_dim": 5, "repeat_num": 2})
    with pytest.raises(CheckpointError) as info:
        models.load(folder)
    assert "generator.main.0.weight" not in info.value.message  # keys are shown without the file prefix
    assert (
        "main.0.weight has shape [8, 8, 7, 7] in the weights but the configuration builds [16, 8, 7, 7]"
        in str(info.value)
    )
    _edit_config(folder, generator_kwargs={"conv_dim": 8, "c_dim": 5, "repeat_num": 3})
    with pytest.raises(CheckpointError, match=r"missing main\.11\.main\.0\.weight"):
        models.load(folder)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete", "no-config", "bad-json"])
def test_load_rejects_damaged_folders(tmp_path: Path, damage: str) -> None:
    folder = _saved(tmp_path)
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage":
        weights.write_bytes(b"\x00" * 64)
    elif damage == "delete":
        weights.unlink()
    elif damage == "no-config":
        (folder / "config.json").unlink()
    else:
        (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as info:
        models.load(folder)
    assert "\n" not in info.value.message and info.value.hint


def test_build_gives_eval_modules_and_missing_classifier_is_none() -> None:
    model = tiny_model("attgan", classifier=False)
    assert model.classifier is None and not model.generator.training
    empty = models.build(model.config, empty=True)
    assert next(empty.generator.parameters()).is_meta


@pytest.mark.gpu
def test_fixture_models_load_and_run_on_cuda(fixtures_dir: Path, tmp_path: Path) -> None:
    """models.load(device='cuda') gives the CPU reference outputs on the GPU (TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cases = [
        ("stargan", "stargan/stargan_fixture", "stargan/stargan_fixture.npz", "c_trg", "out_train_mode"),
        (
            "attgan",
            "attgan/output/fixture_32_shortcut2_inject1",
            "attgan/attgan_fixture.npz",
            "att_b_scaled",
            "out",
        ),
        ("stgan", "stgan/experiments/stgan_fixture", "stgan/stgan_fixture.npz", "diff_test", "out_test"),
        ("ugatit", "ugatit/results/fixture_full", "ugatit/ugatit_fixture_full.npz", None, "A2B_out"),
    ]
    for arch, source, npz, cond, out in cases:
        ref = np.load(fixtures_dir / npz)
        folder = models.save(import_checkpoint(arch, fixtures_dir / source), tmp_path / arch)
        model = models.load(folder, device="cuda")
        assert next(model.generator.parameters()).is_cuda
        x = torch.from_numpy(ref["x"]).cuda()
        with torch.no_grad():
            y = (
                model.generator(x)[0]
                if cond is None
                else model.generator(x, torch.from_numpy(ref[cond][1]).cuda())
            )
        expected = ref[out] if cond is None else ref[out][1]
        assert np.abs(y.cpu().numpy() - expected).max() <= 1e-4, arch
        if model.classifier is not None:
            assert model.classifier(x).shape == (2, len(model.attributes))


def _defined_names(module: ModuleType) -> set[str]:
    """Public names a module defines itself: its functions and classes, and its UPPER_CASE constants."""
    own = {n for n, v in vars(module).items() if getattr(v, "__module__", None) == module.__name__}
    return {n for n in own | {n for n in vars(module) if n.isupper()} if not n.startswith("_")} - {
        "TYPE_CHECKING"
    }


@pytest.mark.parametrize(
    ("package", "inner", "names", "leaf"),
    [
        ("faceedit.models", "folder", "FOLDER_NAMES", "faceedit.models.attgan"),
        ("faceedit.data", "common", "COMMON_NAMES", "faceedit.data"),
    ],
)
def test_package_init_is_thin_and_keeps_the_old_names(
    package: str, inner: str, names: str, leaf: str
) -> None:
    """Importing ``leaf`` does not run the package's plumbing; each public name of it keeps its old path."""
    code = f"import sys, {leaf}; print('{package}.{inner}' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    pkg, mod = importlib.import_module(package), importlib.import_module(f"{package}.{inner}")
    assert _defined_names(mod) == set(getattr(pkg, names))
    for name in _defined_names(mod):
        assert getattr(pkg, name) is getattr(mod, name)
    with pytest.raises(AttributeError):
        _ = pkg.no_such_name
