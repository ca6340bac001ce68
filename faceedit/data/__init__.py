"""Training data: CelebA (``celeba.py``), RaFD (``rafd.py``), unpaired folders (``unpaired.py``), and the
plumbing they share (``common.py``: crop templates, image sources, batch order, loaders, prepare).

Thin on purpose: importing one dataset module runs only what it imports. ``faceedit.data.TEMPLATES``
and the other shared names keep their import path by loading ``common`` on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# The public names of common.py, reachable as before from the package.
_NAMES = """
PREPARED_FILE PREPARED_FORMAT TEMPLATES ImageSource LoaderSpec StepBatches Template TrainData
augment_rng default_workers load_image make_loader open_images prepare_folder read_prepared
to_chw_tensor to_input write_prepared
"""
COMMON_NAMES = frozenset(_NAMES.split())


def __getattr__(name: str) -> Any:
    # PEP 562: only the shared names load ``common`` (numpy, PIL, torch), not every dataset import.
    if name in COMMON_NAMES:
        return getattr(importlib.import_module("faceedit.data.common"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
