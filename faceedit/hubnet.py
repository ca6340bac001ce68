"""Talking to the Hugging Face hub, shared by ``hub`` (verified fetch), ``store`` and ``convert.tf_remote``:
bounded network waits with at most one retry, huggingface_hub errors as one line with a hint, and the
tqdm -> rich download bar.

huggingface_hub retries a failed metadata request for minutes (a server that accepts and never answers
took 397 s, a closed port 23 s). Inside :func:`bounded`, every request of its shared client waits at
most the configured connect/read timeouts (:mod:`faceedit.settings`), and once a host has failed twice
the next request to it fails at once (:func:`unreachable_error`), which the library does not retry.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from faceedit import console, settings
from faceedit.errors import ModelUnavailableError

PUBLIC_HUB = "https://huggingface.co"
MAX_FAILURES = 2  # the first try and one retry


@dataclass
class _Budget:
    connect: float
    read: float
    failures: dict[str, int] = field(default_factory=dict)


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("faceedit_hub_budget", default=None)


def shown(endpoint: str | None) -> str:
    return endpoint or PUBLIC_HUB


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


# ------------------------------------------------------------------------------------ bounded waits


@contextlib.contextmanager
def bounded(connect: float | None = None, read: float | None = None) -> Iterator[None]:
    """Requests made by huggingface_hub in this block wait at most ``connect``/``read`` seconds
    (default: :func:`faceedit.settings.timeouts`) and reach a host at most :data:`MAX_FAILURES` times
    after it failed to connect or answer."""
    default_connect, default_read = settings.timeouts()
    _install_client()
    token = _BUDGET.set(_Budget(connect or default_connect, read or default_read))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _install_client() -> None:
    """Give huggingface_hub an HTTP client whose transport applies :func:`bounded` (public API:
    ``set_client_factory``; the library's request hooks are kept). Not behind a proxy (HTTPS_PROXY &
    co.), where the library's own client and the proxy's timeouts stay in charge."""
    import urllib.request

    import httpx2
    from huggingface_hub import get_session, set_client_factory

    if urllib.request.getproxies():  # a custom transport would drop httpx's proxy mounts: leave it be
        return
    client = get_session()
    if getattr(client, "_faceedit_bounded", False):
        return
    hooks = client.event_hooks

    def factory() -> httpx2.Client:
        made = httpx2.Client(
            event_hooks=hooks, follow_redirects=True, timeout=None, transport=_bounded_transport()
        )
        made._faceedit_bounded = True  # marks our client (an attribute of ours, not httpx's)
        return made

    set_client_factory(factory)


def _bounded_transport() -> Any:
    import httpx2

    class BoundedTransport(httpx2.HTTPTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            budget = _BUDGET.get()
            if budget is None:
                return super().handle_request(request)
            host = request.url.host
            if budget.failures.get(host, 0) >= MAX_FAILURES:
                raise unreachable_error()(f"{host} did not answer twice", request=request)
            _cap_timeouts(request, budget)
            try:
                return super().handle_request(request)
            except (httpx2.TimeoutException, httpx2.NetworkError) as e:
                budget.failures[host] = budget.failures.get(host, 0) + 1
                if budget.failures[host] >= MAX_FAILURES:
                    raise unreachable_error()(f"{host}: {first_line(e)}", request=request) from e
                raise

    return BoundedTransport()


def _cap_timeouts(request: Any, budget: _Budget) -> None:
    """The request's own timeouts (httpx's ``timeout`` extension), none longer than the budget's."""
    wanted = request.extensions.get("timeout", {})
    limits = {"connect": budget.connect, "read": budget.read, "write": budget.read, "pool": budget.connect}
    request.extensions["timeout"] = {
        k: limit if wanted.get(k) is None else min(wanted[k], limit) for k, limit in limits.items()
    }


@functools.cache
def unreachable_error() -> type[Exception]:
    """The error a host that failed twice in one :func:`bounded` block raises: an httpx2 transport
    error that huggingface_hub does not retry (built on first use: importing httpx2 is slow)."""
    import httpx2

    class HubUnreachable(httpx2.TransportError):
        pass

    return HubUnreachable


# ------------------------------------------------------------------------------------ hub errors


