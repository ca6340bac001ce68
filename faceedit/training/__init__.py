"""Training the four models as their official code does: typed config, data, losses, one loop, checkpoints.

Each model has one step file (``training/<arch>.py``) exposing the same small interface, used by
:func:`faceedit.training.loop.fit`:

- ``build(cfg) -> dict[str, nn.Module]``: fresh networks (official constructor kwargs, key names);
- ``make_optimizers(cfg, models, total_steps, steps_per_epoch) -> (optimizers, schedulers)``;
- ``train_step(state, cfg, batch) -> dict[str, Tensor]``: one official iteration, detached losses;
- ``sample(state, cfg, fixed) -> list[Tensor]``: sample-grid columns, each [N,3,S,S] in [-1, 1];
- ``release(cfg, models, provenance) -> dict[str, FaceModel]``: exportable models ("" = the main one);
- ``COMPILABLE``: networks whose losses need no double backward (safe for torch.compile).

Importing this package is cheap; the step files import torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TRAINERS = ("stargan", "attgan", "stgan", "ugatit")


def trainer(arch: str) -> ModuleType:
    """The step file of ``arch`` (``faceedit.training.<arch>``)."""
    if arch not in TRAINERS:
        raise ValueError(f"no trainer for {arch!r}; known: {', '.join(TRAINERS)}")
    return importlib.import_module(f"faceedit.training.{arch}")
