"""Official PyTorch checkpoints -> :class:`FaceModel`: safe loading, layout recognition, config recovery.

File I/O and configuration recovery live here; each architecture's key map is a pure function next
to its model in ``models/<arch>.py``. Nothing is written: ``faceedit models import`` saves the result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceedit import __version__, specs
from faceedit.convert.tf_prefix import find_prefix as tf_checkpoint_prefix
from faceedit.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from faceedit.models import FaceModel

log = logging.getLogger("faceedit")

ARCH_NAMES = ("stargan", "attgan", "stgan", "ugatit", "attcls")
OVERRIDES = ("attrs", "image_size", "direction", "discriminator", "dataset")
EXPECTED = {
    "stargan": "a StarGAN generator (<iter>-G.ckpt: a bare state dict with main.* keys)",
    "attgan": "an AttGAN checkpoint (weights.<epoch>.pth: a dict with 'G') or its run folder",
    "stgan": "an STGAN generator checkpoint (G_<iter>.pth.tar: {'state_dict', 'optimizer'})",
    "ugatit": "a U-GAT-IT checkpoint (<dataset>_params_<step>.pt: genA2B, genB2A, disGA, ...)",
    "attcls": "the TF attribute classifier of STGAN's att_classification (128.ckpt.index + .data-*)",
}
_ZIP_MAGIC = b"PK\x03\x04"


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
    return IMPORTERS[arch](path, overrides)


def import_tf_checkpoint(arch: str, prefix: Path, **overrides: Any) -> FaceModel:
    """TensorFlow checkpoint -> FaceModel with the TF-variant flags (see :mod:`faceedit.tfimport`)."""
    from faceedit import tfimport

    if overrides.pop("discriminator", None) is not None:
        raise UsageError(
            "--discriminator applies to PyTorch checkpoints only",
            "TF checkpoints are read for the generator alone; drop --discriminator",
        )
    return tfimport.import_tf_checkpoint(arch, prefix, **overrides)


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


# --------------------------------------------------------------------------------------------------
# Safe reading and recognising what a file holds


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_torch_file(path: Path) -> Any:
    """``torch.load(weights_only=True, map_location='cpu')`` (memory-mapped when the file allows it),
    with every failure turned into a one-line CheckpointError."""
    import torch

    if not path.is_file():
        raise UsageError(f"{path} is not a file", "pass the checkpoint file or the training run's folder")
    with path.open("rb") as f:
        head = f.read(64)
    if not head:
        raise CheckpointError(f"{path.name} is empty", "download or copy the checkpoint again")
    _reject_text(path, head)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(_ZIP_MAGIC))
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, KeyError, ...
        raise CheckpointError(f"{path.name}: {_explain_load_error(e)}", _load_hint(e)) from e


_OTHER_FORMATS = ((b"\x93NUMPY", "a NumPy .npy array"), (b"\x89HDF", "an HDF5 (Keras .h5) file"))


def _reject_text(path: Path, head: bytes) -> None:
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            raise CheckpointError(
                f"{path.name} is {what}, not a PyTorch checkpoint", "pass the .pth/.ckpt/.pt file"
            )
    if head[8:10] == b'{"':  # 8-byte little-endian header length, then JSON: safetensors
        raise CheckpointError(
            f"{path.name} is a safetensors file, not an official PyTorch checkpoint",
            "a faceedit model folder is used directly (--model local:DIR), not imported",
        )
    if head.startswith(_ZIP_MAGIC) or head[:1] == b"\x80":  # zip container / pickle protocol >= 2
        return
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return
    raise CheckpointError(
        f"{path.name} is a text file, not a PyTorch checkpoint", "pass the checkpoint file itself"
    )


def _explain_load_error(e: Exception) -> str:
    text = str(e)
    if "Weights only load failed" in text:
        return (
            "holds pickled Python objects that need their original code to load; faceedit reads only "
            "plain tensor checkpoints (torch.load weights_only=True)"
        )
    if "central directory" in text or isinstance(e, EOFError) or "unexpected EOF" in text:
        return "is truncated or corrupt (the file ends early)"
    first = text.strip().splitlines()[0][:160] if text.strip() else type(e).__name__
    return f"is not a readable PyTorch checkpoint ({type(e).__name__}: {first})"


def _load_hint(e: Exception) -> str:
    if "Weights only load failed" in str(e):
        return "with the original code, save model.state_dict() (plain tensors) and import that file"
    return "download or copy the checkpoint again"


def _is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def describe(obj: Any) -> tuple[str | None, str]:
    """(architecture or None, what the loaded object looks like) — for 'expected X, found Y' errors."""
    from faceedit.models.layers import strip_wrapper_prefixes

    if not isinstance(obj, Mapping):
        return None, f"a {type(obj).__name__}, not a dict of weights"
    keys = set(obj)
    if {"genA2B", "genB2A"} <= keys:
        return "ugatit", "a U-GAT-IT checkpoint (genA2B, genB2A, ...)"
    if "G" in keys and isinstance(obj["G"], Mapping):
        return "attgan", "an AttGAN checkpoint (a dict with 'G')"
    if "state_dict" in keys and isinstance(obj["state_dict"], Mapping):
        arch, what = describe(obj["state_dict"])
        return arch, f"{what} wrapped in {{'state_dict': ...}}"
    if not _is_tensor_dict(obj):
        return None, f"a dict with keys {sorted(map(str, keys))[:6]}"
    tops = {k.split(".", 1)[0] for k in strip_wrapper_prefixes(obj)}
    for arch, marks, what in _STATE_KINDS:
        if marks <= tops:
            return arch, what
    return None, f"a state dict with top-level keys {sorted(tops)[:6]}"


_STATE_KINDS = (
    ("stargan-D", {"main", "conv1", "conv2"}, "a StarGAN discriminator state dict (-D.ckpt)"),
    ("stargan", {"main"}, "a StarGAN generator state dict"),
    ("stargan", {"first_layer", "trunk"}, "a StarGAN generator state dict (hub layout)"),
    ("attgan", {"enc_layers", "dec_layers"}, "an AttGAN generator state dict"),
    ("attgan-D", {"conv", "fc_adv", "fc_cls"}, "an AttGAN discriminator state dict"),
    ("stgan", {"encoder", "decoder"}, "an STGAN generator state dict"),
    ("stgan-D", {"conv", "fc_adv", "fc_att"}, "an STGAN discriminator state dict (D_<iter>.pth.tar)"),
    ("ugatit", {"DownBlock", "UpBlock2"}, "a single U-GAT-IT generator state dict"),
    ("ugatit-D", {"model", "gap_fc", "conv"}, "a U-GAT-IT discriminator state dict"),
)


def _wrong_file(arch: str, path: Path, obj: Any) -> CheckpointError:
    found_arch, found = describe(obj)
    hint = f"pass {EXPECTED[arch]}"
    if found_arch and not found_arch.endswith("-D") and found_arch != arch:
        hint = f"this looks like {found_arch}: run `faceedit models import {found_arch} {path}`"
    elif found_arch and found_arch.endswith("-D"):
        hint = "pass the generator checkpoint; the discriminator beside it is picked up automatically"
    return CheckpointError(f"{path.name}: expected {EXPECTED[arch].split(' (')[0]}, found {found}", hint)


def _expect(arch: str, path: Path, obj: Any) -> None:
    """Refuse early, in words, a file that is recognisably something else (another model, a D)."""
    found_arch, _ = describe(obj)
    if found_arch is not None and found_arch != arch:
        raise _wrong_file(arch, path, obj)


def _latest(folder: Path, pattern: str, regex: str) -> Path | None:
    """The file in ``folder`` matching ``pattern`` with the largest integer captured by ``regex``."""
    found = [(int(m.group(1)), p) for p in folder.glob(pattern) if (m := re.fullmatch(regex, p.name))]
    return max(found)[1] if found else None


# --------------------------------------------------------------------------------------------------
# Building the result


def _attributes(arch: str, count: int, overrides: dict, from_files: list[str] | None = None) -> list[str]:

    if "attrs" in overrides:
        names = overrides["attrs"]
        if len(names) != count:
            raise UsageError(
                f"the checkpoint has {count} attributes but --attrs lists {len(names)}",
                "list the names in training order, comma-separated",
            )
        return names
    if from_files is not None and len(from_files) == count:
        return list(from_files)
    defaults = {
        "stargan": {5: specs.STARGAN_ATTRIBUTES},
        "attgan": {13: specs.ATTGAN_ATTRIBUTES},
        "stgan": {10: specs.STGAN_PORT_ATTRIBUTES, 13: specs.ATTGAN_ATTRIBUTES},
    }
    if count in defaults[arch]:
        return list(defaults[arch][count])
    raise UsageError(
        f"the checkpoint was trained with {count} attributes and their names are not stored in it",
        "pass --attrs with the names in training order, comma-separated",
    )


def _provenance(path: Path, upstream: str, extra: dict | None = None) -> dict:
    return {
        "source_file": path.name,
        "source_sha256": sha256_of(path),
        "upstream": upstream,
        "created_by": f"faceedit {__version__}",
        **(extra or {}),
    }


def _assemble(config: dict, g_state: dict, c_state: dict | None, source: Path) -> FaceModel:
    from faceedit import models
    from faceedit.models.layers import as_float32

    model = models.build(config, empty=True)
    models.load_weights(model.generator, as_float32(g_state), f"{source.name} (generator)")
    if model.classifier is not None:
        d_name = config["provenance"].get("classifier_source_file", source.name)
        models.load_weights(model.classifier, as_float32(c_state or {}), f"{d_name} (discriminator)")
    model.generator.eval()
    if model.classifier is not None:
        model.classifier.eval()
    return model


def _key_map(fn: Callable[..., dict], arch: str, path: Path, obj: Any, *args: Any) -> dict:
    from faceedit.models.layers import KeyMapError

    try:
        return fn(obj, *args)
    except KeyMapError as e:
        raise CheckpointError(f"{path.name}: {e}", f"pass {EXPECTED[arch]}") from e
    except (KeyError, AttributeError, TypeError) as e:
        raise _wrong_file(arch, path, obj) from e


def _discriminator(
    arch: str,
    explicit: Path | None,
    beside: Path | None,
    read: Callable[[Any], tuple[dict, dict]],
    n_attrs: int,
) -> tuple[dict | None, dict | None, dict]:
    """(classifier state, classifier kwargs, provenance) from a discriminator file.

    An ``explicit`` file (``discriminator=``) must be usable; one merely found ``beside`` the generator
    is skipped with a warning when it is not (the generator alone is still a complete model).
    """
    path = explicit or beside
    if path is None or (explicit is None and not path.is_file()):
        return None, None, {}
    try:
        obj = read_torch_file(path)
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            obj = obj["state_dict"]  # STGAN's D_<iter>.pth.tar and the hub copies' {"state_dict": D}
        state, kwargs = _key_map(read, arch, path, obj)
        count = kwargs.get(ATTR_KWARG[arch], n_attrs)
        if count != n_attrs:
            raise CheckpointError(f"{path.name} predicts {count} attributes, the generator takes {n_attrs}")
    except (CheckpointError, UsageError) as e:
        if explicit is not None:
            raise
        log.warning("no attribute classifier: ignoring %s (%s)", path.name, e.message)
        return None, None, {}
    return state, kwargs, {"classifier_source_file": path.name, "classifier_source_sha256": sha256_of(path)}


ATTR_KWARG = {"stargan": "c_dim", "attgan": "n_attrs", "stgan": "attr_dim"}


# --------------------------------------------------------------------------------------------------
# StarGAN


def _stargan_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    folder = path / "models" if (path / "models").is_dir() else path
    found = _latest(folder, "*-G.ckpt", r"(\d+)-G\.ckpt")
    if found is None:
        raise UsageError(f"no <iter>-G.ckpt in {folder}", "pass the generator checkpoint file")
    return found


def _stargan_d(channels: int) -> Callable[[Any], tuple[dict, dict]]:
    """Reader of a D for a G with ``channels`` label inputs: D predicts as many classes (CelebA or RaFD)
    or two fewer (CelebA + RaFD: G also takes the mask); anything else is another model's D."""

    def read(d_obj: Any) -> tuple[dict, dict]:
        from faceedit.models import stargan

        c_state = stargan.classifier_state(d_obj)
        kwargs = stargan.classifier_kwargs(c_state)
        kwargs["classes"] = classes = kwargs.pop("c_dim")  # split by the layout, see _stargan_layout
        fits = [channels] + ([channels - 2] if channels > 10 else [])
        if classes not in fits:
            raise CheckpointError(
                f"the discriminator predicts {classes} classes, the generator takes {channels} labels "
                f"(expected {' or '.join(map(str, fits))})"
            )
        return c_state, kwargs

    return read


