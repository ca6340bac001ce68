"""Official PyTorch checkpoint files: safe reading (``torch.load(weights_only=True)``), recognising what a
loaded object holds (for "expected X, found Y" errors), and each code base's run-folder layout (which file
of a training run is the newest generator, where AttGAN's ``setting.txt`` sits).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faceedit.errors import CheckpointError, UsageError

EXPECTED = {
    "stargan": "a StarGAN generator (<iter>-G.ckpt: a bare state dict with main.* keys)",
    "attgan": "an AttGAN checkpoint (weights.<epoch>.pth: a dict with 'G') or its run folder",
    "stgan": "an STGAN generator checkpoint (G_<iter>.pth.tar: {'state_dict', 'optimizer'})",
    "ugatit": "a U-GAT-IT checkpoint (<dataset>_params_<step>.pt: genA2B, genB2A, disGA, ...)",
    "attcls": "the TF attribute classifier of STGAN's att_classification (128.ckpt.index + .data-*)",
}
_ZIP_MAGIC = b"PK\x03\x04"
_OTHER_FORMATS = ((b"\x93NUMPY", "a NumPy .npy array"), (b"\x89HDF", "an HDF5 (Keras .h5) file"))

# --------------------------------------------------------------------------------------------------
# Safe reading


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
        with warnings.catch_warnings():  # torch warns about raw pickles' protocol; our error says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(_ZIP_MAGIC))
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, KeyError, ...
        raise CheckpointError(f"{path.name}: {_explain_load_error(e)}", _load_hint(e)) from e


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


# --------------------------------------------------------------------------------------------------
# Recognising what a loaded object holds


def is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def wrapped_state(obj: Any) -> Mapping | None:
    """``obj["state_dict"]`` when ``obj`` wraps one (STGAN's .pth.tar, the hub copies), else None."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        return obj["state_dict"]
    return None


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
    if (inner := wrapped_state(obj)) is not None:
        arch, what = describe(inner)
        return arch, f"{what} wrapped in {{'state_dict': ...}}"
    if not is_tensor_dict(obj):
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


def wrong_file(arch: str, path: Path, obj: Any) -> CheckpointError:
    """The one-line error for a file that is not ``arch``'s checkpoint, naming what it looks like."""
    found_arch, found = describe(obj)
    hint = f"pass {EXPECTED[arch]}"
    if found_arch and not found_arch.endswith("-D") and found_arch != arch:
        hint = f"this looks like {found_arch}: run `faceedit models import {found_arch} {path}`"
    elif found_arch and found_arch.endswith("-D"):
        hint = "pass the generator checkpoint; the discriminator beside it is picked up automatically"
    return CheckpointError(f"{path.name}: expected {EXPECTED[arch].split(' (')[0]}, found {found}", hint)


def expect(arch: str, path: Path, obj: Any) -> None:
    """Refuse early, in words, a file that is recognisably something else (another model, a D)."""
    found_arch, _ = describe(obj)
    if found_arch is not None and found_arch != arch:
        raise wrong_file(arch, path, obj)


# --------------------------------------------------------------------------------------------------
# Run-folder layouts of the official code bases


def latest(folder: Path, pattern: str, regex: str) -> Path | None:
    """The file in ``folder`` matching ``pattern`` with the largest integer captured by ``regex``."""
    found = [(int(m.group(1)), p) for p in folder.glob(pattern) if (m := re.fullmatch(regex, p.name))]
    return max(found)[1] if found else None


def _newest(path: Path, sub: str, pattern: str, regex: str, what: str, hint: str) -> Path:
    """``path`` itself when a file, else the newest ``pattern`` file in ``path/sub`` (or ``path``)."""
    if not path.is_dir():
        return path
    folder = path / sub if (path / sub).is_dir() else path
    found = latest(folder, pattern, regex)
    if found is None:
        raise UsageError(f"no {what} in {folder}", hint)
    return found


def stargan_file(path: Path) -> Path:
    """yunjey/stargan: ``<run>/models/<iter>-G.ckpt``."""
    return _newest(
        path, "models", "*-G.ckpt", r"(\d+)-G\.ckpt", "<iter>-G.ckpt", "pass the generator checkpoint file"
    )


def stargan_d_beside(path: Path) -> Path | None:
    """``<iter>-D.ckpt`` beside ``<iter>-G.ckpt``."""
    return (
        path.with_name(path.name.removesuffix("-G.ckpt") + "-D.ckpt")
        if path.name.endswith("-G.ckpt")
        else None
    )


def stgan_file(path: Path) -> Path:
    """bluestyle97/STGAN-pytorch: ``<run>/checkpoints/G_<iter>.pth.tar``."""
    hint = "pass the run folder or a G_<iter>.pth.tar file"
    return _newest(path, "checkpoints", "G_*.pth.tar", r"G_(\d+)\.pth\.tar", "G_<iter>.pth.tar", hint)


def stgan_d_beside(path: Path) -> Path | None:
    """``D_<iter>.pth.tar`` beside ``G_<iter>.pth.tar``."""
    match = re.fullmatch(r"G_(\d+)\.pth\.tar", path.name)
    return path.with_name(f"D_{match.group(1)}.pth.tar") if match else None


def attgan_files(path: Path) -> tuple[Path, Path | None]:
    """elvisyjlin/AttGAN-PyTorch: (weights file, setting.txt or None) for a run folder, its checkpoint/
    folder, or a .pth."""
    if path.is_dir():
        ckpt_dir = path / "checkpoint" if (path / "checkpoint").is_dir() else path
        found = latest(ckpt_dir, "weights.*.pth", r"weights\.(\d+)\.pth")
        if found is None:
            raise UsageError(
                f"no checkpoint/weights.<epoch>.pth in {path}", "pass the run folder or a .pth file"
            )
        path = found
    for candidate in (path.parent / "setting.txt", path.parent.parent / "setting.txt"):
        if candidate.is_file():
            return path, candidate
    return path, None


def read_setting(path: Path | None) -> dict:
    """AttGAN's ``setting.txt`` (the JSON of its train.py arguments); {} when there is none."""
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


def ugatit_file(path: Path) -> Path:
    """znxlwm/UGATIT-pytorch: ``results/<dataset>/model/<dataset>_params_<step>.pt``; like the official
    test(), the last name in sorted order."""
    if not path.is_dir():
        return path
    folder = path / "model" if (path / "model").is_dir() else path
    found = sorted(folder.glob("*.pt"))
    if not found:
        raise UsageError(f"no *_params_*.pt in {folder}", "pass results/<dataset>/model or a .pt file")
    return found[-1]
