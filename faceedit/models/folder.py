"""Our model folder: ``config.json`` (schema v1) + ``model.safetensors``, and the four architectures by name.

``build`` makes fresh modules from a config, ``save``/``load`` write and read a folder (atomic write,
strict load, one-line :class:`CheckpointError` for anything wrong). Keys are prefixed ``generator.`` and
``classifier.`` in the safetensors file; ``config.json`` records its sha256, checked on every load.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from faceedit import __version__, console
from faceedit.errors import CheckpointError
from faceedit.fsutil import atomic_dir
from faceedit.models import attcls, attgan, checks, stargan, stgan, ugatit
from faceedit.models.layers import fill_batch_counters

ARCHS: dict[str, ModuleType] = {"stargan": stargan, "attgan": attgan, "stgan": stgan, "ugatit": ugatit}
ARCHS["attcls"] = attcls  # attribute classifier alone (eval): no generator, 40 CelebA outputs

FORMAT = "faceedit.model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_KEYS = (
    "format",
    "format_version",
    "arch",
    "variant",
    "generator_kwargs",
    "classifier_kwargs",
    "attributes",
    "image_size",
    "template",
    "resize",
    "conditioning",
    "provenance",
)
# Optional: the sha256 of model.safetensors, written by save() (folders of faceedit <= 0.1.0 lack it).
DIGEST_KEY = checks.DIGEST_KEY
VARIANTS = ("port", "tf")
TEMPLATES = ("celeba-178", "celeba-170", "celeba-tf", "selfie", "ffhq")
RESIZES = ("bilinear", "bicubic")
SCHEMES = ("stargan", "attgan", "stgan", "none")
RULES = ("port", "tf")
DIRECTIONS = ("A2B", "B2A")
# Which constructor argument holds the number of attributes (label channels, classifier outputs).
ATTR_COUNT_KWARG = {"stargan": "c_dim", "attgan": "n_attrs", "stgan": "attr_dim"}
CLASSIFIER_COUNT_KWARG = {"stargan": "c_dim", "attgan": "n_attrs", "stgan": "attr_dim", "attcls": "att_dim"}


@dataclass
class FaceModel:
    """A generator in eval mode, its config (= config.json) and the optional attribute classifier."""

    generator: nn.Module
    config: dict
    classifier: nn.Module | None = None

    @property
    def arch(self) -> str:
        return self.config["arch"]

    @property
    def attributes(self) -> list[str]:
        return list(self.config["attributes"])


def generator_class(arch: str) -> type[nn.Module]:
    """The generator class of ``arch`` (forward = the official generator's forward)."""
    return ARCHS[arch].Generator


def classifier_class(arch: str) -> type[nn.Module] | None:
    """The attribute classifier class of ``arch`` (None for U-GAT-IT)."""
    return getattr(ARCHS[arch], "Classifier", None)


def make_config(
    arch: str,
    generator_kwargs: dict,
    *,
    attributes: list[str],
    image_size: int,
    template: str,
    resize: str,
    conditioning: dict,
    classifier_kwargs: dict | None = None,
    variant: str = "port",
    direction: str | None = None,
    provenance: dict | None = None,
) -> dict:
    """A schema-v1 config in canonical key order, validated.

    The kwargs are completed with the constructors' defaults, so that a config never depends on them;
    ``provenance.created_by`` is filled in if missing.
    """
    if arch not in ARCHS:
        raise CheckpointError(f"unknown arch {arch!r} (known: {', '.join(ARCHS)})")
    generator_kwargs = _complete(generator_class(arch), generator_kwargs)
    if classifier_kwargs is not None and classifier_class(arch) is not None:
        classifier_kwargs = _complete(classifier_class(arch), classifier_kwargs)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "variant": variant,
        "generator_kwargs": dict(generator_kwargs),
        "classifier_kwargs": dict(classifier_kwargs) if classifier_kwargs is not None else None,
        "attributes": list(attributes),
        "image_size": int(image_size),
        "template": template,
        "resize": resize,
        "conditioning": dict(conditioning),
    }
    if arch == "ugatit":
        config["direction"] = direction or "A2B"
    config["provenance"] = dict(provenance or {})
    config["provenance"].setdefault("created_by", f"faceedit {__version__}")
    validate_config(config)
    return config


