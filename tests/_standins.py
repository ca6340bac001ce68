"""Picklable stand-ins for worker-process tests: importing this module must not import torch, since
spawned workers import it to unpickle the detector and the jobs."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np


class FixedFaces:
    """A detector returning the same faces for every photo; it kills its worker process on a photo
    ``crash_width`` pixels wide (a native crash, as a broken decoder would), and with ``no_torch``
    fails the photo if its process has imported torch."""

    name = "fixed"

    def __init__(self, faces: list[Any], crash_width: int | None = None, no_torch: bool = False) -> None:
        self.faces, self.crash_width, self.no_torch = faces, crash_width, no_torch

    def detect(self, rgb: np.ndarray, min_size: float) -> list[Any]:
        if rgb.shape[1] == self.crash_width:
            os._exit(7)
        if self.no_torch and "torch" in sys.modules:  # a worker that finished photos before this one
            raise ValueError("torch was imported in a worker process")
        return list(self.faces)


def modules_loaded(names: list[str], *, timings: Any = None) -> dict[str, bool]:
    """Which of ``names`` this process has imported (run in a worker)."""
    return {name: name in sys.modules for name in names}


def die_if(value: int, *, timings: Any = None) -> int:
    """``value`` back, except that a negative one kills the process."""
    if value < 0:
        os._exit(9)
    return value * 10


def brighter(image: Any, *, timings: Any = None) -> Any:
    """A new array from a worker (large ones come back through a spill file)."""
    return image + 1


def spill_files(folder: str, *, timings: Any = None) -> int:
    return len(os.listdir(folder))
