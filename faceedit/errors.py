"""Expected failures, each with the exit code every command uses and a hint the user can act on.

Exit codes (also listed in the README): 0 done, 1 unexpected error (a bug), 2 usage, 3 no face in any
input, 4 model unavailable, 5 some inputs failed (the rest were written), 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_NO_FACE = 3
EXIT_MODEL_UNAVAILABLE = 4
EXIT_PARTIAL = 5
EXIT_INTERRUPTED = 130


class FaceeditError(Exception):
    """Base of every expected failure: printed as one line (plus a hint), never as a traceback."""

    exit_code: int = EXIT_BUG

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(FaceeditError):
    """The command line asks for something impossible: unknown attribute, no inputs, bad option mix."""

    exit_code = EXIT_USAGE


class ModelUnavailableError(FaceeditError):
    """Weights cannot be had: offline and not cached, repo/file missing, download failed."""

    exit_code = EXIT_MODEL_UNAVAILABLE


class CheckpointError(ModelUnavailableError):
    """A weights file exists but is not usable: corrupt, truncated, tampered, wrong architecture."""


class InputError(FaceeditError):
    """One input file cannot be processed (unreadable, not an image, too large). Batches go on."""

    exit_code = EXIT_PARTIAL


class NoFaceError(InputError):
    """No (usable) face was found in one input. Exit code 3 when this holds for every input."""

    exit_code = EXIT_NO_FACE


class OutputError(InputError):
    """An output cannot be written (exists and no --overwrite, folder not writable, disk full)."""
