"""The fast inference path (runtime.optimise, Engine) computes the models' own functions.

Every architecture and variant on tiny random models (fp32 within 1e-4, float64 within 1e-9: the
rewrites are exact in maths), the official fixtures through the fast path, and the Engine's batching,
precision choices and device options.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceedit import images, models, runtime
from faceedit.errors import UsageError
from tests._tiny import _randomise, tiny_model

TOL = 1e-4
# Tiny configs beyond tests/_tiny.py's: the TF originals' flags and the other norm/shortcut choices.
UGATIT_TF = {"conv_bias": True, "in_affine": True, "unbiased_var": False, "cam_bias": True, "mlp_bias": True}
STGAN_TF = {"shortcut_layers": 3, "inject_layers": 3, "stu_norm": False, "stu_bias": True, "one_more_conv": 0}
VARIANT_KWARGS = {
    "attgan-tf": ("attgan", {"lrelu_slope": 0.2, "bn_eps": 1e-3, "shortcut_layers": 2, "inject_layers": 2}),
    "attgan-in": ("attgan", {"enc_norm_fn": "instancenorm", "dec_norm_fn": "instancenorm"}),
    "stgan-tf": ("stgan", {**STGAN_TF, "bn_eps": 1e-3, "max_dim": 32}),
    "stgan-nostu": ("stgan", {"use_stu": False, "one_more_conv": 5}),
    "ugatit-full": ("ugatit", {"light": False}),
    "ugatit-tf": ("ugatit", UGATIT_TF),
    "ugatit-tf-full": ("ugatit", {**UGATIT_TF, "light": False}),
}
VARIANTS = ["stargan", "attgan", "stgan", "ugatit", *VARIANT_KWARGS]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny 32-px models gain nothing from threads, and OpenMP barriers stall on shared, busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def variant(name: str, seed: int = 0) -> models.FaceModel:
    """A tiny random model of one of :data:`VARIANTS` (32 px)."""
    if name not in VARIANT_KWARGS:
        return tiny_model(name, seed, classifier=False)
    arch, extra = VARIANT_KWARGS[name]
    base = tiny_model(arch, seed, classifier=False).config
    config = models.make_config(
        arch,
        {**base["generator_kwargs"], **extra},
        attributes=base["attributes"],
        image_size=32,
        template=base["template"],
        resize="bilinear",
        conditioning=base["conditioning"],
        variant="tf" if "tf" in name else "port",
    )
    model = models.build(config)
    _randomise(model.generator, seed)
    return model


def _inputs(model: models.FaceModel, n: int, seed: int, dtype: torch.dtype = torch.float32) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 3, 32, 32, generator=gen) * 2 - 1).to(dtype)
    a = len(model.config["attributes"])
    return x, None if not a else (torch.rand(n, a, generator=gen) * 2 - 1).to(dtype)


def _outputs(generator: torch.nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> tuple:
    with torch.inference_mode():
        out = generator(x) if c is None else generator(x, c)
    return out if isinstance(out, tuple) else (out,)


def _max_diff(a: tuple, b: tuple) -> float:
    assert len(a) == len(b)
    return max(float((p - q).abs().max()) for p, q in zip(a, b, strict=True))


# ------------------------------------------------------------------------------ fast path = model


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_path_equals_the_model(name: str, channels_last: bool) -> None:
    model = variant(name)
    g = model.generator
    fast = runtime.optimise(g, model.config["arch"], channels_last=channels_last)
    for seed in (1, 2):  # fresh inputs each time: the same function on any input
        x, c = _inputs(model, 3, seed)
        xf = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        got, want = _outputs(fast, xf, c), _outputs(g, x, c)
        assert all(torch.isfinite(t).all() for t in got)
        assert _max_diff(got, want) <= TOL, name
        assert float(want[0].std()) > 0.005  # an image, not a constant the paths could agree on


@pytest.mark.parametrize("name", VARIANTS)
def test_rewrites_are_exact_in_float64(name: str) -> None:
    # BatchNorm folded into convs, U-GAT-IT's CAM weights folded into its 1x1 conv, layer statistics
    # derived from per-channel ones, STGAN's two gates as one conv: identities, so float64 agrees to 1e-9.
    model = variant(name)
    g = model.generator.double()
    fast = runtime.optimise(g, model.config["arch"])
    x, c = _inputs(model, 2, 3, torch.float64)
    assert _max_diff(_outputs(fast, x, c), _outputs(g, x, c)) <= 1e-9


def test_optimise_shares_weights_and_leaves_the_model_alone() -> None:
    model = variant("ugatit-full")
    g = model.generator
    before = {k: (v.clone(), v.data_ptr()) for k, v in g.state_dict().items()}
    classes = [type(m) for m in g.modules()]
    fast = runtime.optimise(g, "ugatit")
    after = g.state_dict()
    assert all(torch.equal(after[k], v) and after[k].data_ptr() == p for k, (v, p) in before.items())
    assert [type(m) for m in g.modules()] == classes and not g.training
    # U-GAT-IT's big FC weight (1 GB at full size) is shared, not copied.
    assert fast.FC[0].weight.data_ptr() == g.FC[0].weight.data_ptr()
    g.train()
    with pytest.raises(ValueError, match="eval"):
        runtime.optimise(g, "ugatit")


def test_stgan_gates_and_batchnorm_are_fused() -> None:
    fast = runtime.optimise(variant("stgan").generator, "stgan")
    kinds = {type(m).__name__ for m in fast.modules()}
    assert "BatchNorm2d" not in kinds and "ConvGRUCell" not in kinds and "FusedSTU" in kinds


def test_no_private_torch_api_in_the_package() -> None:
    # torch._* ops change without notice between releases; the fast path uses public helpers only.
    root = Path(runtime.__file__).parent
    offenders = [p.name for p in root.rglob("*.py") if "torch._" in p.read_text(encoding="utf-8")]
    assert offenders == []


# ----------------------------------------------------------------- fast path = official fixtures


def _fast(model: models.FaceModel) -> torch.nn.Module:
    return runtime.optimise(model.generator, model.config["arch"])


def _close(got: torch.Tensor, want: np.ndarray, what: str) -> None:
    err = float(np.abs(got.detach().numpy() - want).max())
    assert err <= TOL, f"{what}: max |diff| {err:.2e}"


# (arch, run folder, label key, reference output key) of fixtures/*/ with more than one label vector
PYTORCH_FIXTURES = [
    ("stargan", "stargan/stargan_fixture", "c_trg", "out_train_mode"),
    ("attgan", "attgan/output/fixture_32_shortcut2_inject1", "att_b_scaled", "out"),
    ("stgan", "stgan/experiments/stgan_fixture", "diff_test", "out_test"),
]


@pytest.mark.parametrize(("arch", "run", "labels", "outputs"), PYTORCH_FIXTURES)
def test_fast_path_reproduces_the_pytorch_fixtures(
    fixtures_dir: Path, arch: str, run: str, labels: str, outputs: str
) -> None:
    from faceedit.upstream import import_checkpoint

    ref = np.load(fixtures_dir / arch / f"{arch}_fixture.npz")
    fast = _fast(import_checkpoint(arch, fixtures_dir / run))
    x = torch.from_numpy(ref["x"])
    for k in range(len(ref[labels])):
        _close(fast(x, torch.from_numpy(ref[labels][k])), ref[outputs][k], f"{arch} {outputs}[{k}]")


@pytest.mark.parametrize("kind", ["light", "full"])
def test_fast_path_reproduces_the_ugatit_fixtures(fixtures_dir: Path, kind: str) -> None:
    from faceedit.upstream import import_checkpoint

    ref = np.load(fixtures_dir / "ugatit" / f"ugatit_fixture_{kind}.npz")
    model = import_checkpoint("ugatit", fixtures_dir / "ugatit" / "results" / f"fixture_{kind}")
    image, cam, heat = _fast(model)(torch.from_numpy(ref["x"]))
    for got, key in ((image, "A2B_out"), (cam, "A2B_cam_logit"), (heat, "A2B_heatmap")):
        _close(got, ref[key], f"ugatit {kind} {key}")


def test_fast_path_reproduces_tensorflow(fixtures_dir: Path) -> None:
    from faceedit.convert.tf_plans import import_tf_checkpoint

    tf_dir = fixtures_dir / "tf"

    def nhwc(t: torch.Tensor) -> np.ndarray:
        return t.permute(0, 2, 3, 1).detach().numpy()

    ref = dict(np.load(tf_dir / "ugatit_tiny" / "ref.npz"))
    x = torch.from_numpy(np.ascontiguousarray(ref["x_nhwc"].transpose(0, 3, 1, 2)))
    image, _, _ = _fast(import_tf_checkpoint("ugatit", tf_dir / "ugatit_tiny"))(x)
    assert np.abs(nhwc(image) - ref["genB_out"]).max() <= TOL
    for arch, folder in (("stgan", "stgan_tiny"), ("attgan", "attgan_v1_tiny")):
        ref = dict(np.load(tf_dir / folder / "ref.npz"))
        model = import_tf_checkpoint(arch, tf_dir / folder / "model.ckpt.index", image_size=32)
        x = torch.from_numpy(np.ascontiguousarray(ref["x"].transpose(0, 3, 1, 2)))
        y = _fast(model)(x, torch.from_numpy(ref["a"]))
        assert np.abs(nhwc(y) - ref["y"]).max() <= TOL, arch


# ----------------------------------------------------------------------------------------- engine


@pytest.mark.parametrize("name", ["stargan", "ugatit"])
def test_engine_batches_like_one_call_of_the_model(name: str) -> None:
    model = tiny_model(name, classifier=name != "ugatit")
    x, c = _inputs(model, 5, 4)
    want = _outputs(model.generator, x, c)
    engine = runtime.Engine(model, "cpu", "auto")  # chunks of 2, 2, 1
    out = engine.generate(x, None if c is None else c.numpy(), batch_size=2)
    assert engine.precision == "fp32" and out.images.shape == (5, 3, 32, 32)
    assert float((out.images - want[0]).abs().max()) <= TOL
    if name == "ugatit":
        assert out.heatmaps is not None and float((out.heatmaps - want[2]).abs().max()) <= TOL
    else:
        assert out.heatmaps is None
        with torch.inference_mode():
            logits = model.classifier(x).numpy()
        assert np.abs(engine.classify(x, batch_size=2) - logits).max() <= TOL


def test_engine_reference_path_is_the_model_itself() -> None:
    model = tiny_model("stgan")
    engine = runtime.Engine(model, "cpu", "fp32", optimise=False)
    assert engine.generator is model.generator


def test_precision_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert runtime.resolve_precision("auto", cpu) == torch.float32
    assert runtime.resolve_precision("BF16", cpu) == torch.bfloat16
    with pytest.raises(UsageError, match="CUDA"):
        runtime.resolve_precision("fp16", cpu)
    with pytest.raises(UsageError, match="unknown precision"):
        runtime.resolve_precision("fp8", cpu)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert "slower" in runtime.precision_note(cpu, torch.bfloat16)
    assert runtime.precision_note(cpu, torch.float32) is None
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.precision_note(cpu, torch.bfloat16) is None


@pytest.mark.parametrize("name", ["stargan", "attgan-in", "stgan-tf", "ugatit-tf-full"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_autocast_runs_every_layout_and_stays_close_in_images(name: str, channels_last: bool) -> None:
    # Low-precision autocast on the CPU takes the same dtype paths as fp16/bf16 on CUDA (mixed-dtype cats,
    # lerp, one-pass norms computing in fp32), so this also guards the GPU path's plumbing.
    model = variant(name)
    x, c = _inputs(model, 2, 5)
    cond = None if c is None else c.numpy()
    fp32 = runtime.Engine(model, "cpu", "fp32").generate(x, cond)
    bf16 = runtime.Engine(model, "cpu", "bf16", channels_last=channels_last).generate(x, cond)
    a = np.stack(images.from_tensor(fp32.images)).astype(int)
    b = np.stack(images.from_tensor(bf16.images)).astype(int)
    assert bf16.images.dtype == torch.float32 and 0 < np.abs(a - b).mean() < 2.0


def test_cuda_only_options_are_ignored_on_the_cpu_with_a_note() -> None:
    engine = runtime.Engine(tiny_model("stargan"), "cpu", "fp32", cuda_graphs=True)
    assert not engine.cuda_graphs and any("cuda-graphs" in n for n in engine.notes)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["stargan", "attgan", "stgan", "ugatit-tf-full"])
def test_cuda_paths_match_the_cpu_model(name: str) -> None:
    model = variant(name)
    x, c = _inputs(model, 5, 6)
    want = _outputs(model.generator, x, c)[0]
    cond = None if c is None else c.numpy()
    fp32 = runtime.Engine(model, "cuda", "fp32").generate(x, cond, batch_size=2).images
    assert float((fp32 - want).abs().max()) <= TOL  # TF32 off: fp32 means fp32
    graphed = runtime.Engine(model, "cuda", "fp32", cuda_graphs=True).generate(x, cond, batch_size=2).images
    assert float((graphed - want).abs().max()) <= TOL  # last batch padded 1 -> 2 and cut again
    for precision in ("fp16", "bf16"):
        low = runtime.Engine(model, "cuda", precision).generate(x, cond, batch_size=2).images
        diff = np.abs(np.stack(images.from_tensor(low)).astype(int) - np.stack(images.from_tensor(want)))
        assert diff.mean() < 2.0, (precision, diff.mean())
