"""A model trained and exported by faceedit is usable by `faceedit edit` / `faceedit anime` as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from faceedit.cli import app
from tests.synthdata import make_celeba, make_unpaired

runner = CliRunner()
TINY = {
    "stargan": ["g_conv_dim=8", "d_conv_dim=8", "g_repeat_num=1", "d_repeat_num=3", "n_critic=1"],
    "ugatit": ["ch=4", "n_res=1", "dis_global_layers=4", "dis_local_layers=3"],
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny models: OpenMP barriers only cost time on a busy 2-core machine


def _train(arch: str, data: Path, run: Path, *extra: str) -> Path:
    settings = [a for kv in TINY[arch] for a in ("--set", kv)]
    args = ["train", arch, "--data", str(data), "--out", str(run), "--steps", "2", "--batch-size", "2",
            "--image-size", "32", "--device", "cpu", "--workers", "0", "--set", "split=all"]  # fmt: skip
    args += [*settings, *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    release = Path(result.stdout.strip().splitlines()[0])
    assert (release / "config.json").is_file()
    return release


def test_trained_stargan_edits_a_photo(astronaut_path: Path, tmp_path: Path) -> None:
    data = make_celeba(tmp_path / "celeba", n=8)
    release = _train("stargan", data, tmp_path / "run", "--attrs", "Blond_Hair,Eyeglasses")
    # --source: a 2-step classifier may already "see" eyeglasses, and asking for them again is a no-op
    result = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Eyeglasses", "-m", str(release),
                                 "--source", "Blond_Hair", "-o", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 0, result.output
    before = np.asarray(Image.open(astronaut_path))
    after = np.asarray(Image.open(tmp_path / "out" / "astronaut_edited.png"))
    assert after.shape == before.shape and not np.array_equal(after, before)
    unknown = runner.invoke(app, ["edit", str(astronaut_path), "--add", "Male", "-m", str(release)])
    assert unknown.exit_code == 2 and "Eyeglasses" in unknown.output  # the attributes it was trained on


def test_trained_ugatit_turns_a_photo_to_anime(astronaut_path: Path, tmp_path: Path) -> None:
    data = make_unpaired(tmp_path / "unpaired", n=4)
    release = _train("ugatit", data, tmp_path / "run")
    result = runner.invoke(
        app, ["anime", str(astronaut_path), "-m", str(release), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "astronaut_anime.png").is_file()
