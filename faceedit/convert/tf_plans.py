"""Official TensorFlow checkpoints -> our models: U-GAT-IT (taki0112), STGAN (csmliu), AttGAN v1 (LynnHo).

Plans (key maps, layouts, configuration) are made from the index alone, names and shapes, and checked
against the model they build before a single tensor is read; so a hub checkpoint is vetted before its
gigabyte is fetched. Facts: shared/reference/tf-import.md §3-4. The layout ops are ``tf_layout``;
U-GAT-IT's key rules live beside its model (``models.ugatit.tf_key_rules``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceedit.convert.tf_bundle import TensorEntry, looks_like_tf_checkpoint, open_checkpoint
from faceedit.convert.tf_layout import ImportPlan, Rule, _op_shape, convert
from faceedit.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    import torch

    from faceedit.models import FaceModel

log = logging.getLogger("faceedit")

ARCHS = ("ugatit", "stgan", "attgan")
UPSTREAM = {
    "ugatit": "taki0112/UGATIT",
    "stgan": "csmliu/STGAN@8a206ad",
    "attgan": "LynnHo/AttGAN-Tensorflow@4b00e6c",
}
UGATIT_SCOPES = {"A2B": "generator_B/", "B2A": "generator_A/"}  # generate_a2b builds scope generator_B
SLOT_SUFFIXES = ("/Adam", "/Adam_1")
# Written by the pre-2019-08-20 code next to CAM_logit/{kernel,bias}; never used for the image.
UGATIT_OLD_CAM = ("CAM_logit/dense/kernel", "CAM_logit/dense/bias")
DEFAULT_IMAGE_SIZE = 128  # STGAN/AttGAN: not visible in the weights; the released models are 128 px
_HINT = "the checkpoint is not the official model this importer expects"

is_tf_checkpoint = looks_like_tf_checkpoint


def detect_arch(entries: Mapping[str, TensorEntry]) -> str | None:
    """Which official model an index holds, from its variable scopes (None if none of ours)."""
    names = entries.keys()
    if any(n.startswith(tuple(UGATIT_SCOPES.values())) for n in names):
        return "ugatit"
    if any(n.startswith("Genc/") for n in names) and any(n.startswith("Gdec/") for n in names):
        return "stgan" if any(n.startswith("Gstu/") for n in names) else "attgan"
    return None


def is_slot(name: str) -> bool:
    """Adam's moment slots (``<var>/Adam``, ``<var>/Adam_1``), which sort right after their variable."""
    return name.endswith(SLOT_SUFFIXES)


def plan_import(
    arch: str, entries: Mapping[str, TensorEntry], *, direction: str = "A2B", smoothing: bool = True
) -> ImportPlan:
    """Key map and configuration for ``arch`` from the index, checked against the model it builds."""
    if arch not in ARCHS:
        raise UsageError(f"no TensorFlow importer for {arch!r}", f"choose one of {', '.join(ARCHS)}")
    found = detect_arch(entries)
    if found != arch:
        what = f"a {found} checkpoint" if found else "not a U-GAT-IT, STGAN or AttGAN checkpoint"
        raise CheckpointError(
            f"expected a TensorFlow {arch} checkpoint, found {what}",
            f"import it as {found}" if found else _HINT,
        )
    if arch == "ugatit":
        plan = plan_ugatit(entries, direction, smoothing)
    else:
        plan = plan_stgan(entries) if arch == "stgan" else plan_attgan(entries)
    check_plan(plan, entries)
    return plan


def _require(entries: Mapping[str, TensorEntry], names: list[str], what: str) -> None:
    missing = [n for n in names if n not in entries]
    if missing:
        raise CheckpointError(f"{what}: missing {_few(missing)}", _HINT)