def _stargan_layout(kwargs: dict, c_kwargs: dict | None, ov: dict) -> tuple[str, list[str]]:
    """Split G's label channels (and D's outputs) into CelebA attributes and RaFD expressions."""
    from faceedit import expressions

    channels = kwargs.pop("c_dim")
    classes = c_kwargs.pop("classes") if c_kwargs is not None else None
    n_attrs = len(ov["attrs"]) if "attrs" in ov else None
    dataset, count = expressions.resolve_layout(channels, classes, ov.get("dataset"), n_attrs)
    n_expr = 0 if dataset == "celeba" else len(expressions.RAFD_EXPRESSIONS)
    for target in (kwargs, c_kwargs) if c_kwargs is not None else (kwargs,):
        target.update(c_dim=count, c2_dim=n_expr)
    return dataset, _attributes("stargan", count, ov) if count else []


def _import_stargan(path: Path, ov: dict) -> FaceModel:
    from faceedit import expressions, models
    from faceedit.models import stargan

    path = _stargan_file(path)
    obj = read_torch_file(path)
    _expect("stargan", path, obj)
    wrapped = isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)
    raw = obj["state_dict"] if wrapped else obj
    if not _is_tensor_dict(raw):
        raise _wrong_file("stargan", path, obj)
    state = _key_map(stargan.generator_state, "stargan", path, raw)
    kwargs = _key_map(stargan.generator_kwargs, "stargan", path, state)
    beside = (
        path.with_name(path.name[: -len("-G.ckpt")] + "-D.ckpt") if path.name.endswith("-G.ckpt") else None
    )
    c_state, c_kwargs, extra = _discriminator(
        "stargan", ov.get("discriminator"), beside, _stargan_d(kwargs["c_dim"]), kwargs["c_dim"]
    )
    image_size = ov.get("image_size") or (c_kwargs["image_size"] if c_kwargs else 128)
    if c_kwargs is not None and image_size != c_kwargs["image_size"]:
        raise UsageError(
            f"--image-size {image_size} contradicts the discriminator, built for {c_kwargs['image_size']}"
        )
    extra["source_format"] = "hub {'state_dict'} wrapper" if wrapped else "bare state dict"
    dataset, attrs = _stargan_layout(kwargs, c_kwargs, ov)
    config = models.make_config(
        "stargan",
        kwargs,
        attributes=attrs,
        image_size=image_size,
        template="celeba-178",
        resize="bilinear",
        conditioning=expressions.conditioning_block(dataset),
        classifier_kwargs=c_kwargs,
        provenance=_provenance(path, stargan.UPSTREAM, extra),
    )
    return _assemble(config, state, c_state, path)


