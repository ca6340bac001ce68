"""Settings from the environment, read in this one place: offline mode, hub endpoint, network timeouts and
the faceedit cache root (the README's Environment list). Standard library only, so ``--help`` stays fast.

Each function reads the environment when called; :func:`current` takes one snapshot for a whole command.
"""

from __future__ import annotations

import os
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from faceedit.errors import UsageError

TRUE = {"1", "true", "yes", "on"}
OFFLINE_VARS = ("HF_HUB_OFFLINE", "FACEEDIT_OFFLINE")  # FACEEDIT_OFFLINE: faceedit only, not other HF tools
ENDPOINT_VARS = ("FACEEDIT_HF_ENDPOINT", "HF_ENDPOINT")  # the first one set wins
# Network waits (seconds): connecting, and each wait for an answer or the next bytes. A request that times
# out is retried once when nothing is cached, so a hub that never answers fails within 2 x (5 + 15) s.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
TIMEOUT_VAR = "FACEEDIT_HUB_TIMEOUT"  # read timeout; the connect timeout is min(5 s, it)


@dataclass(frozen=True)
class Settings:
    """One snapshot of the environment for a command (see the module functions for each field)."""

    offline: bool
    endpoint: str | None
    cache_root: Path
    connect_timeout: float
    read_timeout: float


def current(offline_flag: bool = False, endpoint_arg: str | None = None) -> Settings:
    """The environment now, with ``--offline`` and an explicit endpoint taking precedence."""
    connect, read = timeouts()
    return Settings(offline(offline_flag), endpoint(endpoint_arg), cache_root(), connect, read)


def offline(flag: bool = False) -> bool:
    """``--offline``, HF_HUB_OFFLINE or FACEEDIT_OFFLINE set to 1/true/yes/on, or huggingface_hub's own
    offline switch when that library is already loaded (it reads HF_HUB_OFFLINE once, at import)."""
    if flag or any(os.environ.get(v, "").strip().lower() in TRUE for v in OFFLINE_VARS):
        return True
    hf_constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(hf_constants, "HF_HUB_OFFLINE", False))


def endpoint(value: str | None = None) -> str | None:
    """The hub endpoint: ``value``, else FACEEDIT_HF_ENDPOINT, else HF_ENDPOINT; None = the public hub.

    Checked here so that a typo is one usage error (exit 2), not a crash inside the HTTP client.
    """
    source = "the endpoint"
    if not value:
        source, value = next(((v, os.environ[v]) for v in ENDPOINT_VARS if os.environ.get(v)), (source, None))
    if not value:
        return None
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"{source}={value!r} is not an http(s) URL",
            f"write it with its scheme, e.g. https://{value.strip().split('://')[-1] or 'HOST'}",
        )
    return value.strip().rstrip("/")


def timeouts() -> tuple[float, float]:
    """(connect, read) seconds for network waits; FACEEDIT_HUB_TIMEOUT sets the read timeout."""
    text = os.environ.get(TIMEOUT_VAR, "").strip()
    if not text:
        return CONNECT_TIMEOUT, READ_TIMEOUT
    try:
        read = float(text)
    except ValueError:
        read = -1.0
    if not 0 < read <= 3600:
        raise UsageError(f"{TIMEOUT_VAR}={text!r} is not a number of seconds", "use e.g. 15 (0 < s <= 3600)")
    return min(CONNECT_TIMEOUT, read), read


def cache_root() -> Path:
    """The faceedit cache: FACEEDIT_CACHE, else $XDG_CACHE_HOME/faceedit or ~/.cache/faceedit."""
    if env := os.environ.get("FACEEDIT_CACHE"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "faceedit"
