"""Multi-process training under torchrun: two CPU processes (gloo) train StarGAN (gradient penalty =
double backward through DDP) and U-GAT-IT (spectral norm, ρ clipping), each on its own shard, and end with
identical weights; only rank 0 writes the run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from faceedit import models
from tests.synthdata import make_celeba, make_unpaired

# Each rank saves its first batch and its parameters after the last step (the run folder holds rank 0's).
LAUNCHED = textwrap.dedent(
    """
    import os, sys
    import torch
    import torch.distributed as dist
    from faceedit.cli import app
    from faceedit.training import loop, trainer

    out, celeba, unpaired = sys.argv[1:4]
    original = loop._run_steps

    def run_steps(cfg, state, *args, **kwargs):
        original(cfg, state, *args, **kwargs)
        params = {n: dict(m.named_parameters()) for n, m in state.models.items()}
        torch.save(params, f"{out}/{cfg.arch}-rank{os.environ['RANK']}.pt")

    loop._run_steps = run_steps
    for arch in ("stargan", "ugatit"):
        module = trainer(arch)

        def step(state, cfg, batch, original_step=module.train_step):
            if state.step == 0:  # each rank's first batch: the shards must differ
                torch.save(batch[0].cpu(), f"{out}/{cfg.arch}-batch{os.environ['RANK']}.pt")
            return original_step(state, cfg, batch)

        module.train_step = step
    common = "--steps 2 --batch-size 2 --image-size 32 --device cpu --workers 0 --set split=all"
    stargan = "--attrs Blond_Hair,Eyeglasses --set g_conv_dim=8 --set d_conv_dim=8 --set g_repeat_num=1"
    stargan += " --set d_repeat_num=3 --set n_critic=2 --set log_every=1"
    ugatit = "--set ch=4 --set n_res=1 --set dis_global_layers=4 --set dis_local_layers=3 --set log_every=1"
    dist.init_process_group("gloo")  # one group for both runs (fit joins it and leaves it open)
    for arch, data, extra in (("stargan", celeba, stargan), ("ugatit", unpaired, ugatit)):
        args = ["train", arch, "--out", f"{out}/{arch}", "--data", data, *extra.split(), *common.split()]
        app(args=args, standalone_mode=False)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_two_cpu_processes_end_with_identical_weights(tmp_path: Path) -> None:
    celeba = make_celeba(tmp_path / "celeba", n=8)
    unpaired = make_unpaired(tmp_path / "unpaired", n=4)
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command = [*launcher, str(script), str(tmp_path), str(celeba), str(unpaired)]
    # Own process group: on a hang, the ranks (children of the launcher) are killed with it.
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail("torchrun did not finish in 300 s: " + stderr[-2000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    for arch in ("stargan", "ugatit"):
        ranks = [torch.load(tmp_path / f"{arch}-rank{r}.pt", weights_only=True) for r in range(2)]
        for name, params in ranks[0].items():
            for key, value in params.items():
                assert torch.equal(value, ranks[1][name][key]), f"{arch} {name}.{key} differs between ranks"
        log = [json.loads(line) for line in (tmp_path / arch / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2]  # written once, by rank 0
        assert len(list((tmp_path / arch / "checkpoints").iterdir())) == 1
        models.load(tmp_path / arch / "release")
        # different images on each rank: without gradient averaging the weights would have drifted apart
        batches = [torch.load(tmp_path / f"{arch}-batch{r}.pt", weights_only=True) for r in range(2)]
        assert not torch.equal(*batches)