# --------------------------------------------------------------------------------------------------
# AttGAN

# setting.txt name -> generator argument
_ATTGAN_SETTING = {
    "enc_dim": "enc_dim", "enc_layers": "enc_layers", "enc_norm": "enc_norm_fn", "enc_acti": "enc_acti_fn",
    "dec_dim": "dec_dim", "dec_layers": "dec_layers", "dec_norm": "dec_norm_fn", "dec_acti": "dec_acti_fn",
    "n_attrs": "n_attrs", "shortcut_layers": "shortcut_layers", "inject_layers": "inject_layers",
    "img_size": "img_size",
}  # fmt: skip
# setting.txt name -> discriminator (classifier) argument
_ATTGAN_D_SETTING = {
    "dis_dim": "dim", "dis_norm": "norm_fn", "dis_acti": "acti_fn", "dis_fc_dim": "fc_dim",
    "dis_fc_norm": "fc_norm_fn", "dis_fc_acti": "fc_acti_fn", "dis_layers": "n_layers",
}  # fmt: skip


def _attgan_files(path: Path) -> tuple[Path, Path | None]:
    """(weights file, setting.txt or None) for a run folder, its checkpoint/ folder, or a .pth."""
    if path.is_dir():
        ckpt_dir = path / "checkpoint" if (path / "checkpoint").is_dir() else path
        found = _latest(ckpt_dir, "weights.*.pth", r"weights\.(\d+)\.pth")
        if found is None:
            raise UsageError(
                f"no checkpoint/weights.<epoch>.pth in {path}", "pass the run folder or a .pth file"
            )
        path = found
    for candidate in (path.parent / "setting.txt", path.parent.parent / "setting.txt"):
        if candidate.is_file():
            return path, candidate
    return path, None