@contextlib.contextmanager
def hub_errors(
    repo_id: str,
    filename: str,
    *,
    label: str | None = None,
    get: str = "run the command again once online",
    endpoint: str | None = None,
    offline: bool = False,
    revision: str | None = None,
) -> Iterator[None]:
    """huggingface_hub and HTTP exceptions -> ModelUnavailableError whose hint says what to do.

    ``label``: what the user asked for (a card name); ``get``: how to get the file once the cause is fixed.
    """
    import httpx2
    from huggingface_hub import errors as hf

    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    what = label or where
    try:
        yield
    except hf.GatedRepoError as e:  # a RepositoryNotFoundError: catch first
        raise ModelUnavailableError(
            f"{repo_id} is gated on the hub", "accept its conditions on the hub page, then set HF_TOKEN"
        ) from e
    except hf.RepositoryNotFoundError as e:
        raise ModelUnavailableError(
            f"hub repo {repo_id} not found (or private) at {shown(endpoint)}",
            "check the name and HF_ENDPOINT; a private repo needs HF_TOKEN",
        ) from e
    except hf.RevisionNotFoundError as e:
        raise ModelUnavailableError(
            f"revision {revision} not found in {repo_id}", f"pass another @REV or {get} with --update"
        ) from e
    except hf.LocalEntryNotFoundError as e:  # an EntryNotFoundError too: catch it first
        raise _not_cached(what, where, e, get, endpoint, offline) from e
    except hf.RemoteEntryNotFoundError as e:
        raise ModelUnavailableError(
            f"{where} does not exist on the hub", "the repo's layout changed: update faceedit or report it"
        ) from e
    except hf.HfHubHTTPError as e:
        raise ModelUnavailableError(f"the hub refused {where}: {first_line(e)}", "try again later") from e
    except hf.OfflineModeIsEnabled as e:
        raise _not_cached(what, where, e, get, endpoint, True) from e
    except unreachable_error() as e:
        raise _timed_out(where, get, endpoint) from e
    except httpx2.HTTPError as e:  # transport errors of the hub's HTTP client
        raise ModelUnavailableError(
            f"cannot reach the hub at {shown(endpoint)} for {where}: {first_line(e)}",
            f"check the connection or proxy, then {get}",
        ) from e
    except OSError as e:  # consistency check (size), disk full
        raise ModelUnavailableError(
            f"download of {where} failed: {first_line(e)}", "run the command again; check free disk space"
        ) from e


def _timed_out(where: str, get: str, endpoint: str | None) -> ModelUnavailableError:
    connect, read = settings.timeouts()
    return ModelUnavailableError(
        f"the hub at {shown(endpoint)} did not answer (twice, waiting {connect:g} s to connect and "
        f"{read:g} s for data) and {where} is not cached",
        f"check the connection, proxy or HF_ENDPOINT (longer waits: {settings.TIMEOUT_VAR}), then {get}",
    )


def _not_cached(
    what: str, where: str, e: Exception, get: str, endpoint: str | None, offline: bool
) -> ModelUnavailableError:
    from huggingface_hub import errors as hf

    cause = e.__cause__
    if offline or isinstance(cause, hf.OfflineModeIsEnabled):
        return ModelUnavailableError(
            f"{what} is not cached and offline mode is on",
            f"{get} once with internet (no --offline, HF_HUB_OFFLINE unset)",
        )
    if isinstance(cause, unreachable_error()):
        return _timed_out(where, get, endpoint)
    if isinstance(cause, hf.FileMetadataError):
        return ModelUnavailableError(
            f"{shown(endpoint)} does not answer like a Hugging Face hub",
            "check HF_ENDPOINT and any proxy settings",
        )
    return ModelUnavailableError(
        f"cannot reach the hub at {shown(endpoint)} and {where} is not cached",
        f"check the connection or proxy, then {get}",
    )


def quiet_library_logs() -> None:
    """huggingface_hub installs its own stderr handler on import; its retry chatter is not for users."""
    import logging

    from huggingface_hub.utils import logging as hf_logging

    if console.log.getEffectiveLevel() > logging.DEBUG:  # -vv shows everything
        hf_logging.set_verbosity_error()


def check_resolvable(endpoint: str | None, what: str, get: str) -> None:
    """Fail at once, not after the library's retries, when the hub's name cannot resolve.

    A DNS failure is not transient the way a dropped connection is. Skipped behind a proxy, where the
    proxy and not this machine resolves the name.
    """
    import socket
    import urllib.parse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    host = urllib.parse.urlsplit(shown(endpoint)).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as e:
        raise ModelUnavailableError(
            f"cannot reach the hub at {shown(endpoint)} ({host}: {e.strerror or e}) and {what} is not cached",
            f"check the connection, then {get}",
        ) from None


# ------------------------------------------------------------------------------------ progress


@contextlib.contextmanager
def download_bar(label: str, enabled: bool) -> Iterator[type]:
    """A tqdm class for hf_hub_download that draws a rich download bar on stderr (or nothing)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from tqdm.auto import tqdm

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console.err,
        transient=True,
        disable=not enabled,
    )

    class RichTqdm(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # tqdm draws nothing; rich does
            super().__init__(*args, **kwargs)
            self._task = bars.add_task(label, total=kwargs.get("total"))

        def update(self, n: float | None = 1) -> bool | None:
            bars.advance(self._task, n or 0)
            return None

    with bars:
        yield RichTqdm
