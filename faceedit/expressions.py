"""RaFD expressions and StarGAN's three label layouts (CelebA, RaFD, both with the mask vector): names,
the label vectors the official ``test_multi`` builds, and the photo's own expression from D's RaFD head.
numpy only (the CLI imports it); attribute rules stay in :mod:`faceedit.attributes`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from faceedit import attributes, sources, specs
from faceedit.errors import CheckpointError, UsageError

RAFD_EXPRESSIONS = specs.RAFD_EXPRESSIONS  # the official c2 order (ImageFolder's sorted folders)
DATASETS = specs.LABEL_LAYOUTS
MASK_CELEBA, MASK_RAFD = (1.0, 0.0), (0.0, 1.0)  # solver.label2onehot(zeros | ones, 2)


def dataset_of(config: Mapping[str, Any]) -> str:
    """celeba | rafd | both, from a StarGAN config's generator kwargs (other archs: celeba)."""
    if config.get("arch") != "stargan":
        return "celeba"
    kwargs = config.get("generator_kwargs") or {}
    c_dim, c2_dim = int(kwargs.get("c_dim", 5)), int(kwargs.get("c2_dim", 0))
    found = "celeba" if not c2_dim else ("rafd" if not c_dim else "both")
    said = (config.get("conditioning") or {}).get("dataset", "celeba")
    if said != found:
        raise CheckpointError(
            f"config.json says dataset {said!r} but the generator's labels are laid out for {found!r}",
            "re-import or re-export the model",
        )
    return found


