"""``faceedit models import``: official fixtures -> model folders, summaries, errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from faceedit import models
from faceedit.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny 32-px models gain nothing from threads, and OpenMP barriers stall on shared, busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SOURCES = {
    "stargan": "stargan/stargan_fixture",
    "attgan": "attgan/output/fixture_32_shortcut2_inject1",
    "stgan": "stgan/experiments/stgan_fixture",
    "ugatit": "ugatit/results/fixture_full",
}


def _run(*args: str | Path):
    return runner.invoke(app, ["models", "import", *map(str, args)])


@pytest.mark.parametrize("arch", list(SOURCES))
def test_import_fixture_writes_a_loadable_folder(fixtures_dir: Path, tmp_path: Path, arch: str) -> None:
    out = tmp_path / arch
    result = _run(arch, fixtures_dir / SOURCES[arch], "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert (
        f"imported {arch}" in result.stderr and "parameters" in result.stderr and "sha256 " in result.stderr
    )
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    model = models.load(out)
    n_params = sum(p.numel() for p in model.generator.parameters())
    assert f"{n_params:,} parameters" in result.stderr
    assert ("classifier: yes" in result.stderr) == (model.classifier is not None)


def test_imported_folder_reproduces_the_reference(fixtures_dir: Path, tmp_path: Path) -> None:
    result = _run("ugatit", fixtures_dir / SOURCES["ugatit"], "--out", tmp_path / "m", "--direction", "B2A")
    assert result.exit_code == 0, result.output
    ref = np.load(fixtures_dir / "ugatit" / "ugatit_fixture_full.npz")
    with torch.no_grad():
        image, _, _ = models.load(tmp_path / "m").generator(torch.from_numpy(ref["x"]))
    assert np.abs(image.numpy() - ref["B2A_out"]).max() <= 1e-5
    assert "direction B2A" in result.stderr


def test_attrs_option_and_overwrite(fixtures_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    names = "Hair_A,Hair_B,Hair_C,Male,Young"
    assert _run("stargan", fixtures_dir / SOURCES["stargan"], "--out", out, "--attrs", names).exit_code == 0
    assert models.load(out).attributes == names.split(",")
    again = _run("stargan", fixtures_dir / SOURCES["stargan"], "--out", out)
    assert again.exit_code == 5 and "already exists" in again.stderr
    assert models.load(out).attributes == names.split(",")  # untouched
    replaced = _run("stgan", fixtures_dir / SOURCES["stgan"], "--out", out, "--overwrite")
    assert replaced.exit_code == 0 and models.load(out).arch == "stgan"


def _bad(kind: str, tmp_path: Path, fixtures_dir: Path) -> Path:
    path = tmp_path / f"{kind}.ckpt"
    if kind == "text":
        path.write_text("not weights\n")
    elif kind == "truncated":
        good = (fixtures_dir / "stargan/stargan_fixture/models/10000-G.ckpt").read_bytes()
        path.write_bytes(good[:-100])
    elif kind == "needs-code":
        torch.save({"net": _Unpicklable()}, path)
    elif kind == "wrong-arch":
        path = fixtures_dir / "ugatit/results/fixture_light/model/fixture_light_params_0100000.pt"
    return path


class _Unpicklable:
    """An object whose pickle needs this module's code: weights_only refuses it."""


@pytest.mark.parametrize(
    ("kind", "code", "message"),
    [
        ("missing", 2, "does not exist"),
        ("text", 4, "is a text file"),
        ("truncated", 4, "is truncated or corrupt"),
        ("needs-code", 4, "need their original code"),
        ("wrong-arch", 4, "expected a StarGAN generator, found a U-GAT-IT checkpoint"),
    ],
)
def test_bad_inputs_give_one_line_and_exit_code(
    fixtures_dir: Path, tmp_path: Path, kind: str, code: int, message: str
) -> None:
    path = tmp_path / "missing.ckpt" if kind == "missing" else _bad(kind, tmp_path, fixtures_dir)
    out = tmp_path / "out"
    result = _run("stargan", path, "--out", out)
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stderr.count("error:") == 1 and result.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["cyclegan", "{src}", "--out", "{out}"],
        ["ugatit", "{src}", "--out", "{out}", "--direction", "sideways"],
        ["stargan", "{src}"],  # --out is required
    ],
)
def test_usage_errors_exit_2(fixtures_dir: Path, tmp_path: Path, args: list[str]) -> None:
    src, out = fixtures_dir / SOURCES["ugatit"], tmp_path / "out"
    result = _run(*(a.format(src=src, out=out) for a in args))
    assert result.exit_code == 2, result.output
    assert not out.exists()


def test_real_process(fixtures_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "attgan-model"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [
        sys.executable,
        "-m",
        "faceedit",
        "models",
        "import",
        "attgan",
        str(fixtures_dir / SOURCES["attgan"]),
    ]
    done = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert "celeba-170" in done.stderr and models.load(out).arch == "attgan"
    failed = subprocess.run(
        [*cmd[:-1], str(tmp_path / "nothing"), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert failed.returncode == 2 and "does not exist" in failed.stderr


def test_raw_pickle_is_one_line_without_torch_warnings(tmp_path: Path) -> None:
    """Issue 10: a plain pickle (protocol 4) made torch print a UserWarning before our one-line error."""
    import pickle

    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"main.0.weight": np.zeros((8, 8, 7, 7), np.float32)}, protocol=4))
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # warnings shown, as for a user
    cmd = [
        sys.executable,
        "-m",
        "faceedit",
        "models",
        "import",
        "stargan",
        str(path),
        "--out",
        str(tmp_path / "o"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 4, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: raw.pkl"), done.stderr
    assert not (tmp_path / "o").exists()