def _read_setting(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        setting = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{path} is not the JSON written by AttGAN's train.py: {e}",
            "fix or remove setting.txt (sizes are then read from the weights)",
        ) from e
    if not isinstance(setting, dict):
        raise CheckpointError(f"{path} is not the JSON object written by AttGAN's train.py")
    return setting


def _attgan_d(setting: dict) -> Callable[[Any], tuple[dict, dict]]:
    def read(d_obj: Any) -> tuple[dict, dict]:
        from faceedit.models import attgan

        d_state = d_obj["D"] if isinstance(d_obj.get("D"), Mapping) else d_obj  # {'G','D',...} or bare D
        c_state = attgan.classifier_state(d_state)
        c_kwargs = attgan.classifier_shapes(c_state)
        c_kwargs.update({arg: setting[key] for key, arg in _ATTGAN_D_SETTING.items() if key in setting})
        return c_state, c_kwargs

    return read


def _import_attgan(path: Path, ov: dict) -> FaceModel:
    from faceedit import models
    from faceedit.models import attgan

    path, setting_path = _attgan_files(path)
    setting = _read_setting(setting_path)
    obj = read_torch_file(path)
    _expect("attgan", path, obj)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("G"), Mapping):
        raise _wrong_file("attgan", path, obj)
    state = _key_map(attgan.generator_state, "attgan", path, obj["G"])
    kwargs = _key_map(attgan.generator_shapes, "attgan", path, state)
    kwargs.update({arg: setting[key] for key, arg in _ATTGAN_SETTING.items() if key in setting})
    # The generator only uses img_size for its label tile, which we size from the features anyway.
    kwargs["img_size"] = ov.get("image_size") or kwargs.get("img_size", 128)
    attrs = _attributes("attgan", kwargs["n_attrs"], ov, setting.get("attrs"))
    # The optional save() format {'G', 'D', 'optim_G', 'optim_D'} carries D in the same file.
    beside = path if isinstance(obj.get("D"), Mapping) else None
    c_state, c_kwargs, extra = _discriminator(
        "attgan", ov.get("discriminator"), beside, _attgan_d(setting), len(attrs)
    )
    if c_kwargs is not None:
        c_kwargs["img_size"] = kwargs["img_size"]
    hq = str(setting.get("data", "")).lower() == "celeba-hq"
    if hq:  # CelebA-HQ models saw whole aligned CelebA-HQ faces; ffhq is the closest crop we have.
        log.warning("CelebA-HQ model: using the ffhq crop template (closest to CelebA-HQ's alignment)")
    extra["setting_file"] = setting_path.name if setting_path else None
    config = models.make_config(
        "attgan",
        kwargs,
        attributes=attrs,
        image_size=kwargs["img_size"],
        template="ffhq" if hq else "celeba-170",
        resize="bilinear",
        classifier_kwargs=c_kwargs,
        conditioning={"scheme": "attgan", "thres_int": float(setting.get("thres_int", 0.5)), "rules": "port"},
        provenance=_provenance(path, attgan.UPSTREAM, extra),
    )
    return _assemble(config, state, c_state, path)


