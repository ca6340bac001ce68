"""``faceedit models list | info | download | verify | import``."""

from __future__ import annotations

import typer

models_app = typer.Typer(
    help="List, inspect, download, verify and import model weights.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def register(app: typer.Typer) -> None:
    """Add the ``models`` group to the root app."""
    from faceedit.cli.models_import import import_command

    models_app.command("import")(import_command)
    app.add_typer(models_app, name="models")
