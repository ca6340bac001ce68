"""The ``faceedit`` command line: a thin Typer app. Commands parse, call one function, print.

Nothing heavy is imported here (no torch, no cv2): ``faceedit --help`` and ``faceedit models list``
stay instant. Every expected failure becomes one red line on stderr and the documented exit code.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from faceedit import __version__, console
from faceedit.errors import EXIT_BUG, EXIT_INTERRUPTED, FaceeditError


class _State:
    debug: bool = False


state = _State()


class FaceeditGroup(TyperGroup):
    """Root group: turns expected errors into one line + exit code; ``--debug`` re-raises them."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FaceeditError as e:
            if state.debug:
                raise
            console.error(e.message, e.hint)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            if state.debug:
                raise
            console.error("interrupted", "finished outputs were kept; nothing was half-written")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit, BrokenPipeError):
            raise
        except Exception as e:
            if state.debug or _is_usage_exception(e):
                raise
            console.error(f"unexpected {type(e).__name__}: {e}", _hint_for(e))
            raise typer.Exit(EXIT_BUG) from None


def _is_usage_exception(e: Exception) -> bool:
    # click/typer usage errors carry their own exit code 2 and formatting: let them through.
    return hasattr(e, "exit_code") and hasattr(e, "show")


def _hint_for(e: Exception) -> str:
    text = str(e).lower()
    if isinstance(e, MemoryError) or "out of memory" in text:
        return "use a smaller --batch-size, or --device cpu"
    return "this is a bug; run again with --debug for the traceback and report it"


app = typer.Typer(
    cls=FaceeditGroup,
    name="faceedit",
    help="Edit faces in photos with AttGAN, STGAN, StarGAN and U-GAT-IT; align faces; train the models.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        console.emit(f"faceedit {__version__}")
        raise typer.Exit()


_VERSION_HELP = "Show the version and exit."
_DEBUG_HELP = "Show tracebacks for expected errors too."


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_show_version, is_eager=True, help=_VERSION_HELP)
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", envvar="FACEEDIT_DEBUG", help=_DEBUG_HELP)] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs (-vv: debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
) -> None:
    """faceedit: find every face, align it the way the model was trained, edit, paste back."""
    state.debug = debug
    console.setup_logging(verbose, quiet)


def _register_commands() -> None:
    from faceedit.cli import edit, face, models, train
    from faceedit.cli import eval as eval_cli

    for module in (edit, face, models, train, eval_cli):
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point (``faceedit``)."""
    argv = sys.argv[1:]
    # `faceedit edit x.jpg --debug` is what people type; --debug is a root option, so move it up front.
    if "--debug" in argv[1:]:
        argv = ["--debug", *[a for a in argv if a != "--debug"]]
    try:
        app(args=argv, prog_name="faceedit")
    except BrokenPipeError:
        # `faceedit models list | head`: the reader went away; that is not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