# --------------------------------------------------------------------------------------------------
# STGAN


def _stgan_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = _latest(folder, "G_*.pth.tar", r"G_(\d+)\.pth\.tar")
    if found is None:
        raise UsageError(f"no G_<iter>.pth.tar in {folder}", "pass the run folder or a G_<iter>.pth.tar file")
    return found


def _stgan_d(d_obj: Any) -> tuple[dict, dict]:
    from faceedit.models import stgan

    c_state = stgan.classifier_state(d_obj)
    return c_state, stgan.classifier_kwargs(c_state)


def _import_stgan(path: Path, ov: dict) -> FaceModel:
    from faceedit import models
    from faceedit.models import stgan

    path = _stgan_file(path)
    obj = read_torch_file(path)
    _expect("stgan", path, obj)
    raw = obj.get("state_dict") if isinstance(obj, Mapping) and "state_dict" in obj else obj
    if not _is_tensor_dict(raw):
        raise _wrong_file("stgan", path, obj)
    state = _key_map(stgan.generator_state, "stgan", path, raw)
    kwargs = _key_map(stgan.generator_kwargs, "stgan", path, state)
    match = re.fullmatch(r"G_(\d+)\.pth\.tar", path.name)
    beside = path.with_name(f"D_{match.group(1)}.pth.tar") if match else None
    c_state, c_kwargs, extra = _discriminator(
        "stgan", ov.get("discriminator"), beside, _stgan_d, kwargs["attr_dim"]
    )
    image_size = ov.get("image_size") or (c_kwargs["image_size"] if c_kwargs else 128)
    if c_kwargs is not None and image_size != c_kwargs["image_size"]:
        raise UsageError(
            f"--image-size {image_size} contradicts the discriminator, built for {c_kwargs['image_size']}"
        )
    config = models.make_config(
        "stgan",
        kwargs,
        attributes=_attributes("stgan", kwargs["attr_dim"], ov),
        image_size=image_size,
        template="celeba-178",
        resize="bilinear",
        conditioning={"scheme": "stgan", "thres_int": 0.5, "rules": "port"},
        classifier_kwargs=c_kwargs,
        provenance=_provenance(path, stgan.UPSTREAM, extra),
    )
    return _assemble(config, state, c_state, path)


