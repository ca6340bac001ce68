"""Loading a model for inference: :func:`load_engine` builds an :class:`~faceedit.runtime.Engine`
from a spec (the caller keeps it: nothing is cached here), :func:`describe` names what runs where."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faceedit import expressions

if TYPE_CHECKING:
    from faceedit.runtime import Engine


def load_engine(
    spec: str,
    device: str = "auto",
    precision: str = "auto",
    offline: bool = False,
    *,
    compile: bool = False,
    cuda_graphs: bool = False,
) -> Engine:
    """The model ``spec`` (card name, ``hf:org/repo``, folder) on ``device``, built now (nothing kept)."""
    from faceedit import hub
    from faceedit.runtime import Engine, resolve_device, resolve_precision

    resolved_device = resolve_device(device)  # usage errors before any download
    resolve_precision(precision, resolved_device)
    model = hub.load(spec, device="cpu", offline=offline)
    where = resolved_device.type if resolved_device.index is None else str(resolved_device)
    return Engine(model, where, precision, compile=compile, cuda_graphs=cuda_graphs)


def describe(engine: Engine, spec: str) -> str:
    """One line naming the model and where it runs (printed once on stderr)."""
    config = engine.config
    n = len(config.get("attributes") or [])
    what = f"{config['arch']} {config.get('variant', 'port')}, {config['image_size']}px"
    if n:
        what += f", {n} attributes"
    if expressions.expressions_of(config):
        what += f", {len(expressions.expressions_of(config))} expressions"
    if engine.model.classifier is not None:
        what += ", attribute classifier"
    return f"model {spec} ({what}) on {engine.device} ({engine.precision})"
