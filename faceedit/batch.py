"""Batch plumbing shared by every command: expand inputs, plan outputs, collect per-file outcomes.

Inputs are files, folders or globs (and ``-`` for a list of paths on stdin). A batch goes on past a
bad file; the report at the end decides the exit code (0 done or no face in some / 3 no face in any /
5 some failed). Output names never collide within a batch (see :meth:`OutputPlan.for_inputs`).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from faceedit import console
from faceedit.errors import (
    EXIT_NO_FACE,
    EXIT_OK,
    EXIT_PARTIAL,
    FaceeditError,
    NoFaceError,
    OutputError,
    UsageError,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
_GLOB_CHARS = set("*?[")
_FLAG_VALUES = frozenset({"true", "false", "yes", "no", "on", "off"})

Status = Literal["ok", "skipped", "failed", "no_face"]


@dataclass
class Item:
    """The outcome of one input file."""

    input: Path
    status: Status = "ok"
    outputs: list[Path] = field(default_factory=list)
    faces: int = 0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "input": str(self.input),
            "status": self.status,
            "outputs": [str(p) for p in self.outputs],
            "faces": self.faces,
        }
        if self.error:
            doc["error"] = self.error
        doc.update(self.details)
        return doc


@dataclass
class Report:
    """Every item of a batch, in input order; decides the exit code."""

    items: list[Item] = field(default_factory=list)

    def add(self, item: Item) -> Item:
        self.items.append(item)
        return item

    def fail(self, path: Path, exc: FaceeditError | Exception) -> Item:
        status: Status = "no_face" if isinstance(exc, NoFaceError) else "failed"
        message = str(exc) if isinstance(exc, FaceeditError) else f"{type(exc).__name__}: {exc}"
        return self.add(Item(input=path, status=status, error=message))

    def count(self, status: Status) -> int:
        return sum(item.status == status for item in self.items)

    @property
    def exit_code(self) -> int:
        """5 if any input failed; else 3 if no input had a face; else 0 (a photo without a face is no
        failure when others were edited: a folder of holiday photos has landscapes in it)."""
        if self.count("failed"):
            return EXIT_PARTIAL
        if self.items and self.count("no_face") == len(self.items):
            return EXIT_NO_FACE
        return EXIT_OK

    def print_problems(self) -> None:
        """List, after the run, every input that failed (errors) or had no face (warnings), in input order."""
        for item in self.items:
            if item.status == "failed":
                console.error(item.error or f"{item.input}: failed")
            elif item.status == "no_face":
                console.warn(item.error or f"no face found in {item.input}")

    def summary(self) -> str:
        parts = [f"{self.count('ok')} done"]
        for status, label in (("skipped", "skipped"), ("no_face", "without a face"), ("failed", "failed")):
            if n := self.count(status):
                parts.append(f"{n} {label}")
        return ", ".join(parts)


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    walker = folder.rglob("*") if recursive else folder.iterdir()
    found = [p for p in walker if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(p for p in found if not p.name.startswith("."))


def expand_inputs(
    inputs: Sequence[str], recursive: bool = False, stdin: Iterable[str] | None = None
) -> list[Path]:
    """Turn files, folders, globs and ``-`` into a de-duplicated list of paths, in the order given.

    A named file is kept whatever its extension (a non-image is reported later, per file); a missing
    path is kept too so that it shows up as a failure. Folders and globs contribute image files only.
    Raises :class:`UsageError` when nothing at all is found.
    """
    paths: list[Path] = []
    for raw in inputs:
        if raw == "-":
            source = stdin if stdin is not None else sys.stdin
            paths.extend(Path(line.strip()) for line in source if line.strip())
        elif Path(raw).is_dir():
            paths.extend(_images_in(Path(raw), recursive))
        elif _is_glob(raw) and not Path(raw).exists():
            matches = sorted(Path(m) for m in glob.glob(raw, recursive=True))
            paths.extend(p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif raw.lower() in _FLAG_VALUES and not Path(raw).exists():
            raise UsageError(
                f"input {raw!r} does not exist",
                f"flags such as --json or --overwrite take no value: drop the {raw!r} after the flag",
            )
        else:
            paths.append(Path(raw))
    unique = list(dict.fromkeys(paths))
    if not unique:
        shown = ", ".join(inputs) or "(none)"
        raise UsageError(
            f"no input images found in {shown}",
            f"give image files, folders or globs; extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}",
        )
    return unique


@dataclass(frozen=True)
class OutputPlan:
    """How output file names are made: ``{out_dir or input folder}/{stem}{suffix}{.ext}``.

    Bound to a batch with :meth:`for_inputs`, names never collide: when inputs of two folders would
    take one name in ``out_dir`` (``a/p.png``, ``b/p.png``), each input keeps its folder relative to
    the inputs' common folder; a name still taken (``p.jpg`` and ``p.png`` with ``--format png``) gets
    ``-2``, ``-3``... after the suffix.
    """

    out_dir: Path | None = None
    suffix: str = ""
    format: str = "auto"  # auto = keep the input's extension
    overwrite: bool = False
    skip_existing: bool = False
    targets: dict[Path, Path] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.overwrite and self.skip_existing:
            raise UsageError("--overwrite and --skip-existing exclude each other")
        fmt = self.format.lower().lstrip(".")
        if fmt not in {"auto", "png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"}:
            raise UsageError(
                f"unknown output format {self.format!r}", "use auto, png, jpg, webp, bmp or tiff"
            )
        if any(c in self.suffix for c in "/\\\0"):
            raise UsageError(
                f"--suffix {self.suffix!r} is not a plain file-name part",
                "use letters, digits, '_', '-' or '.' (choose the folder with -o)",
            )

    def for_inputs(self, paths: Sequence[Path]) -> OutputPlan:
        """This plan with a distinct output name reserved for every input of the batch, in order."""
        root = _common_folder(paths) if self.out_dir is not None and _clash(self, paths) else None
        taken: set[str] = set()
        targets: dict[Path, Path] = {}
        for path in paths:
            base = self.path_for(path)
            if root is not None and self.out_dir is not None:
                relative = Path(os.path.relpath(os.path.abspath(path.parent), root))
                base = self.out_dir / relative / base.name
            targets[path] = _unclaimed(base, taken)
        return dataclasses.replace(self, targets=targets)

    def path_for(self, source: Path, tag: str = "") -> Path:
        """The output path for ``source`` (``tag`` distinguishes several outputs of one input)."""
        if source in self.targets:
            reserved = self.targets[source]
            return reserved.with_name(f"{reserved.stem}{tag}{reserved.suffix}")
        fmt = self.format.lower().lstrip(".")
        ext = source.suffix if fmt == "auto" else f".{fmt}"
        if ext.lower() not in IMAGE_EXTENSIONS:
            ext = ".png"
        folder = self.out_dir if self.out_dir is not None else source.parent
        return folder / f"{source.stem}{self.suffix}{tag}{ext}"

    def check(self, target: Path, source: Path | None = None) -> bool:
        """True if ``target`` should be written, False if it is to be skipped; raises if it may not be."""
        # realpath, not Path.resolve: a symlink loop among the inputs must not raise here.
        if source is not None and os.path.realpath(target) == os.path.realpath(source):
            raise OutputError(f"output {target} would replace its input", "use -o DIR or --suffix")
        if target.is_dir():
            raise OutputError(
                f"output {target} exists as a folder", "move the folder away, or use another -o or --suffix"
            )
        if target.exists():
            if self.skip_existing:
                return False
            if not self.overwrite:
                raise OutputError(f"{target} already exists", "pass --overwrite or --skip-existing")
        return True


def _clash(plan: OutputPlan, paths: Sequence[Path]) -> bool:
    """Whether inputs from two folders would take the same name straight in ``out_dir`` (mirroring
    files given from unrelated folders, e.g. against ``/``, would only bury the outputs)."""
    folders: dict[str, set[str]] = {}
    for path in paths:
        name = os.path.normcase(plan.path_for(path).name)
        folders.setdefault(name, set()).add(os.path.abspath(path.parent))
    return any(len(where) > 1 for where in folders.values())


def _common_folder(paths: Sequence[Path]) -> str | None:
    folders = {os.path.abspath(p.parent) for p in paths}
    try:
        return os.path.commonpath(sorted(folders)) if folders else None
    except ValueError:  # Windows: folders on different drives
        return None


def _unclaimed(base: Path, taken: set[str]) -> Path:
    """``base``, or ``base`` with -2, -3... before the extension, whichever no earlier input took."""
    candidate, n = base, 1
    while os.path.normcase(os.path.abspath(candidate)) in taken:
        n += 1
        candidate = base.with_name(f"{base.stem}-{n}{base.suffix}")
    taken.add(os.path.normcase(os.path.abspath(candidate)))
    return candidate
