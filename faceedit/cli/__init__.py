"""The ``faceedit`` command line: a thin Typer app. Commands parse, call one function, print.

Nothing heavy is imported here (no torch, no cv2): ``faceedit --help`` and ``faceedit models list``
stay instant. Every expected failure becomes one red line on stderr and the documented exit code.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from faceedit import __version__, console
from faceedit.errors import EXIT_BUG, EXIT_INTERRUPTED, FaceeditError


class _State:
    debug: bool = False


state = _State()


class FaceeditGroup(TyperGroup):
    """Root group: expected errors become one line + their exit code (``--debug`` adds the traceback
    and keeps the code); global options are accepted after the sub-command too; flags show no value."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _plain_flags(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_command_flags(command, ctx)
        return command

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FaceeditError as e:
            _fail(e.message, e.hint, e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", "finished outputs were kept; nothing was half-written", EXIT_INTERRUPTED)
        except (typer.Exit, typer.Abort, SystemExit, BrokenPipeError):
            raise
        except Exception as e:
            if _is_usage_exception(e):
                raise
            _fail(f"unexpected {type(e).__name__}: {e}", _hint_for(e), EXIT_BUG)


def _fail(message: str, hint: str | None, code: int) -> NoReturn:
    """One red line (after the traceback with --debug) and the documented exit code, debug or not."""
    if state.debug:
        traceback.print_exc()
    console.error(message, hint)
    raise typer.Exit(code) from None


_GLOBAL_FLAGS = frozenset({"--debug", "--quiet", "-q", "--verbose"})


def hoist_global_options(args: list[str]) -> list[str]:
    """Move ``--debug``, ``-q``, ``-v``/``-vv``... given after the sub-command in front of it
    (``faceedit edit x.jpg -q`` is what people type); nothing after ``--`` moves."""
    first = next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))
    front, rest, moved = list(args[: first + 1]), [], []
    for i, arg in enumerate(args[first + 1 :], start=first + 1):
        if arg == "--":
            rest.extend(args[i:])
            break
        is_global = arg in _GLOBAL_FLAGS or (len(arg) > 1 and arg[0] == "-" and set(arg[1:]) == {"v"})
        (moved if is_global else rest).append(arg)
    return moved + front + rest


def _plain_flags(params: list[Any]) -> None:
    # Typer shows <bool> for flags, which reads as "takes a value" (and then `--json true` takes
    # `true` as an input path): a flag shows no value at all.
    for param in params:
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""


def _plain_command_flags(command: Any, ctx: Any) -> None:
    _plain_flags(command.get_params(ctx))
    for sub in getattr(command, "commands", {}).values():
        _plain_command_flags(sub, ctx)


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
    if os.environ.get("FACEEDIT_MAX_PIXELS"):
        from faceedit.imagefile import max_pixels_limit

        max_pixels_limit()  # a bad value is one usage error now, not a failure of every input


def _register_commands() -> None:
    from faceedit.cli import edit, face, models, train
    from faceedit.cli import eval as eval_cli

    for module in (edit, face, models, train, eval_cli):
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point (``faceedit``)."""
    try:
        app(args=sys.argv[1:], prog_name="faceedit")
    except BrokenPipeError:
        # `faceedit models list | head`: the reader went away; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