def _complete(cls: type, kwargs: dict) -> dict:
    """Constructor kwargs in signature order with every default spelled out (unknown names kept last)."""
    params = [p for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"]
    full = {
        p.name: kwargs.get(p.name, p.default) for p in params if p.name in kwargs or p.default is not p.empty
    }
    return {**full, **{k: v for k, v in kwargs.items() if k not in full}}


def validate_config(config: Any, source: str = CONFIG_FILE) -> None:
    """Raise one :class:`CheckpointError` listing every problem of a config dict (schema v1)."""
    problems = _config_problems(config)
    if problems:
        raise CheckpointError(
            f"{source} is not a valid faceedit model config: {'; '.join(problems)}",
            "re-create the folder with `faceedit models import` or a newer faceedit",
        )


def _config_problems(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return [f"expected a JSON object, found {type(config).__name__}"]
    if config.get("format") != FORMAT:
        return [f"format is {config.get('format')!r}, expected {FORMAT!r}"]
    if config.get("format_version") != FORMAT_VERSION:
        return [f"format_version is {config.get('format_version')!r}, this faceedit reads {FORMAT_VERSION}"]
    missing = [k for k in CONFIG_KEYS if k not in config]
    if config.get("arch") == "ugatit" and "direction" not in config:
        missing.append("direction")
    if missing:
        return [f"missing keys: {', '.join(missing)}"]
    arch = config["arch"]
    if arch not in ARCHS:
        return [f"unknown arch {arch!r} (known: {', '.join(ARCHS)})"]
    problems = _choice_problems(config) + _kwargs_problems(arch, config)
    return problems + _attribute_problems(arch, config)


def _choice_problems(config: dict) -> list[str]:
    problems = []
    for key, allowed in (("variant", VARIANTS), ("template", TEMPLATES), ("resize", RESIZES)):
        if config[key] not in allowed:
            problems.append(f"{key} {config[key]!r} is not one of {', '.join(allowed)}")
    problems += [
        p for p in (checks.image_size_problem(config["image_size"]), checks.digest_problem(config)) if p
    ]
    cond = config["conditioning"]
    if not isinstance(cond, dict) or cond.get("scheme") not in SCHEMES or cond.get("rules") not in RULES:
        problems.append(f"conditioning {cond!r} needs scheme in {SCHEMES} and rules in {RULES}")
    elif not _thres_ok(cond.get("thres_int")):
        problems.append(f"conditioning.thres_int {cond.get('thres_int')!r} must be a number in (0, 10]")
    if config["arch"] == "ugatit" and config.get("direction") not in DIRECTIONS:
        problems.append(f"direction {config.get('direction')!r} is not A2B or B2A")
    if not isinstance(config["provenance"], dict):
        problems.append("provenance must be an object")
    return problems


def _thres_ok(value: Any) -> bool:
    return type(value) in (int, float) and 0 < value <= 10  # NaN fails both comparisons


def _unknown_kwargs(cls: type, kwargs: Any, what: str) -> list[str]:
    if not isinstance(kwargs, dict):
        return [f"{what} must be an object"]
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in kwargs if k not in params or k == "self"]
    if unknown:
        return [f"{what} has unknown arguments {unknown} for {cls.__name__}"]
    return checks.kwargs_problems(cls, kwargs, what)


def _kwargs_problems(arch: str, config: dict) -> list[str]:
    problems = _unknown_kwargs(generator_class(arch), config["generator_kwargs"], "generator_kwargs")
    cls, ckw = classifier_class(arch), config["classifier_kwargs"]
    if ckw is not None:
        if cls is None:
            problems.append(f"{arch} has no attribute classifier but classifier_kwargs is set")
        else:
            problems += _unknown_kwargs(cls, ckw, "classifier_kwargs")
    return problems


def _attribute_problems(arch: str, config: dict) -> list[str]:
    attrs = config["attributes"]
    if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
        return ["attributes must be a list of names"]
    if len(set(attrs)) != len(attrs):
        return [f"attributes has duplicates: {attrs}"]
    if arch == "ugatit":
        return [] if not attrs else ["ugatit takes no attributes"]
    problems = []
    count = len(attrs)
    if arch in ATTR_COUNT_KWARG:  # attcls has no generator to feed
        count = _kwarg_default(generator_class(arch), config["generator_kwargs"], ATTR_COUNT_KWARG[arch])
    if count != len(attrs):
        problems.append(f"{len(attrs)} attributes listed but the generator takes {count}")
    ckw = config["classifier_kwargs"]
    if isinstance(ckw, dict) and classifier_class(arch) is not None:
        n_out = _kwarg_default(classifier_class(arch), ckw, CLASSIFIER_COUNT_KWARG[arch])
        if n_out != len(attrs):
            problems.append(f"the classifier predicts {n_out} attributes, attributes lists {len(attrs)}")
    return problems


def _kwarg_default(cls: type, kwargs: dict, name: str) -> Any:
    if isinstance(kwargs, dict) and name in kwargs:
        return kwargs[name]
    return inspect.signature(cls.__init__).parameters[name].default


# --------------------------------------------------------------------------------------------------
# build / save / load


def _construct(cls: type[nn.Module], kwargs: dict, what: str, empty: bool) -> nn.Module:
    try:
        if empty:  # parameters on the meta device: no random init, filled by load_state_dict(assign=True)
            with torch.device("meta"):
                return cls(**kwargs)
        return cls(**kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"cannot build the {what} from its config: {e}") from e


def build(config: dict, *, empty: bool = False) -> FaceModel:
    """Fresh modules (random init; ``empty=True``: on the meta device, for loading) in eval mode."""
    validate_config(config)
    arch = config["arch"]
    generator = _construct(generator_class(arch), config["generator_kwargs"], "generator", empty)
    classifier = None
    if config["classifier_kwargs"] is not None:
        classifier = _construct(classifier_class(arch), config["classifier_kwargs"], "classifier", empty)
    return FaceModel(generator.eval(), config, classifier.eval() if classifier is not None else None)


_unrecorded_warned: set[Path] = set()


def _read_verified(path: Path, expected: Any, verify: bool) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` once its sha256 matches ``expected`` (hashed first: a modified file is
    never parsed) and every weight is finite. No recorded sha256: said once, then read unchecked."""
    if verify and expected is not None and path.is_file():
        try:
            actual = checks.file_sha256(path)
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e.strerror or e}", "re-import the model") from e
        checks.check_digest(path, expected, actual)
    elif verify and expected is None and path.parent not in _unrecorded_warned:
        _unrecorded_warned.add(path.parent)  # a folder written before sha256s were recorded
        console.warn(
            f"{path.parent} records no sha256 of its weights (written by faceedit 0.1.0): used unchecked; "
            "re-import or re-export it to have it checked"
        )
    tensors = _read_tensors(path)
    checks.check_finite(
        tensors, str(path), "the weights are damaged: re-import, re-export or re-download them"
    )
    return tensors


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Strict ``load_state_dict`` whose failures are one-line :class:`CheckpointError` messages.

    Missing ``num_batches_tracked`` counters are tolerated (files from PyTorch 0.4.0 lack them).
    Works for modules built on the meta device (the tensors are then assigned, not copied).
    """
    expected = module.state_dict()
    state = fill_batch_counters(state, list(expected))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = [
            f"missing {_few(missing)}" if missing else "",
            f"unexpected {_few(unexpected)}" if unexpected else "",
        ]
        raise CheckpointError(
            f"{what} does not match the architecture: {'; '.join(p for p in parts if p)}",
            "the weights belong to another model or another configuration",
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{what}: {key} has shape {list(tensor.shape)} in the weights but the configuration builds "
                f"{list(expected[key].shape)}",
                "the weights were trained with other settings (sizes, attributes)",
            )
    meta = any(t.is_meta for t in expected.values())
    module.load_state_dict(state, strict=True, assign=meta)
    return module


def _few(keys: list[str], n: int = 3) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def state_tensors(model: FaceModel) -> dict[str, torch.Tensor]:
    """The flat, prefixed tensor dict written to model.safetensors (CPU, contiguous, no shared storage)."""
    tensors = {f"generator.{k}": v for k, v in model.generator.state_dict().items()}
    if model.classifier is not None:
        tensors.update({f"classifier.{k}": v for k, v in model.classifier.state_dict().items()})
    out, seen = {}, set()
    for key, value in tensors.items():
        value = value.detach().to("cpu").contiguous()
        storage = value.untyped_storage().data_ptr()
        # safetensors refuses tensors sharing memory (an importer may fill two keys with one tensor).
        out[key] = value.clone() if storage in seen else value
        seen.add(storage)
    return out


def save(model: FaceModel, folder: Path | str, overwrite: bool = False) -> Path:
    """Write ``folder`` = config.json + model.safetensors, atomically (never half-written).

    config.json records the weights' sha256 (``weights_sha256``); ``model.config`` gets it too, so it
    stays equal to the file. Non-finite weights are refused: such a model would paste flat squares.
    """
    from safetensors.torch import save_file

    validate_config(model.config)
    if (model.classifier is None) != (model.config["classifier_kwargs"] is None):
        raise ValueError("model.classifier and config['classifier_kwargs'] must be both set or both None")
    tensors = state_tensors(model)
    folder = Path(folder)
    checks.check_finite(
        tensors,
        f"cannot save {folder}",
        "the weights are broken (a diverged run?): export an earlier checkpoint",
    )
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "faceedit.arch": model.arch})
        config = {**model.config, DIGEST_KEY: checks.file_sha256(tmp / WEIGHTS_FILE)}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    model.config = config
    return folder


def read_config(folder: Path | str) -> dict:
    """Parse and validate ``folder/config.json``."""
    path = Path(folder) / CONFIG_FILE
    if not Path(folder).is_dir():
        raise CheckpointError(
            f"{folder} is not a model folder", "expected a folder with config.json and model.safetensors"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}", "not a faceedit model folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{path} is not readable JSON: {e}", "re-download or re-import the model"
        ) from e
    validate_config(config, str(path))
    return config


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path.parent} has no {WEIGHTS_FILE}", "re-download or re-import the model"
        ) from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} is corrupt or truncated: {e}", "re-download or re-import the model"
        ) from e


def load(folder: Path | str, device: str | torch.device = "cpu", verify: bool = True) -> FaceModel:
    """Read a model folder: validated config, strict weights, modules in eval mode on ``device``.

    The weights must match the sha256 config.json records (hashed before they are parsed) and be finite;
    ``verify=False`` skips the hash for a caller that has just checked the file itself (hub ledger).
    """
    folder = Path(folder)
    config = read_config(folder)
    tensors = _read_verified(folder / WEIGHTS_FILE, config.get(DIGEST_KEY), verify)
    parts: dict[str, dict[str, torch.Tensor]] = {"generator": {}, "classifier": {}}
    for key, value in tensors.items():
        head, _, rest = key.partition(".")
        if head not in parts:
            raise CheckpointError(f"{folder / WEIGHTS_FILE} has a key outside generator./classifier.: {key}")
        parts[head][rest] = value
    model = build(config, empty=True)
    where = folder / WEIGHTS_FILE
    load_weights(model.generator, parts["generator"], f"{where} (generator)")
    if model.classifier is not None:
        load_weights(model.classifier, parts["classifier"], f"{where} (classifier)")
    elif parts["classifier"]:
        raise CheckpointError(f"{where} holds classifier weights but config.json has no classifier_kwargs")
    model.generator.to(device).eval()
    if model.classifier is not None:
        model.classifier.to(device).eval()
    return model
