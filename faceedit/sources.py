"""The faces' own attributes: the classifier's estimate (logits -> labels) and ``--source``, which names
them outright or corrects the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceedit.attributes import _as_labels, normalize, resolve
from faceedit.errors import UsageError


def labels_from_logits(logits: np.ndarray) -> np.ndarray:
    """Classifier logits [N,A] -> 0/1 labels [N,A] float32 (sigmoid > 0.5, i.e. logit > 0; NaN -> 0)."""
    return (np.asarray(logits, dtype=np.float64) > 0).astype(np.float32)


@dataclass(frozen=True)
class SourceSpec:
    """``--source``: absolute (``Male,Young``: these on, every other off) or relative to the classifier's
    estimate (``+Male,-Young``: only these changed). ``none``: everything off."""

    on: tuple[str, ...] = ()
    off: tuple[str, ...] = ()
    relative: bool = False


def parse_source(text: str, attributes: Sequence[str], *, model: str = "this model") -> SourceSpec:
    """Read ``--source`` against the model's attributes (names resolved like --add)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if [normalize(p) for p in parts] == ["none"]:
        return SourceSpec()
    if not parts:
        raise UsageError("--source is empty", "write e.g. --source Male,Young, or --source none")
    signed = [p[0] in "+-" for p in parts]
    if any(signed) and not all(signed):
        raise UsageError(
            f"--source {text!r} mixes +/- names with plain names",
            "plain names list every attribute the face has; +NAME/-NAME correct the classifier's estimate",
        )
    on = [resolve(p.lstrip("+"), attributes, model) for p in parts if not p.startswith("-")]
    off = [resolve(p[1:], attributes, model) for p in parts if p.startswith("-")]
    if set(on) & set(off):
        raise UsageError(f"--source {text!r} turns {sorted(set(on) & set(off))[0]} both on and off")
    return SourceSpec(tuple(dict.fromkeys(on)), tuple(dict.fromkeys(off)), all(signed))


def source_labels(
    attributes: Sequence[str],
    n: int,
    source: SourceSpec | None = None,
    estimate: np.ndarray | None = None,
) -> np.ndarray:
    """The faces' 0/1 labels [n,A]: the classifier estimate, corrected or replaced by ``--source``."""
    if source is None or source.relative:
        if estimate is None:
            raise UsageError(
                "this model has no attribute classifier, so it cannot tell which attributes the face has",
                "say so with --source, e.g. --source Male,Young (every attribute not named is off)",
            )
        labels = _as_labels(estimate, len(attributes)).astype(np.float32)
        if len(labels) != n:
            raise ValueError(f"estimate has {len(labels)} rows, expected {n}")
    else:
        labels = np.zeros((n, len(attributes)), dtype=np.float32)
    index = {name: i for i, name in enumerate(attributes)}
    for name in source.on if source else ():
        labels[:, index[name]] = 1.0
    for name in source.off if source else ():
        labels[:, index[name]] = 0.0
    return labels