def expressions_of(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The model's expression names in label order (() for CelebA-only models)."""
    if dataset_of(config) == "celeba":
        return ()
    return tuple((config.get("conditioning") or {}).get("expressions", RAFD_EXPRESSIONS))


def label_names(config: Mapping[str, Any]) -> list[str]:
    """Names of the faces' own labels: CelebA attributes, then expressions (``--source``, JSON reports)."""
    return [*config["attributes"], *expressions_of(config)]


def conditioning_block(dataset: str, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """config.json ``conditioning`` of a StarGAN model trained on ``dataset``."""
    block = dict(base or attributes.default_conditioning("stargan", "port"))
    if dataset != "celeba":
        block.update(dataset=dataset, expressions=list(RAFD_EXPRESSIONS))
    return block


def resolve(name: str, known: Sequence[str] = RAFD_EXPRESSIONS) -> str:
    """The model's spelling of an expression (case-insensitive, unambiguous prefix); UsageError lists all."""
    key = attributes.normalize(name)
    found = [k for k in known if attributes.normalize(k) == key]
    found = found or [k for k in known if len(key) >= 3 and attributes.normalize(k).startswith(key)]
    if len(found) == 1:
        return found[0]
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else "names are case-insensitive"
    raise UsageError(f"unknown expression {name!r}; the expressions are: {', '.join(known)}", hint)


def check(
    config: Mapping[str, Any], spec: attributes.EditSpec, *, model: str = "this model"
) -> attributes.EditSpec:
    """Resolve names (attributes.check, plus the expression) and refuse what the layout cannot do."""
    dataset = dataset_of(config)
    if spec.expression is not None and dataset == "celeba":
        raise UsageError(
            f"{model} was trained on CelebA only and has no expressions",
            "use a StarGAN trained on RaFD or on CelebA + RaFD (faceedit models info stargan-rafd-128)",
        )
    if spec.expression is not None and spec.edits:
        raise UsageError(
            "--expression cannot be combined with --add/--remove: the official labels mark either the "
            "CelebA part or the RaFD part as valid (the mask vector), never both",
            "edit the expression and the attributes in two runs",
        )
    if dataset == "rafd" and spec.edits:
        raise UsageError(
            f"{model} was trained on RaFD only: it edits expressions, not attributes", "use --expression"
        )
    resolved = attributes.check(config["attributes"], spec, config["conditioning"], model=model)
    if spec.expression is None:
        return resolved
    return replace(resolved, expression=resolve(spec.expression, expressions_of(config)))


# --- the faces' own labels ------------------------------------------------------------------------


def split_logits(config: Mapping[str, Any], logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classifier logits [N, A + E] -> (CelebA attribute logits [N,A], expression logits [N,E])."""
    n_attrs = len(config["attributes"])
    logits = np.asarray(logits, dtype=np.float64)
    return logits[:, :n_attrs], logits[:, n_attrs:]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of expression logits [N,E] (RaFD's head is trained with cross-entropy)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def estimate(config: Mapping[str, Any], logits: np.ndarray | None) -> np.ndarray | None:
    """0/1 labels [N, A + E]: attributes by sigmoid > 0.5, the expression one-hot by softmax argmax."""
    if logits is None:
        return None
    celeba, expr = split_logits(config, logits)
    labels = sources.labels_from_logits(celeba)
    if expr.shape[1] == 0:
        return labels
    one_hot = np.eye(expr.shape[1], dtype=np.float32)[softmax(expr).argmax(axis=1)]
    return np.concatenate([labels, one_hot], axis=1)


def probabilities(names: Sequence[str], logits: np.ndarray) -> dict[str, float]:
    """{name: probability} of one face: sigmoid per attribute, softmax over the expressions."""
    logits = np.asarray(logits, dtype=np.float64)
    n_expr = sum(1 for n in names if n in RAFD_EXPRESSIONS)
    n_attrs = len(names) - n_expr
    probs = list(1.0 / (1.0 + np.exp(-logits[:n_attrs])))
    if n_expr:
        probs += list(softmax(logits[None, n_attrs:])[0])
    return {n: round(float(p), 3) for n, p in zip(names, probs, strict=True)}


def exclusive_source(config: Mapping[str, Any], source: sources.SourceSpec) -> sources.SourceSpec:
    """``--source +happy`` replaces the estimated expression (a face has one): the others turn off."""
    named = [n for n in source.on if n in expressions_of(config)]
    if not source.relative or not named:
        return source
    if len(named) > 1:
        raise UsageError(f"--source names {len(named)} expressions ({', '.join(named)}); a face has one")
    others = tuple(n for n in expressions_of(config) if n != named[0] and n not in source.off)
    return replace(source, off=source.off + others)


# --- conditioning ---------------------------------------------------------------------------------


def encode(config: Mapping[str, Any], source: np.ndarray, spec: attributes.EditSpec) -> np.ndarray | None:
    """G's label input [N, label channels] float32 for the faces' labels ``source`` [N, A + E].

    CelebA-only models: :func:`attributes.encode`. An expression edit: c2 = src + intensity·(trg − src)
    with one-hot src/trg (1.0 = the official one-hot target, as for StarGAN attributes); with both
    datasets ``[0 (A), c2, 0 1]``. Attribute edits (and the reconstruction) of a both-dataset model:
    ``[attributes.encode(...), 0 (E), 1 0]``, exactly as ``test_multi`` builds them.
    """
    dataset = dataset_of(config)
    names = list(config["attributes"])
    if dataset == "celeba":
        return attributes.encode(config["conditioning"], names, source, spec)
    source = np.asarray(source, dtype=np.float32)
    n, n_attrs = len(source), len(names)
    src_celeba, src_expr = source[:, :n_attrs], source[:, n_attrs:]
    if spec.expression is not None or dataset == "rafd":
        expr = src_expr
        if spec.expression is not None:
            target = np.zeros_like(src_expr)
            target[:, expressions_of(config).index(spec.expression)] = 1.0
            expr = src_expr + np.float32(spec.intensity) * (target - src_expr)
        if dataset == "rafd":
            return expr.astype(np.float32)
        parts = [np.zeros((n, n_attrs), np.float32), expr, np.tile(MASK_RAFD, (n, 1))]
    else:
        celeba = attributes.encode(config["conditioning"], names, src_celeba, spec)
        parts = [celeba, np.zeros_like(src_expr), np.tile(MASK_CELEBA, (n, 1))]
    return np.concatenate(parts, axis=1).astype(np.float32)


def grid_specs(spec: attributes.EditSpec) -> list[attributes.EditSpec]:
    """``--grid`` of an expression edit: every expression at the edit's intensity (test_multi's RaFD row)."""
    return [replace(spec, expression=name) for name in RAFD_EXPRESSIONS]


def official_targets(config: Mapping[str, Any], c_org: np.ndarray) -> list[np.ndarray]:
    """The label vectors ``test``/``test_multi`` feed for CelebA labels ``c_org`` [N,A]: one per attribute
    (create_labels), then one per expression; each [N, label channels]."""
    dataset, n = dataset_of(config), len(c_org)
    out: list[np.ndarray] = []
    if dataset != "rafd":
        source = np.concatenate([c_org, np.zeros((n, len(expressions_of(config))))], axis=1)
        for name in config["attributes"]:
            out.append(encode(config, source, attributes.EditSpec(toggle=(name,))))
    source = np.zeros((n, len(config["attributes"]) + len(expressions_of(config))), np.float32)
    for name in expressions_of(config):
        out.append(encode(config, source, attributes.EditSpec(expression=name)))
    return out


# --- recovering the layout of an official checkpoint ----------------------------------------------


def _attrs_for(dataset: str, channels: int) -> int:
    """CelebA attributes a layout leaves for G's ``channels`` label inputs."""
    n_expr = len(RAFD_EXPRESSIONS)
    return {"celeba": channels, "rafd": 0, "both": channels - n_expr - 2}[dataset]


def _fits(dataset: str, channels: int, classes: int | None) -> bool:
    n_expr = len(RAFD_EXPRESSIONS)
    if dataset == "rafd":
        return channels == n_expr and classes in (None, n_expr)
    if dataset == "both":
        return channels - n_expr - 2 >= 1 and classes in (None, channels - 2)
    return channels >= 1 and classes in (None, channels)


def resolve_layout(
    channels: int, classes: int | None, dataset: str | None, n_attrs: int | None
) -> tuple[str, int]:
    """(dataset, CelebA attribute count) of an official G with ``channels`` label inputs and a D with
    ``classes`` outputs (None: no D), given what the user said; UsageError when it cannot be told."""
    d_text = (
        f" and its discriminator {classes} class outputs" if classes is not None else " (no discriminator)"
    )
    found = f"the generator has {channels} label channels{d_text}"
    if dataset is not None:
        if dataset not in DATASETS:
            raise UsageError(f"--dataset {dataset!r} is not one of {', '.join(DATASETS)}")
        if not _fits(dataset, channels, classes):
            raise UsageError(
                f"this is not a --dataset {dataset} StarGAN: {found}",
                "celeba: A channels (D: A); rafd: 8 (D: 8); both: A + 8 + 2 (D: A + 8)",
            )
        candidates = [dataset]
    else:
        candidates = [d for d in DATASETS if _fits(d, channels, classes)]
    if n_attrs is not None and "rafd" in candidates and len(candidates) == 1:
        raise UsageError("a RaFD-only StarGAN has no CelebA attributes", "drop --attrs")
    if n_attrs is not None and len(candidates) > 1:  # a single layout reports a wrong count itself
        fitting = [d for d in candidates if _attrs_for(d, channels) == n_attrs]
        candidates = fitting or candidates
    if not candidates:
        raise CheckpointError(
            f"not an official StarGAN label layout: {found}", "pass the matching -G/-D pair"
        )
    if len(candidates) > 1:
        raise UsageError(
            f"cannot tell whether this StarGAN was trained on {' or '.join(candidates)}: {found}",
            f"pass --dataset {'|'.join(candidates)}",
        )
    return candidates[0], _attrs_for(candidates[0], channels)
