"""The four architectures (``models/<arch>.py``) and our model folder (``models/folder.py``).

Thin on purpose: importing one architecture or ``layers`` runs nothing else. The folder API keeps its
old import path (``faceedit.models.save/load/build/make_config/FaceModel/ARCHS/...``) by loading
``folder`` on first use of one of its names.
"""

from __future__ import annotations

import importlib
from typing import Any

# The public names of folder.py, reachable as before from the package.
_NAMES = """
ARCHS ATTR_COUNT_KWARG CLASSIFIER_COUNT_KWARG CONFIG_FILE CONFIG_KEYS DIGEST_KEY DIRECTIONS FORMAT
FORMAT_VERSION RESIZES RULES SCHEMES TEMPLATES VARIANTS WEIGHTS_FILE FaceModel build
classifier_class generator_class load load_weights make_config read_config save state_tensors
validate_config
"""
FOLDER_NAMES = frozenset(_NAMES.split())


def __getattr__(name: str) -> Any:
    # PEP 562: only the folder's own names load it, so ``from faceedit.models import attgan`` stays lean.
    if name in FOLDER_NAMES:
        return getattr(importlib.import_module("faceedit.models.folder"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
