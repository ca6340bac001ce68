"""Batch plumbing shared by every command: expand inputs, plan outputs, collect per-file outcomes.

Inputs are files, folders or globs (and ``-`` for a list of paths on stdin). A batch goes on past a
bad file; the report at the end decides the exit code (0 / 3 no face anywhere / 5 some failed).
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
        failed, no_face = self.count("failed"), self.count("no_face")
        if failed == 0 and no_face == 0:
            return EXIT_OK
        if failed == 0 and self.count("ok") == 0:
            return EXIT_NO_FACE
        return EXIT_PARTIAL

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
    """How output file names are made: ``{out_dir or input folder}/{stem}{suffix}{.ext}``."""

    out_dir: Path | None = None
    suffix: str = ""
    format: str = "auto"  # auto = keep the input's extension
    overwrite: bool = False
    skip_existing: bool = False

    def __post_init__(self) -> None:
        if self.overwrite and self.skip_existing:
            raise UsageError("--overwrite and --skip-existing exclude each other")
        fmt = self.format.lower().lstrip(".")
        if fmt not in {"auto", "png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"}:
            raise UsageError(
                f"unknown output format {self.format!r}", "use auto, png, jpg, webp, bmp or tiff"
            )

    def path_for(self, source: Path, tag: str = "") -> Path:
        """The output path for ``source`` (``tag`` distinguishes several outputs of one input)."""
        fmt = self.format.lower().lstrip(".")
        ext = source.suffix if fmt == "auto" else f".{fmt}"
        if ext.lower() not in IMAGE_EXTENSIONS:
            ext = ".png"
        folder = self.out_dir if self.out_dir is not None else source.parent
        return folder / f"{source.stem}{self.suffix}{tag}{ext}"

    def check(self, target: Path, source: Path | None = None) -> bool:
        """True if ``target`` should be written, False if it is to be skipped; raises if it may not be."""
        if source is not None and target.resolve() == source.resolve():
            raise OutputError(f"output {target} would replace its input", "use -o DIR or --suffix")
        if target.exists():
            if self.skip_existing:
                return False
            if not self.overwrite:
                raise OutputError(f"{target} already exists", "pass --overwrite or --skip-existing")
        return True