# --------------------------------------------------------------------------------------------------
# U-GAT-IT


def _ugatit_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    folder = path / "model" if (path / "model").is_dir() else path
    found = sorted(folder.glob("*.pt"))  # the official test() sorts the names and takes the last
    if not found:
        raise UsageError(f"no *_params_*.pt in {folder}", "pass results/<dataset>/model or a .pt file")
    return found[-1]


def _import_ugatit(path: Path, ov: dict) -> FaceModel:
    from faceedit import models
    from faceedit.models import ugatit

    path = _ugatit_file(path)
    obj = read_torch_file(path)
    _expect("ugatit", path, obj)
    direction = ov.get("direction", "A2B")
    if not isinstance(obj, Mapping) or f"gen{direction}" not in obj:
        raise _wrong_file("ugatit", path, obj)
    state = _key_map(ugatit.generator_state, "ugatit", path, obj, direction)
    kwargs = _key_map(ugatit.generator_kwargs, "ugatit", path, state)
    if ov.get("image_size"):
        if not kwargs["light"] and ov["image_size"] != kwargs["img_size"]:
            raise UsageError(
                f"this full U-GAT-IT model only runs at {kwargs['img_size']} px",
                "drop --image-size (only light models run at other sizes)",
            )
        kwargs["img_size"] = ov["image_size"]
    config = models.make_config(
        "ugatit",
        kwargs,
        attributes=[],
        image_size=kwargs["img_size"],
        template="selfie",
        resize="bilinear",
        conditioning={"scheme": "none", "thres_int": 0.5, "rules": "port"},
        direction=direction,
        provenance=_provenance(path, ugatit.UPSTREAM, {"generator": f"gen{direction}"}),
    )
    return _assemble(config, state, None, path)


IMPORTERS: dict[str, Callable[[Path, dict], FaceModel]] = {
    "stargan": _import_stargan,
    "attgan": _import_attgan,
    "stgan": _import_stgan,
    "ugatit": _import_ugatit,
}
