"""Tiny official-format checkpoints and tiny FaceModels for tests (seconds on CPU, a few hundred KB).

The writers save files exactly as the official training code lays them out (names, folders, dict
wrappers, ``module.`` prefixes), using our modules, whose state-dict keys are the official ones
(proved against the reference fixtures in tests/test_models.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from faceedit import models, specs
from faceedit.models import attgan, stargan, stgan, ugatit

TINY_GENERATOR = {
    "stargan": {"conv_dim": 8, "c_dim": 5, "repeat_num": 2},
    "attgan": {
        "enc_dim": 8,
        "dec_dim": 8,
        "enc_layers": 4,
        "dec_layers": 4,
        "n_attrs": 13,
        "img_size": 32,
        "shortcut_layers": 1,
        "inject_layers": 1,
    },
    "stgan": {"attr_dim": 10, "conv_dim": 8, "n_layers": 4, "shortcut_layers": 2},
    "ugatit": {"ngf": 4, "n_blocks": 2, "img_size": 32, "light": True},
}
TINY_CLASSIFIER = {
    "stargan": {"image_size": 32, "conv_dim": 8, "c_dim": 5, "repeat_num": 5},
    "attgan": {"dim": 8, "fc_dim": 16, "n_layers": 3, "img_size": 32, "n_attrs": 13},
    "stgan": {"image_size": 32, "attr_dim": 10, "conv_dim": 8, "fc_dim": 16, "n_layers": 3},
}
_DEFAULTS = {  # template, conditioning scheme, attributes
    "stargan": ("celeba-178", "stargan", list(specs.STARGAN_ATTRIBUTES)),
    "attgan": ("celeba-170", "attgan", list(specs.ATTGAN_ATTRIBUTES)),
    "stgan": ("celeba-178", "stgan", list(specs.STGAN_PORT_ATTRIBUTES)),
    "ugatit": ("selfie", "none", []),
}


def _randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Default init plus non-trivial norm parameters and running statistics (like the fixtures)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean") or (name.endswith("bias") and tensor.dim() == 1):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.4 - 0.2)
            elif name.endswith(".rho"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen))
            elif tensor.is_floating_point() and not name.endswith(("weight_u", "weight_v")):
                scale = 1.0 / max(1, tensor[0].numel()) ** 0.5 if tensor.dim() > 1 else 0.3
                tensor.copy_((torch.rand(tensor.shape, generator=gen) * 2 - 1) * scale + (tensor.dim() == 1))
    return module.eval()


def tiny_model(arch: str, seed: int = 0, classifier: bool = True) -> models.FaceModel:
    """A small random FaceModel of ``arch`` (32 px), config complete and valid."""
    template, scheme, attrs = _DEFAULTS[arch]
    ckw = TINY_CLASSIFIER.get(arch) if classifier else None
    config = models.make_config(
        arch,
        TINY_GENERATOR[arch],
        attributes=attrs,
        image_size=32,
        template=template,
        resize="bilinear",
        conditioning={"scheme": scheme, "thres_int": 0.5, "rules": "port"},
        classifier_kwargs=ckw,
        provenance={"source_file": "tiny", "upstream": "tests"},
    )
    model = models.build(config)
    _randomise(model.generator, seed)
    if model.classifier is not None:
        _randomise(model.classifier, seed + 1)
    return model


def write_stargan(folder: Path, seed: int = 0, with_d: bool = True, iteration: int = 10000) -> Path:
    """``folder/models/<iter>-G.ckpt`` (+ ``-D.ckpt``) as solver.py saves them; returns the G path."""
    out = folder / "models"
    out.mkdir(parents=True, exist_ok=True)
    G = _randomise(stargan.Generator(**TINY_GENERATOR["stargan"]), seed)
    torch.save(G.state_dict(), out / f"{iteration}-G.ckpt")
    if with_d:
        D = _randomise(stargan.Discriminator(**TINY_CLASSIFIER["stargan"]), seed + 1)
        torch.save(D.state_dict(), out / f"{iteration}-D.ckpt")
    return out / f"{iteration}-G.ckpt"


def write_attgan(
    folder: Path, seed: int = 0, with_d: bool = False, epoch: int = 3, multi_gpu: bool = False
) -> Path:
    """``folder/setting.txt`` + ``folder/checkpoint/weights.<epoch>.pth``; returns ``folder``."""
    kw = TINY_GENERATOR["attgan"]
    G = _randomise(attgan.Generator(**kw), seed)
    prefix = "module." if multi_gpu else ""
    data: dict = {"G": {prefix + k: v for k, v in G.state_dict().items()}}
    if with_d:
        D = _randomise(attgan.Discriminators(dim=8, fc_dim=16, n_layers=3, img_size=32), seed + 1)
        data.update(D=D.state_dict(), optim_G={}, optim_D={})
    (folder / "checkpoint").mkdir(parents=True, exist_ok=True)
    torch.save(data, folder / "checkpoint" / f"weights.{epoch}.pth")
    setting = {
        "attrs": list(specs.ATTGAN_ATTRIBUTES),
        "img_size": 32,
        "shortcut_layers": 1,
        "inject_layers": 1,
        "enc_dim": 8,
        "dec_dim": 8,
        "dis_dim": 8,
        "dis_fc_dim": 16,
        "enc_layers": 4,
        "dec_layers": 4,
        "dis_layers": 3,
        "enc_norm": "batchnorm",
        "dec_norm": "batchnorm",
        "dis_norm": "instancenorm",
        "dis_fc_norm": "none",
        "enc_acti": "lrelu",
        "dec_acti": "relu",
        "dis_acti": "lrelu",
        "dis_fc_acti": "relu",
        "thres_int": 0.5,
        "data": "CelebA",
        "n_attrs": 13,
    }
    (folder / "setting.txt").write_text(json.dumps(setting, indent=4))
    return folder


def write_stgan(folder: Path, seed: int = 0, with_d: bool = True, iteration: int = 20000) -> Path:
    """``folder/checkpoints/G_<iter>.pth.tar`` (+ D), ``module.``-prefixed as the 2-GPU default saves."""
    out = folder / "checkpoints"
    out.mkdir(parents=True, exist_ok=True)
    G = _randomise(stgan.Generator(**TINY_GENERATOR["stgan"]), seed)
    optim = {
        "state": {},
        "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0], "initial_lr": 2e-4}],
    }
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in G.state_dict().items()}, "optimizer": optim},
        out / f"G_{iteration}.pth.tar",
    )
    if with_d:
        D = _randomise(stgan.Discriminator(**TINY_CLASSIFIER["stgan"]), seed + 1)
        torch.save(
            {"state_dict": {f"module.{k}": v for k, v in D.state_dict().items()}, "optimizer": optim},
            out / f"D_{iteration}.pth.tar",
        )
    return out / f"G_{iteration}.pth.tar"


def write_ugatit(folder: Path, seed: int = 0, light: bool = True, step: int = 1000) -> Path:
    """``folder/model/<name>_params_<step>.pt`` with the six entries of UGATIT.save()."""
    kw = {**TINY_GENERATOR["ugatit"], "light": light}
    nets = {
        "genA2B": _randomise(ugatit.ResnetGenerator(**kw), seed),
        "genB2A": _randomise(ugatit.ResnetGenerator(**kw), seed + 1),
        "disGA": ugatit.Discriminator(ndf=4, n_layers=7),
        "disGB": ugatit.Discriminator(ndf=4, n_layers=7),
        "disLA": ugatit.Discriminator(ndf=4, n_layers=5),
        "disLB": ugatit.Discriminator(ndf=4, n_layers=5),
    }
    (folder / "model").mkdir(parents=True, exist_ok=True)
    path = folder / "model" / f"{folder.name}_params_{step:07d}.pt"
    torch.save({name: net.state_dict() for name, net in nets.items()}, path)
    return path
