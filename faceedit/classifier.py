"""The STGAN authors' CelebA attribute classifier as a faceedit model (arch ``attcls``): import from its
TensorFlow checkpoint (``128.ckpt``; Adam slots skipped), and load it by card name or folder for scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceedit import specs
from faceedit.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from faceedit.models import FaceModel

DEFAULT_CARD = "attcls-celeba-128"
_HINT = "pass the att_classification checkpoint (128.ckpt.index + 128.ckpt.data-00000-of-00001)"


def import_tf(path: Path | str, **overrides: Any) -> FaceModel:
    """TF checkpoint (prefix, ``.index`` or folder) of ``att_classification`` -> FaceModel (classifier only).

    Only the 2 x 10 + 4 network tensors are read; everything else in the index (``/Adam``, ``/Adam_1``,
    ``beta1_power``, ``beta2_power``, ``counter/counter``) is training state and ignored.
    """
    import torch

    from faceedit import attributes, models
    from faceedit.models import attcls
    from faceedit.models.layers import KeyMapError
    from faceedit.tfckpt import open_checkpoint

    if overrides:
        raise UsageError(f"options {sorted(overrides)} do not apply to the attribute classifier")
    ckpt = open_checkpoint(path)
    try:
        kwargs = attcls.tf_kwargs({name: e.shape for name, e in ckpt.entries.items()})
    except KeyMapError as e:
        raise CheckpointError(f"{ckpt.index_path.name}: {e}", _HINT) from None
    if kwargs["att_dim"] != len(attributes.CELEBA_ATTRIBUTES):
        raise CheckpointError(
            f"the classifier predicts {kwargs['att_dim']} attributes, not CelebA's 40", _HINT
        )
    names = [tf for tf, _ in attcls.tf_rules().values()]
    arrays = ckpt.read_many(names)
    state = attcls.tf_state({k: torch.from_numpy(v) for k, v in arrays.items()})
    provenance = {
        "source_file": str(ckpt.index_path),
        "source_sha256": ckpt.index.sha256,
        "upstream": attcls.UPSTREAM,
        "skipped": len(ckpt.entries) - len(names),
    }
    config = attcls_config(kwargs, provenance)
    model = models.build(config, empty=True)
    models.load_weights(model.classifier, state, f"{ckpt.index_path.name} (classifier)")
    model.classifier.eval()
    return model


def attcls_config(kwargs: dict[str, Any], provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json of the attribute classifier (``kwargs``: its constructor's, e.g. ``{"dim": 32}``): all
    40 CelebA attributes, LynnHo/AttGAN-Tensorflow's CelebA crop (170 at (26, 3), bicubic) at 128 px."""
    from faceedit import models

    template = specs.TEMPLATES["celeba-tf"]
    return models.make_config(
        "attcls",
        {},
        attributes=list(specs.CELEBA_ATTRIBUTES),
        image_size=int(kwargs.get("img_size", 128)),
        template=template.name,
        resize=template.resize,
        conditioning={"scheme": "none", "thres_int": 0.5, "rules": "tf"},
        classifier_kwargs=kwargs,
        variant="tf",
        provenance=provenance,
    )


def load(spec: str | None, device: str = "cpu", offline: bool = False) -> FaceModel:
    """The classifier named by ``spec`` (card name, ``local:DIR`` or folder; None = the STGAN authors')."""
    from faceedit import hub

    model = hub.load(spec or DEFAULT_CARD, device=device, offline=offline)
    if model.classifier is None:
        raise UsageError(
            f"{spec} has no attribute classifier",
            f"pass --classifier {DEFAULT_CARD} or a folder made by `faceedit models import attcls`",
        )
    return model
