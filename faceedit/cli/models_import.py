"""``faceedit models import ARCH PATH --out DIR``: official checkpoints -> our model folder."""

from __future__ import annotations

from typing import Annotated

import typer


def import_command(
    arch: Annotated[str, typer.Argument(help="stargan, attgan, stgan or ugatit")],
    path: Annotated[str, typer.Argument(help="checkpoint file or run folder")],
) -> None:
    """Convert an official checkpoint into a faceedit model folder."""
    from faceedit.errors import UsageError

    raise UsageError("models import is being written")
