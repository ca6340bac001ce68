"""Where output goes: results on stdout, progress/logs/errors on stderr (rich), JSON as plain text.

Machine-readable output never passes through a rich Console, which would wrap long lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True, highlight=False, soft_wrap=True)
log = logging.getLogger("faceedit")

_quiet = False
_said: set[str] = set()
_said_lock = threading.Lock()


def setup_logging(verbosity: int = 0, quiet: bool = False) -> None:
    """``-v`` info, ``-vv`` debug (also library loggers), ``-q`` errors only."""
    global _quiet
    _quiet = quiet
    with _said_lock:
        _said.clear()  # a new command run: its "once per run" warnings are due again
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    handler = RichHandler(console=err, show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True, format="%(message)s")
    log.setLevel(level)
    if verbosity < 2:
        # Keep library chatter ("Retrying in 1s [Retry 1/5]") out of the UI.
        for name in ("huggingface_hub", "httpx", "httpx2", "urllib3", "numba", "PIL"):
            logging.getLogger(name).setLevel(logging.ERROR)


def is_quiet() -> bool:
    return _quiet


def info(message: str) -> None:
    """A status line on stderr (suppressed by ``-q``)."""
    if not _quiet:
        err.print(message, markup=False)


def warn(message: str) -> None:
    if not _quiet:
        err.print(f"[yellow]warning:[/yellow] {message}")


def warn_once(key: str, message: str) -> None:
    """A warning shown once per run (:func:`setup_logging` starts one) and ``key``; thread-safe."""
    with _said_lock:
        if key in _said:
            return
        _said.add(key)
    warn(message)


def error(message: str, hint: str | None = None) -> None:
    """One red line on stderr; the hint (what to do) on the same line."""
    text = f"[bold red]error:[/bold red] {_escape(message)}"
    if hint:
        text += f" [dim]— {_escape(hint)}[/dim]"
    err.print(text)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def emit_json(document: Any) -> None:
    """Write one JSON document to stdout (never through rich)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def emit(line: str) -> None:
    """Write one result line (a path, a name) to stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def progress_enabled(json_mode: bool = False) -> bool:
    return not (json_mode or _quiet or os.environ.get("FACEEDIT_NO_PROGRESS") == "1") and err.is_terminal


@contextlib.contextmanager
def progress(total: int | None, description: str, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A transient progress bar on stderr; yields ``advance(n=1, description=None)``."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True, disable=not enabled) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: float = 1, description: str | None = None) -> None:
            if description is not None:
                bar.update(task, description=description)
            bar.advance(task, n)

        yield advance
