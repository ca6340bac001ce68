"""Training: each model trains on synthetic data in the real layout (tiny configs, CPU), writes logs,
samples and checkpoints, stops cleanly on Ctrl-C, resumes to bit-identical losses and weights, and
exports a folder that faceedit.models.load accepts. Also the configs, schedules, losses and the CLI."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import os
import signal
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from faceedit import models
from faceedit.cli import app
from faceedit.errors import UsageError
from faceedit.training import TRAINERS, StepFile, checkpoint, config, loop, losses, trainer
from tests.synthdata import make_celeba, make_unpaired

ARCHS = ("stargan", "attgan", "stgan", "ugatit")
ATTRS = "Blond_Hair,Eyeglasses,Black_Hair"
# Tiny networks at 32 px; critics update the generator every second step so that 6 steps see both.
TINY: dict[str, dict[str, Any]] = {
    "stargan": {"g_conv_dim": 8, "d_conv_dim": 8, "g_repeat_num": 1, "d_repeat_num": 3, "n_critic": 2},
    "attgan": {
        "enc_dim": 8,
        "dec_dim": 8,
        "enc_layers": 3,
        "dec_layers": 3,
        "dis_dim": 8,
        "dis_layers": 3,
        "dis_fc_dim": 16,
        "n_d": 1,
    },
    "stgan": {
        "g_conv_dim": 8,
        "d_conv_dim": 8,
        "g_layers": 3,
        "d_layers": 3,
        "d_fc_dim": 16,
        "shortcut_layers": 2,
        "n_critic": 2,
    },
    "ugatit": {"ch": 4, "n_res": 1, "dis_global_layers": 4, "dis_local_layers": 3, "batch_size": 2},
}
COMMON = {
    "steps": 6,
    "batch_size": 4,
    "image_size": 32,
    "split": "all",
    "log_every": 1,
    "sample_every": 3,
    "checkpoint_every": 2,
    "keep_checkpoints": 2,
    "workers": 0,
    "device": "cpu",
    "n_samples": 3,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Tiny networks: a second OpenMP thread only adds synchronisation, which on a shared 2-core machine
    # costs more than it computes (measured 5x slower steps under load).
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {"celeba": make_celeba(root / "celeba", n=16), "unpaired": make_unpaired(root / "unpaired", n=4)}


def tiny_config(arch: str, data_dirs: dict[str, Path], **extra: Any) -> config.TrainConfig:
    data = data_dirs["unpaired" if arch == "ugatit" else "celeba"]
    attrs = {} if arch == "ugatit" else {"attrs": ATTRS}
    return config.load(arch, overrides={**COMMON, **TINY[arch], **attrs, "data": str(data), **extra})


def record_losses(monkeypatch: pytest.MonkeyPatch, arch: str, interrupt_at: int | None = None) -> list[dict]:
    """Wrap the model's train_step: keep every step's exact losses; optionally Ctrl-C during one step."""
    module, seen = trainer(arch), []
    original = getattr(module.train_step, "__wrapped__", module.train_step)

    @functools.wraps(original)
    def wrapped(state: Any, cfg: Any, batch: Any) -> dict[str, torch.Tensor]:
        if state.step == interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-step: the step finishes, then the run stops
        out = original(state, cfg, batch)
        seen.append({k: v.item() for k, v in out.items()})
        return out

    monkeypatch.setattr(module, "train_step", wrapped)
    return seen


@pytest.mark.parametrize("arch", ARCHS)
def test_train_interrupt_resume_export(
    arch: str, data_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(arch, data_dirs)
    reference = record_losses(monkeypatch, arch)
    loop.fit(cfg, tmp_path / "a")
    assert len(reference) == 6 and all(math.isfinite(v) for step in reference for v in step.values())
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path / "a")] == [
        "step-00000004.pt",
        "step-00000006.pt",
    ]

    first = record_losses(monkeypatch, arch, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        loop.fit(cfg, tmp_path / "b")
    assert first == reference[:3]
    assert checkpoint.latest(tmp_path / "b").name == "step-00000003.pt"
    resumed = record_losses(monkeypatch, arch)
    loop.fit(cfg, tmp_path / "b", resume="auto")
    assert resumed == reference[3:]  # exactly equal floats: same data, RNG, optimiser and scheduler state

    saved = [
        torch.load(run / "checkpoints" / "step-00000006.pt", weights_only=True)
        for run in (tmp_path / "a", tmp_path / "b")
    ]
    for name, state in saved[0]["models"].items():
        assert all(torch.equal(t, saved[1]["models"][name][k]) for k, t in state.items()), name
    assert saved[0]["config"] == config.to_dict(cfg) and saved[0]["step"] == 6
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "a" / "samples" / "step-00000003.png").is_file()
    check_release(arch, cfg, tmp_path / "a" / "release")


def check_release(arch: str, cfg: config.TrainConfig, folder: Path) -> None:
    """The exported folder loads strictly; its generator (and classifier) run at the training size."""
    model = models.load(folder)
    assert model.config["attributes"] == list(cfg.attrs)
    assert model.config["provenance"]["trained"]["steps"] == 6
    assert model.config["provenance"]["created_by"].startswith("faceedit")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        if arch == "ugatit":
            assert model.config["direction"] == "A2B" and model.classifier is None
            assert model.generator(x)[0].shape == x.shape
            assert models.load(folder.with_name("release-B2A")).config["direction"] == "B2A"
            return
        c = torch.zeros(2, len(cfg.attrs))
        assert model.generator(x, c).shape == x.shape
        assert model.classifier(x).shape == (2, len(cfg.attrs))
    template = {"stargan": "celeba-178", "attgan": "celeba-170", "stgan": "celeba-178"}[arch]
    assert model.config["template"] == template and model.config["conditioning"]["scheme"] == arch


def test_exported_classifier_is_the_discriminators_head(data_dirs: dict[str, Path], tmp_path: Path) -> None:
    cfg = tiny_config("stargan", data_dirs, steps=2, sample_every=0)
    loop.fit(cfg, tmp_path / "run")
    saved = checkpoint.load(checkpoint.latest(tmp_path / "run"))
    D = trainer("stargan").build(cfg)["D"]
    D.load_state_dict(saved["models"]["D"])
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(models.load(tmp_path / "run" / "release").classifier(x), D(x)[1])


# ------------------------------------------------------------------------------------ configs


def test_defaults_are_the_official_recipes() -> None:
    s, a, t, u = (config.CONFIGS[k]() for k in ARCHS)
    assert (s.lr_g, s.batch_size, s.n_critic, s.lambda_cls, s.lambda_rec, s.lambda_gp, s.steps) == (
        1e-4,
        16,
        5,
        1.0,
        10.0,
        10.0,
        200_000,
    )
    assert (
        s.attrs == ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young") and s.template == "celeba-178"
    )
    assert (a.lr_g, a.batch_size, a.n_d, a.lambda_rec, a.lambda_cls_g, a.lambda_cls_d, a.epochs) == (
        2e-4,
        32,
        5,
        100.0,
        10.0,
        1.0,
        200,
    )
    assert (a.template, a.flip, a.thres_int, len(a.attrs)) == ("celeba-170", False, 0.5, 13)
    assert (t.lr_g, t.batch_size, t.shortcut_layers, t.lambda_rec, t.lambda_cls_g, t.lr_decay_step) == (
        2e-4,
        32,
        3,
        100.0,
        10.0,
        800_000,
    )
    assert (u.lr_g, u.batch_size, u.weight_decay, u.cam_weight, u.cycle_weight, u.image_size, u.n_res) == (
        1e-4,
        1,
        1e-4,
        1000.0,
        10.0,
        256,
        4,
    )
    assert all(not c.problems() for c in (s, a, t, u))


def test_recipe_then_overrides(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('arch = "attgan"\nbatch_size = 8\nlr_g = 0.001\nattrs = ["Male", "Young"]\n')
    cfg = config.load("attgan", recipe, {"batch_size": "2", "thres_int": 0.25})
    assert (cfg.batch_size, cfg.lr_g, cfg.attrs, cfg.thres_int) == (2, 0.001, ("Male", "Young"), 0.25)
    with pytest.raises(UsageError, match="is for 'attgan', not 'stgan'"):
        config.load("stgan", recipe)


def test_every_config_problem_is_reported_at_once() -> None:
    with pytest.raises(UsageError) as e:
        config.load(
            "stargan",
            overrides={
                "batch_size": 0,
                "attrs": "Blond_Hiar",
                "lr_d": -1,
                "amp": "fp8",
                "lamda_rec": 3,
                "image_size": 100,
                "steps": "many",
            },
        )
    text = str(e.value)
    for part in (
        "batch_size = 0",
        "did you mean Blond_Hair",
        "lr_d = -1.0",
        "amp = 'fp8'",
        "unknown setting 'lamda_rec' (did you mean lambda_rec?)",
        "multiple of 64",
        "steps = 'many'",
    ):
        assert part in text, part


def test_config_round_trips_through_toml() -> None:
    cfg = config.load("attgan", overrides={"steps": None, "epochs": 3, "attrs": "Bald,Bangs"})
    again = config.from_dict(tomllib.loads(config.to_toml(cfg)))
    assert again == cfg and again.steps is None


def test_shipped_recipes_validate() -> None:
    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("*.toml"))
    assert recipes
    for path in recipes:
        arch = tomllib.loads(path.read_text())["arch"]
        config.load(arch, path)


# ------------------------------------------------------------------------------------ schedules, losses


def test_learning_rate_schedules_follow_the_official_code() -> None:
    stargan = trainer("stargan").lr_factor(config.StarGANConfig(), 200_000)
    assert stargan(100_999) == 1.0 and stargan(101_000) == 1.0 - 1 / 100_000
    assert stargan(199_999) == pytest.approx(1.0 - 99 / 100_000)
    attgan = trainer("attgan").lr_factor(config.AttGANConfig(), steps_per_epoch=10)
    assert (attgan(999), attgan(1000)) == (1.0, pytest.approx(0.1))
    stgan = trainer("stgan").lr_factor(config.STGANConfig())
    assert (stgan(799_999), stgan(800_000)) == (1.0, pytest.approx(0.1))
    ugatit = trainer("ugatit").lr_factor(config.UGATITConfig(), 10)
    # official: at step s (1-based) > 5, lr -= lr0 / 5 before the update; the last step runs at lr 0
    assert [round(ugatit(t), 6) for t in range(10)] == [1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0]


def test_gradient_penalty_of_a_linear_critic() -> None:
    w = torch.randn(1, 3, 4, 4)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731  gradient w everywhere
    x_real, x_fake = torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4)
    expected = (w.norm() - 1) ** 2
    assert losses.gradient_penalty(critic, x_real, x_fake) == pytest.approx(expected.item(), rel=1e-5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)  # the fp16 path: scaled inner backward, unscaled
    assert losses.gradient_penalty(critic, x_real, x_fake, scaler) == pytest.approx(expected.item(), rel=1e-5)


def test_attribute_bce_reductions_and_gan_terms() -> None:
    logits, target = torch.randn(4, 3), torch.randint(0, 2, (4, 3)).float()
    assert losses.attribute_bce_sum(logits, target) == pytest.approx(
        3 * losses.attribute_bce_mean(logits, target)
    )
    assert (
        losses.lsgan(torch.full((2, 1), 3.0), real=True) == 4.0
        and losses.lsgan(torch.ones(2), real=False) == 1.0
    )
    assert losses.wgan_d_loss(torch.ones(3), torch.zeros(3)) == -1.0
    assert losses.cam_bce(torch.zeros(2, 2), True) == pytest.approx(math.log(2))


def test_rho_is_clipped_after_each_generator_step() -> None:
    G = trainer("ugatit").build(config.UGATITConfig(ch=4, n_res=1, image_size=32))["genA2B"]
    rhos = [m.rho for m in G.modules() if hasattr(m, "rho")]
    with torch.no_grad():
        for k, rho in enumerate(rhos):
            rho.fill_(-0.5 if k % 2 else 1.7)
    trainer("ugatit").clip_rho(G)
    assert rhos and all(float(r.detach().min()) >= 0 and float(r.detach().max()) <= 1 for r in rhos)


# ------------------------------------------------------------------------------------ CLI


def _settings(arch: str) -> list[str]:
    pairs = {**{k: v for k, v in COMMON.items() if k not in ("steps", "device", "workers")}, **TINY[arch]}
    return [a for k, v in pairs.items() for a in ("--set", f"{k}={v}")]


def test_cli_dry_run_prints_the_resolved_config(data_dirs: dict[str, Path], tmp_path: Path) -> None:
    args = [
        "train",
        "attgan",
        "--data",
        str(data_dirs["celeba"]),
        "--out",
        str(tmp_path / "run"),
        "--dry-run",
        "--steps",
        "7",
        "--lr",
        "0.001",
        "--attrs",
        "Male,Eyeglasses",
        *_settings("attgan"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    recipe = tomllib.loads(result.stdout)
    assert (recipe["steps"], recipe["lr_d"], recipe["attrs"], recipe["enc_dim"]) == (
        7,
        0.001,
        ["Male", "Eyeglasses"],
        8,
    )
    assert not (tmp_path / "run").exists()


def test_cli_missing_data_says_what_is_expected(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "stargan", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output and "img_align_celeba/" in result.output
    result = CliRunner().invoke(
        app, ["train", "ugatit", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    )
    assert (
        result.exit_code == 2
        and "trainA/ is missing" in result.output
        and "trainB/ is missing" in result.output
    )
    assert not (tmp_path / "r").exists()


def test_cli_train_refuse_resume_and_export(data_dirs: dict[str, Path], tmp_path: Path) -> None:
    run, runner = tmp_path / "run", CliRunner()
    base = [
        "train",
        "attgan",
        "--data",
        str(data_dirs["celeba"]),
        "--out",
        str(run),
        "--steps",
        "2",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--attrs",
        ATTRS,
        *_settings("attgan"),
    ]
    result = runner.invoke(app, base)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run / "release")
    result = runner.invoke(app, base)
    assert result.exit_code == 2 and "is not empty" in result.output and "--resume auto" in result.output
    result = runner.invoke(app, [*base, "--resume", "auto", "--attrs", "Male"])
    assert result.exit_code == 2 and "cannot change attrs" in result.output
    result = runner.invoke(app, [*base[: -len(_settings("attgan"))], "--resume", "auto", "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert checkpoint.latest(run).name == "step-00000003.pt"
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert models.load(tmp_path / "model").config["provenance"]["trained"]["steps"] == 3
    assert runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "model")]).exit_code != 0


def test_cli_prepare_then_train_from_it(data_dirs: dict[str, Path], tmp_path: Path) -> None:
    prepared, runner = tmp_path / "prepared", CliRunner()
    result = runner.invoke(
        app,
        [
            "prepare",
            "ugatit",
            "--data",
            str(data_dirs["unpaired"]),
            "--out",
            str(prepared),
            "--image-size",
            "32",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    args = [
        "train",
        "ugatit",
        "--data",
        str(prepared),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "1",
        "--image-size",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
        *_settings("ugatit"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, [*args[: -len(_settings("ugatit"))], "--image-size", "48", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2
    (tmp_path / "model-B2A").mkdir()
    (tmp_path / "model-B2A" / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "model")])
    assert result.exit_code == 5 and not (tmp_path / "model").exists()  # refused before writing anything
    result = runner.invoke(
        app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "model"), "--overwrite"]
    )
    assert result.stdout.split() == [str(tmp_path / "model"), str(tmp_path / "model-B2A")]
    assert models.load(tmp_path / "model-B2A").config["direction"] == "B2A"


# ------------------------------------------------------------------------------------ mixed precision


def check_mixed_precision(
    arch: str, amp: str, device: str, data_dirs: dict[str, Path], run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few AMP steps: finite weights, the fp16 GradScaler saved and restored on resume."""
    cfg = tiny_config(arch, data_dirs, device=device, amp=amp, channels_last=True, steps=4)
    seen = record_losses(monkeypatch, arch)
    loop.fit(cfg, run)
    # fp16: the GradScaler starts at 2**16, so the first steps may overflow; it then skips them and backs off
    assert len(seen) == 4 and all(math.isfinite(v) for v in seen[-1].values())
    saved = checkpoint.load(checkpoint.latest(run))
    assert bool(saved["scalers"]["D"]) == (amp == "fp16")
    tensors = [t for m in saved["models"].values() for t in m.values() if t.is_floating_point()]
    assert all(torch.isfinite(t).all() for t in tensors)
    loop.fit(dataclasses.replace(cfg, steps=5), run, resume="auto")
    assert checkpoint.latest(run).name == "step-00000005.pt"


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(
    amp: str, data_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_mixed_precision("stargan", amp, "cpu", data_dirs, tmp_path / "run", monkeypatch)


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("arch", ["stargan", "ugatit"])
def test_mixed_precision_on_cuda(
    arch: str, amp: str, data_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_mixed_precision(arch, amp, "cuda", data_dirs, tmp_path / "run", monkeypatch)


@pytest.mark.parametrize("arch", TRAINERS)
def test_step_files_implement_the_step_file_protocol(arch: str) -> None:
    """Every member loop.py calls through StepFile exists in the step file, with the same parameters."""
    module = trainer(arch)
    members = [n for n in vars(StepFile) if not n.startswith("_")]
    assert set(members) >= {"build", "make_optimizers", "train_step", "sample", "release"}
    for name in members:
        wanted = inspect.signature(getattr(StepFile, name))
        got = inspect.signature(getattr(module, name))
        assert list(got.parameters) == list(wanted.parameters)[1:], f"{arch}.{name}"  # [1:]: self
    assert isinstance(module.COMPILABLE, tuple) and module.COMPILABLE