def _few(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


# ------------------------------------------------------------------------------------------ U-GAT-IT


def _count(entries: Mapping[str, TensorEntry], pattern: str) -> int:
    """Number of consecutive indices i = 0, 1, ... for which ``pattern.format(i)`` is a tensor name."""
    i = 0
    while pattern.format(i) in entries:
        i += 1
    return i


def plan_ugatit(
    entries: Mapping[str, TensorEntry], direction: str = "A2B", smoothing: bool = True
) -> ImportPlan:
    """taki0112 generator (scope generator_B for A2B) -> ResnetGenerator with the TF flags (§3.2-3.4)."""
    if direction not in UGATIT_SCOPES:
        raise UsageError(f"direction must be A2B or B2A, got {direction!r}")
    s = UGATIT_SCOPES[direction]
    _require(
        entries,
        [f"{s}conv/conv2d/kernel", f"{s}MLP/linear_0/dense/kernel", f"{s}G_logit/conv2d/kernel"],
        f"U-GAT-IT {s[:-1]}",
    )
    first = entries[f"{s}conv/conv2d/kernel"].shape
    ch, dim = first[3], 4 * first[3]
    n_res = _count(entries, s + "resblock_{}/res1/conv_0/conv2d/kernel")
    n_ada = _count(entries, s + "adaptive_resblock{}/res1/conv_0/conv2d/kernel")
    if n_res != n_ada:
        raise CheckpointError(f"U-GAT-IT {s[:-1]} has {n_res} resblocks but {n_ada} adaptive ones", _HINT)
    rows = entries[f"{s}MLP/linear_0/dense/kernel"].shape[0]
    light = rows == dim
    side = math.isqrt(rows // dim) if rows % dim == 0 else 0
    if not light and side * side * dim != rows:
        raise CheckpointError(
            f"U-GAT-IT MLP/linear_0 has {rows} rows: not a square {dim}-channel bottleneck", _HINT
        )
    kwargs = {
        "input_nc": first[2], "output_nc": entries[f"{s}G_logit/conv2d/kernel"].shape[3], "ngf": ch,
        "n_blocks": n_res, "img_size": 256 if light else 4 * side, "light": light, "conv_bias": True,
        "in_affine": True, "unbiased_var": False, "cam_bias": True, "mlp_bias": True,
    }  # fmt: skip
    rules = _ugatit_rules(s, n_res, light)
    _note_extras(entries, s, {r.tf for r in rules})
    return ImportPlan("ugatit", kwargs, tuple(rules), None if light else (side, side, dim), smoothing)


def _ugatit_rules(s: str, n_res: int, light: bool) -> list[Rule]:
    from faceedit.models import ugatit

    return [Rule(key, tf, op) for key, tf, op in ugatit.tf_key_rules(s, n_res, light)]


def _note_extras(entries: Mapping[str, TensorEntry], scope: str | tuple[str, ...], used: set[str]) -> None:
    """Log generator tensors the import leaves out (harmless: TF's own restore ignores them too)."""
    extras = [n for n in entries if n.startswith(scope) and not is_slot(n) and n not in used]
    old_cam = [n for n in extras if n.split("/", 1)[-1] in UGATIT_OLD_CAM]
    if old_cam:
        log.info("ignoring %s (older U-GAT-IT code; not used for the image)", ", ".join(old_cam))
    others = [n for n in extras if n not in old_cam]
    if others:
        log.warning("checkpoint tensors not used by the import: %s", _few(others))


# --------------------------------------------------------------------------------------- STGAN, AttGAN


def _slim_scopes(entries: Mapping[str, TensorEntry], scope: str, base: str) -> list[str]:
    """slim's automatic layer scopes in creation order: ``Conv``, ``Conv_1``, ``Conv_2``... (with weights)."""
    found = []
    while True:
        name = f"{scope}{base}" + (f"_{len(found)}" if found else "")
        if f"{name}/weights" not in entries:
            return found
        found.append(name)


def _slim_layer(entries: Mapping[str, TensorEntry], tf: str, key: str) -> list[Rule]:
    """``weights`` (+ ``biases`` or ``BatchNorm/*``) of one slim layer -> ``key.0.*`` (+ ``key.1.*``)."""
    rules = [Rule(f"{key}.0.weight", f"{tf}/weights", "kernel")]
    if f"{tf}/biases" in entries:
        rules.append(Rule(f"{key}.0.bias", f"{tf}/biases", "copy"))
    if f"{tf}/BatchNorm/moving_mean" in entries:
        bn = (
            ("weight", "gamma"),
            ("bias", "beta"),
            ("running_mean", "moving_mean"),
            ("running_var", "moving_variance"),
        )
        rules += [Rule(f"{key}.1.{ours}", f"{tf}/BatchNorm/{theirs}", "copy") for ours, theirs in bn]
    return rules


def _enc_dec(entries: Mapping[str, TensorEntry]) -> tuple[list[str], list[str]]:
    enc = _slim_scopes(entries, "Genc/", "Conv")
    dec = _slim_scopes(entries, "Gdec/", "Conv2d_transpose")
    if not enc or len(dec) != len(enc):
        raise CheckpointError(
            f"{len(enc)} encoder and {len(dec)} decoder layers (Genc/Conv*, Gdec/Conv2d_transpose*)",
            "only the official layouts (one decoder layer per encoder layer) are supported",
        )
    return enc, dec


class _ShapeOnly:
    """Stands in for a tensor where only ``.shape`` is looked at (configuration recovery)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def _shape_state(plan: ImportPlan, entries: Mapping[str, TensorEntry]) -> dict[str, _ShapeOnly]:
    return {r.key: _ShapeOnly(_op_shape(r.op, entries[r.tf].shape, plan)) for r in plan.rules}


def plan_stgan(entries: Mapping[str, TensorEntry]) -> ImportPlan:
    """csmliu STGAN (Genc/Gstu/Gdec, slim scopes) -> stgan.Generator with the TF flags (§4.1, §4.3)."""
    from faceedit.models import stgan
    from faceedit.models.layers import KeyMapError

    enc, dec = _enc_dec(entries)
    ups = _slim_scopes(entries, "Gstu/", "Conv2d_transpose")
    gates = _slim_scopes(entries, "Gstu/", "Conv")
    if len(gates) != 3 * len(ups):
        raise CheckpointError(
            f"{len(ups)} STUs but {len(gates)} STU gate convolutions (expected 3 each)", _HINT
        )
    rules = [r for i, tf in enumerate(enc) for r in _slim_layer(entries, tf, f"encoder.{i}")]
    for j, tf in enumerate(ups):  # Conv2d_transpose (no suffix) is the deepest cell = stu.0
        rules.append(Rule(f"stu.{j}.upsample.weight", f"{tf}/weights", "kernel"))  # a bare ConvTranspose2d
        if f"{tf}/biases" in entries:
            rules.append(Rule(f"stu.{j}.upsample.bias", f"{tf}/biases", "copy"))
        for g, gate in enumerate(("reset_gate", "update_gate", "hidden")):
            rules += _slim_layer(entries, gates[3 * j + g], f"stu.{j}.{gate}")
    rules += [r for i, tf in enumerate(dec) for r in _slim_layer(entries, tf, f"decoder.{i}")]
    plan = ImportPlan("stgan", {}, tuple(rules))
    _require(entries, plan.names, "STGAN generator")
    try:
        kwargs = stgan.generator_kwargs(_shape_state(plan, entries))
    except (KeyMapError, KeyError) as e:
        raise CheckpointError(f"STGAN layout not understood: {e}", _HINT) from None
    kwargs["bn_eps"] = 1e-3  # slim's batch_norm default (the port uses PyTorch's 1e-5)
    _note_extras(entries, ("Genc/", "Gstu/", "Gdec/"), {r.tf for r in rules})
    return ImportPlan("stgan", kwargs, tuple(rules))


def plan_attgan(entries: Mapping[str, TensorEntry], image_size: int = DEFAULT_IMAGE_SIZE) -> ImportPlan:
    """LynnHo AttGAN v1 (Genc/Gdec, slim scopes) -> attgan.Generator with LReLU 0.2 and BN eps 1e-3 (§4.2)."""
    from faceedit.models import attgan
    from faceedit.models.layers import KeyMapError

    enc, dec = _enc_dec(entries)
    rules = [r for i, tf in enumerate(enc) for r in _slim_layer(entries, tf, f"enc_layers.{i}.layers")]
    rules += [r for i, tf in enumerate(dec) for r in _slim_layer(entries, tf, f"dec_layers.{i}.layers")]
    plan = ImportPlan("attgan", {}, tuple(rules))
    try:
        kwargs = attgan.generator_shapes(_shape_state(plan, entries))
    except (KeyMapError, KeyError) as e:
        raise CheckpointError(f"AttGAN layout not understood: {e}", _HINT) from None
    kwargs.update(enc_acti_fn="lrelu", dec_acti_fn="relu", img_size=image_size, lrelu_slope=0.2, bn_eps=1e-3)
    _note_extras(entries, ("Genc/", "Gstu/", "Gdec/"), {r.tf for r in rules})
    return ImportPlan("attgan", kwargs, tuple(rules))


# ----------------------------------------------------------------------------------- check, convert


def _generator_on_meta(plan: ImportPlan) -> torch.nn.Module:
    import torch

    from faceedit.models import generator_class

    try:
        with torch.device("meta"):
            return generator_class(plan.arch)(**plan.generator_kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the recovered {plan.arch} configuration does not build: {e}", _HINT) from None


def check_plan(plan: ImportPlan, entries: Mapping[str, TensorEntry]) -> None:
    """Every TF name present and every converted shape equal to the model's (no data read; meta device)."""
    _require(entries, plan.names, f"{plan.arch} generator")
    expected = {
        k: tuple(v.shape)
        for k, v in _generator_on_meta(plan).state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    problems = []
    for rule in plan.rules:
        got = _op_shape(rule.op, entries[rule.tf].shape, plan)
        if rule.key not in expected:
            problems.append(f"{rule.tf} has no place in the model ({rule.key})")
        elif got != expected[rule.key]:
            problems.append(
                f"{rule.tf} is {list(entries[rule.tf].shape)}, the model needs {list(expected[rule.key])}"
            )
    uncovered = sorted(set(expected) - {r.key for r in plan.rules})
    problems += [f"nothing fills {key}" for key in uncovered]
    non_float = sorted({r.tf for r in plan.rules if entries[r.tf].dtype != "float32"})
    problems += [f"{n} is {entries[n].dtype}, not float32" for n in non_float]
    if problems:
        raise CheckpointError(
            f"{plan.arch} checkpoint does not match: {'; '.join(problems[:4])}"
            + (f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""),
            _HINT,
        )


# ------------------------------------------------------------------------------------------ results


def _config(
    plan: ImportPlan,
    *,
    direction: str,
    attrs: list[str] | None,
    provenance: dict[str, Any],
    overrides: dict[str, Any],
) -> dict:
    from faceedit import attributes as vocab
    from faceedit import models

    kwargs = dict(plan.generator_kwargs)
    ctor = set(_ctor_params(plan.arch))
    for key in [k for k in overrides if k in ctor]:
        kwargs[key] = overrides.pop(key)
    conditioning = vocab.default_conditioning(plan.arch, "tf")
    if "thres_int" in overrides:
        conditioning["thres_int"] = float(overrides.pop("thres_int"))
    if plan.arch == "ugatit":
        image_size, template, resize, names = kwargs["img_size"], "selfie", "bilinear", []
    else:
        image_size, template, resize = DEFAULT_IMAGE_SIZE, "celeba-tf", "bicubic"
        names = _attribute_names(plan, kwargs, attrs)
    config = {"image_size": image_size, "template": template, "resize": resize}
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise UsageError(
            f"unknown import options: {', '.join(unknown)}",
            "use image_size, template, resize, thres_int or generator arguments",
        )
    config.update(overrides)
    if plan.arch == "attgan":
        kwargs["img_size"] = config["image_size"]
    return models.make_config(
        plan.arch,
        kwargs,
        attributes=names,
        conditioning=conditioning,
        variant="tf",
        direction=direction if plan.arch == "ugatit" else None,
        provenance=provenance,
        **config,
    )


def _ctor_params(arch: str) -> list[str]:
    import inspect

    from faceedit.models import generator_class

    return [p for p in inspect.signature(generator_class(arch).__init__).parameters if p != "self"]


def _attribute_names(plan: ImportPlan, kwargs: dict[str, Any], attrs: list[str] | None) -> list[str]:
    from faceedit import attributes as vocab

    count = kwargs["attr_dim" if plan.arch == "stgan" else "n_attrs"]
    if attrs is None:
        default = list(vocab.DEFAULT_ATTRIBUTES[(plan.arch, "tf")])
        if len(default) != count:
            raise UsageError(
                f"this {plan.arch} was trained on {count} attributes, not the default {len(default)}",
                "pass its attribute names in training order (--attrs)",
            )
        return default
    names = [vocab.resolve(a, vocab.CELEBA_ATTRIBUTES, "CelebA") for a in attrs]
    if len(names) != count:
        raise UsageError(
            f"{len(names)} attribute names given, the checkpoint was trained on {count}",
            "list every training attribute in training order",
        )
    return names


def build_model(
    plan: ImportPlan,
    tensors: dict[str, np.ndarray],
    *,
    direction: str = "A2B",
    attrs: list[str] | None = None,
    provenance: dict[str, Any] | None = None,
    **overrides: Any,
) -> FaceModel:
    """Converted tensors -> FaceModel (config variant "tf"), loaded strictly into the generator."""
    from faceedit import models

    config = _config(
        plan, direction=direction, attrs=attrs, provenance=provenance or {}, overrides=dict(overrides)
    )
    state = convert(plan, tensors)
    model = models.build(config, empty=True)
    models.load_weights(model.generator, state, f"TF {plan.arch} import")
    model.generator.eval()
    return model


def ugatit_tensor_names(entries: Mapping[str, TensorEntry], direction: str = "A2B") -> list[str]:
    """The generator's TF tensors for ``direction`` (Adam slots excluded), checked against the model."""
    return plan_import("ugatit", entries, direction=direction).names


def ugatit_from_tensors(
    entries: Mapping[str, TensorEntry],
    tensors: dict[str, np.ndarray],
    *,
    direction: str = "A2B",
    smoothing: bool = True,
    provenance: dict[str, Any] | None = None,
) -> FaceModel:
    """A U-GAT-IT FaceModel from already-read generator tensors (the remote fetch path)."""
    plan = plan_import("ugatit", entries, direction=direction, smoothing=smoothing)
    prov = {
        "upstream": UPSTREAM["ugatit"],
        "tf_scope": UGATIT_SCOPES[direction][:-1],
        "smoothing": smoothing,
        **(provenance or {}),
    }
    return build_model(plan, tensors, direction=direction, provenance=prov)


def import_tf_checkpoint(
    arch: str,
    path: Path | str,
    direction: str = "A2B",
    attrs: list[str] | None = None,
    smoothing: bool = True,
    **overrides: Any,
) -> FaceModel:
    """Official TF checkpoint (prefix, ``.index`` path or run folder) -> FaceModel.

    U-GAT-IT: ``direction`` A2B = generator_B (selfie -> anime); ``smoothing`` applies the released
    ``_smoothing`` models' rho shift. STGAN/AttGAN: ``attrs`` = training attribute names (default: the
    official 13). ``overrides``: ``image_size``, ``template``, ``resize``, ``thres_int`` or any generator
    constructor argument.
    """
    if arch == "attcls":  # the attribute classifier of STGAN's att_classification, not a generator
        from faceedit.classifier import import_tf

        return import_tf(path, **({"attrs": attrs} if attrs else {}), **overrides)
    ckpt = open_checkpoint(path)
    plan = plan_import(arch, ckpt.entries, direction=direction, smoothing=smoothing)
    tensors = ckpt.read_many(plan.names)
    provenance = {
        "source_file": str(ckpt.index_path),
        "source_sha256": ckpt.index.sha256,  # the index; every tensor it lists was crc32c-checked on read
        "data_files": [
            {"name": ckpt.data_path(i).name, "size": ckpt.data_path(i).stat().st_size}
            for i in range(ckpt.index.num_shards)
        ],
        "upstream": UPSTREAM[arch],
    }
    if arch == "ugatit":
        provenance.update(tf_scope=UGATIT_SCOPES[direction][:-1], smoothing=smoothing)
    return build_model(plan, tensors, direction=direction, attrs=attrs, provenance=provenance, **overrides)
