"""Which TensorFlow checkpoint a path or a hub folder means: the one prefix-discovery rule.

A TF checkpoint is a *prefix* ``P`` with ``P.index`` and ``P.data-NNNNN-of-NNNNN`` beside it; a run folder
names its newest prefix in a ``checkpoint`` text file, else holds a single ``.index``. Local paths
(:func:`resolve_prefix`, :func:`find_prefix`) and hub folders (``tf_remote``) both decide by
:func:`choose_prefix`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from faceedit.errors import CheckpointError

SHARD_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")
_STATE_LINE = re.compile(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"\s*$', re.MULTILINE)


def choose_prefix(where: str, state_text: str | None, index_names: Iterable[str]) -> str:
    """The prefix *name* in a folder: the one its ``checkpoint`` file (``state_text``) names, reduced to
    its last component (the author's absolute path is meaningless here), else the folder's only
    ``.index`` (``index_names``: file names). Raises CheckpointError naming ``where``."""
    if state_text is not None:
        named = parse_checkpoint_state(state_text)
        return PureWindowsPath(named).name if "\\" in named else PurePosixPath(named).name
    names = sorted(n.removesuffix(".index") for n in index_names if n.endswith(".index"))
    if len(names) == 1:
        return names[0]
    found = "no .index file" if not names else f"{len(names)} checkpoints ({', '.join(names[:4])})"
    raise CheckpointError(f"{where}: no 'checkpoint' file and {found}", "name the checkpoint prefix itself")


def parse_checkpoint_state(text: str) -> str:
    """``model_checkpoint_path`` of a TF ``checkpoint`` text file (CheckpointState): the newest prefix."""
    match = _STATE_LINE.search(text)
    if not match:
        raise CheckpointError(
            "the 'checkpoint' file names no model_checkpoint_path",
            "pass the checkpoint prefix or its .index file instead",
        )
    return _unescape_text_proto(match.group(1))


def _unescape_text_proto(text: str) -> str:
    # Text-format strings escape quotes, backslashes and non-ASCII bytes (octal); paths rarely need it.
    out = bytearray()
    pieces = re.split(r"(\\(?:[0-7]{1,3}|x[0-9a-fA-F]{1,2}|.))", text)
    for piece in pieces:
        if not piece.startswith("\\") or len(piece) < 2:
            out += piece.encode("utf-8")
        elif piece[1] in "01234567":
            out.append(int(piece[1:], 8) & 0xFF)
        elif piece[1] == "x":
            out.append(int(piece[2:], 16))
        else:
            out += {"n": b"\n", "t": b"\t", "r": b"\r"}.get(piece[1], piece[1].encode("utf-8"))
    return out.decode("utf-8", errors="replace")


def resolve_prefix(path: Path | str) -> Path:
    """Checkpoint prefix from a prefix, its ``.index``/``.data-*``/``.meta`` path, or a run folder."""
    p = Path(path)
    if p.is_dir():
        return _prefix_in_folder(p)
    name = SHARD_SUFFIX.sub("", p.name)
    for suffix in (".index", ".meta"):
        name = name.removesuffix(suffix)
    prefix = p.with_name(name)
    if not prefix.with_name(name + ".index").is_file():
        raise CheckpointError(
            f"{path}: no TensorFlow checkpoint here (missing {prefix.name}.index)",
            "pass the checkpoint prefix, its .index file, or the folder holding 'checkpoint'",
        )
    return prefix


def _prefix_in_folder(folder: Path) -> Path:
    state = folder / "checkpoint"
    text = state.read_text(encoding="utf-8", errors="replace") if state.is_file() else None
    prefix = folder / choose_prefix(str(folder), text, (p.name for p in folder.glob("*.index")))
    if not prefix.with_name(prefix.name + ".index").is_file():
        raise CheckpointError(
            f"{state} names {prefix.name}, but {prefix.name}.index is not in {folder}",
            "download the complete checkpoint folder",
        )
    return prefix


def find_prefix(path: Path | str) -> Path | None:
    """The prefix ``path`` designates, or None when it shows no sign of a TF checkpoint (a PyTorch file
    or run folder); a path that does look like one but is incomplete raises CheckpointError."""
    p = Path(path)
    if p.is_dir():
        looks = (p / "checkpoint").is_file() or any(p.glob("*.index"))
    else:
        looks = p.suffix == ".index" or bool(SHARD_SUFFIX.search(p.name))
        looks = looks or (not p.exists() and p.with_name(p.name + ".index").is_file())
    return resolve_prefix(p) if looks else None
