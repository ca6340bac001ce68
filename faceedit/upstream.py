"""Official checkpoints -> :class:`FaceModel`: the public entry (``import_checkpoint``), its option checks
and the dispatch between PyTorch files (:mod:`faceedit.convert.torch_import`, one skeleton with hooks per
code base in ``convert/torch_archs.py``) and TensorFlow checkpoints (:mod:`faceedit.convert.tf_plans`).

Every name scripts imported from here before the move still resolves. Nothing is written:
``faceedit models import`` saves the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceedit.convert.tf_prefix import find_prefix as tf_checkpoint_prefix
from faceedit.convert.torch_files import (
    EXPECTED,
    describe,
    read_torch_file,
    sha256_of,
)
from faceedit.errors import UsageError

if TYPE_CHECKING:
    from faceedit.models import FaceModel

__all__ = [
    "ARCH_NAMES",
    "EXPECTED",
    "OVERRIDES",
    "describe",
    "import_checkpoint",
    "import_tf_checkpoint",
    "read_torch_file",
    "sha256_of",
    "tf_checkpoint_prefix",
]

ARCH_NAMES = ("stargan", "attgan", "stgan", "ugatit", "attcls")
OVERRIDES = ("attrs", "image_size", "direction", "discriminator", "dataset")


def import_checkpoint(arch: str, path: Path | str, **overrides: Any) -> FaceModel:
    """Read an official checkpoint of ``arch`` (file or run folder) and return a FaceModel.

    ``overrides``: ``attrs`` (names in training order, list or comma string), ``image_size`` (int),
    ``direction`` ("A2B"/"B2A", U-GAT-IT only), ``discriminator`` (path of the D file when it is not
    beside the generator under its official name; StarGAN, STGAN, AttGAN), ``dataset`` (StarGAN only:
    celeba, rafd or both, when G's label channels and D's outputs do not tell). Raises UsageError for bad
    arguments and CheckpointError (one line: what was expected, what was found) for unusable files.
    """
    arch = arch.strip().lower()
    if arch not in ARCH_NAMES:
        raise UsageError(f"unknown architecture {arch!r}", f"choose one of {', '.join(ARCH_NAMES)}")
    overrides = _check_overrides(arch, overrides)
    path = Path(path).expanduser()
    # TensorFlow checkpoints (taki0112/UGATIT, csmliu/STGAN, LynnHo/AttGAN-Tensorflow) go elsewhere.
    tf_prefix = tf_checkpoint_prefix(path)
    if tf_prefix is not None:
        return import_tf_checkpoint(arch, tf_prefix, **overrides)
    if not path.exists():
        raise UsageError(f"{path} does not exist", "pass the checkpoint file or the training run's folder")
    if arch == "attcls":  # published as a TF checkpoint only
        raise UsageError(f"{path} is not a TensorFlow checkpoint", f"pass {EXPECTED[arch]}")
    from faceedit.convert import torch_archs, torch_import

    return torch_import.run(torch_archs.HOOKS[arch](), path, overrides)


def import_tf_checkpoint(arch: str, prefix: Path, **overrides: Any) -> FaceModel:
    """TensorFlow checkpoint -> FaceModel with the TF-variant flags (see :mod:`faceedit.convert.tf_plans`)."""
    from faceedit.convert import tf_plans

    if overrides.pop("discriminator", None) is not None:
        raise UsageError(
            "--discriminator applies to PyTorch checkpoints only",
            "TF checkpoints are read for the generator alone; drop --discriminator",
        )
    return tf_plans.import_tf_checkpoint(arch, prefix, **overrides)


def _check_overrides(arch: str, overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = [k for k in overrides if k not in OVERRIDES]
    if unknown:
        raise UsageError(f"unknown import option(s) {unknown}", f"known: {', '.join(OVERRIDES)}")
    out = {k: v for k, v in overrides.items() if v is not None}
    if "attrs" in out:
        attrs = out["attrs"].split(",") if isinstance(out["attrs"], str) else list(out["attrs"])
        out["attrs"] = [a.strip() for a in attrs if a.strip()]
        if arch == "ugatit":
            raise UsageError("U-GAT-IT has no attributes", "drop --attrs")
        if len(set(out["attrs"])) != len(out["attrs"]):
            raise UsageError(f"--attrs lists a name twice: {','.join(out['attrs'])}")
    if "dataset" in out and arch != "stargan":
        raise UsageError("--dataset applies to StarGAN only (celeba, rafd or both)")
    if "direction" in out:
        if arch != "ugatit":
            raise UsageError("--direction applies to U-GAT-IT only")
        if out["direction"] not in ("A2B", "B2A"):
            raise UsageError(f"direction must be A2B or B2A, got {out['direction']!r}")
    if "discriminator" in out:
        if arch == "ugatit":
            raise UsageError("U-GAT-IT has no attribute classifier", "drop the discriminator file")
        out["discriminator"] = Path(out["discriminator"]).expanduser()
        if not out["discriminator"].is_file():
            raise UsageError(f"discriminator file {out['discriminator']} does not exist")
    if "image_size" in out and (not isinstance(out["image_size"], int) or out["image_size"] < 8):
        raise UsageError(f"image size must be an integer >= 8, got {out['image_size']!r}")
    return out
