"""A stand-in attribute "model" of known, limited capacity, for tests and benchmarks/paste_modes.py.

No real weights exist on this machine. The stand-in behaves like a 128-px StarGAN in the two ways
that matter to paste-back: it can only reconstruct a low-pass version of its input (detail finer
than 1/32 of the crop is lost, as a small generator loses skin texture and hair strands), and it
adds a smooth, conditioned change in the upper part of the crop (a hair-colour shift).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from faceedit import models
from faceedit.runtime import Engine

ATTRIBUTES = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young"]
# Colour each label adds in the hair band, in the generator's [-1, 1] units (R, G, B). Black hair adds
# none, so a Black_Hair face is rebuilt as exactly its low-pass (the photo itself at full capacity).
HAIR_COLOURS = torch.tensor([[0, 0, 0], [0.45, 0.30, -0.20], [0.10, -0.05, -0.15], [0, 0, 0], [0, 0, 0]])


class StandInGenerator(nn.Module):
    """``G(x [N,3,S,S] in [-1,1], c [N,5] labels) -> [N,3,S,S]``: low-pass(x) + hair band * colour(c).

    ``lowpass`` is the side (px) the crop is reduced to before being scaled back up (its capacity;
    the crop's own size: a perfect reconstruction).
    """

    def __init__(self, lowpass: int = 32) -> None:
        super().__init__()
        self.lowpass = lowpass
        self.register_buffer("colours", HAIR_COLOURS.clone())

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        small = F.adaptive_avg_pool2d(x, self.lowpass)
        rebuilt = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
        rows = torch.linspace(0, 1, size, device=x.device)
        band = torch.sigmoid((0.32 - rows) * 30)  # the crop's top third: hair in the CelebA framing
        colour = c.to(x.dtype) @ self.colours.to(x.dtype)  # [N,3]
        return torch.tanh(
            torch.atanh(rebuilt.clamp(-0.999, 0.999)) + colour[:, :, None, None] * band[:, None]
        )


def standin_model(size: int = 128, lowpass: int = 32) -> models.FaceModel:
    """The stand-in as a StarGAN FaceModel (no attribute classifier: give ``--source``)."""
    config = models.make_config(
        "stargan",
        {"conv_dim": 8, "c_dim": 5, "repeat_num": 1},
        attributes=ATTRIBUTES,
        image_size=size,
        template="celeba-178",
        resize="bilinear",
        conditioning={"scheme": "stargan", "thres_int": 0.5, "rules": "port"},
    )
    return models.FaceModel(StandInGenerator(lowpass).eval(), config)


def standin_engine(size: int = 128, lowpass: int = 32) -> Engine:
    """The stand-in on the CPU in fp32, run as it is (no fused copy: it is not a real StarGAN)."""
    return Engine(standin_model(size, lowpass), "cpu", "fp32", optimise=False)
