"""Training the four models as their official code does: typed config, data, losses, one loop, checkpoints.

Each model has one step file (``training/<arch>.py``) implementing :class:`StepFile`, the interface
:func:`faceedit.training.loop.fit` calls. Importing this package is cheap; the step files import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    import torch
    from torch import nn

    from faceedit.models.folder import FaceModel
    from faceedit.training.checkpoint import TrainState

TRAINERS = ("stargan", "attgan", "stgan", "ugatit")


class StepFile(Protocol):
    """What a step file ``training/<arch>.py`` provides (a module satisfies it structurally).

    ``cfg`` is the architecture's own config class (``StarGANConfig``, ...), hence typed ``Any`` here.
    """

    COMPILABLE: tuple[str, ...]  # networks whose losses need no double backward (safe for torch.compile)

    def build(self, cfg: Any) -> dict[str, nn.Module]:
        """Fresh networks (official constructor kwargs and key names)."""
        ...

    def make_optimizers(
        self, cfg: Any, models: dict[str, nn.Module], total_steps: int, steps_per_epoch: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(optimizers, lr schedulers stepped once per iteration), each by network name."""
        ...

    def train_step(self, state: TrainState, cfg: Any, batch: Any) -> dict[str, torch.Tensor]:
        """One official iteration on ``batch``; the losses it computed, detached."""
        ...

    def sample(self, state: TrainState, cfg: Any, fixed: Any) -> list[torch.Tensor]:
        """Sample-grid columns from the fixed batch, each [N,3,S,S] in [-1, 1]."""
        ...

    def release(
        self, cfg: Any, models: dict[str, nn.Module], provenance: dict[str, Any]
    ) -> dict[str, FaceModel]:
        """Exportable models by suffix ("" = the main one)."""
        ...


def trainer(arch: str) -> StepFile:
    """The step file of ``arch`` (``faceedit.training.<arch>``)."""
    if arch not in TRAINERS:
        raise ValueError(f"no trainer for {arch!r}; known: {', '.join(TRAINERS)}")
    return cast("StepFile", importlib.import_module(f"faceedit.training.{arch}"))
