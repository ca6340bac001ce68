"""Slow and broken hubs fail fast and cleanly (issue 10 item 6), and the environment is read in one place.

Local servers on 127.0.0.1 only: one that accepts connections and never answers, and a closed port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceedit import hub, settings
from faceedit.errors import ModelUnavailableError, UsageError
from tests import fakehub

SPEC = "hf:test/ours"


class SilentHub(str):
    """The endpoint URL of a server that accepts every connection and never sends a byte."""

    connections: list[socket.socket]


@pytest.fixture
def silent_hub() -> Iterator[SilentHub]:
    """An endpoint that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = SilentHub(f"http://127.0.0.1:{server.getsockname()[1]}")
    url.connections = held
    yield url
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def closed_port() -> str:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


@pytest.fixture
def net_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fakehub.isolate_caches(monkeypatch, tmp_path / "caches")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in (*settings.OFFLINE_VARS, *settings.ENDPOINT_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(settings.TIMEOUT_VAR, "1")


def test_a_hub_that_never_answers_fails_in_two_timeouts(net_env: None, silent_hub: SilentHub) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        hub.resolve(SPEC, endpoint=silent_hub, progress=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 6, elapsed  # one try + one retry of 1 s each (397 s before)
    assert "did not answer" in info.value.message and info.value.exit_code == 4
    assert settings.TIMEOUT_VAR in info.value.hint and "\n" not in str(info.value)
    assert len(silent_hub.connections) == 2  # one try, one retry: nothing was cached


def test_a_closed_port_fails_at_once(net_env: None, closed_port: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        hub.resolve(SPEC, endpoint=closed_port, progress=False)
    assert time.perf_counter() - start < 3  # 23-25 s of library retries before
    assert closed_port in info.value.message and info.value.exit_code == 4


def test_the_default_waits_fit_in_a_minute() -> None:
    connect, read = settings.CONNECT_TIMEOUT, settings.READ_TIMEOUT
    assert 2 * (connect + read) < 60  # the worst case: a try and one retry, each waiting in full


def _download_in_a_process(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``faceedit models download SPEC`` in a fresh process with fresh caches and ``env`` on top."""
    clean = {k: v for k, v in os.environ.items() if k not in (*settings.ENDPOINT_VARS, "HF_HUB_CACHE")}
    clean.update({"HF_HOME": str(tmp_path / "hf"), "FACEEDIT_CACHE": str(tmp_path / "fe"), **env})
    command = [sys.executable, "-m", "faceedit", "models", "download", SPEC]
    return subprocess.run(command, capture_output=True, text=True, env=clean)


def test_cli_never_answering_hub_is_exit_4_in_one_line(silent_hub: str, tmp_path: Path) -> None:
    start = time.perf_counter()
    proc = _download_in_a_process(
        tmp_path,
        HF_ENDPOINT=silent_hub,
        HF_HUB_OFFLINE="0",
        FACEEDIT_OFFLINE="0",
        FACEEDIT_NO_PROGRESS="1",
        FACEEDIT_HUB_TIMEOUT="1",
    )
    assert proc.returncode == 4, proc.stderr
    assert time.perf_counter() - start < 15 and "Traceback" not in proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "did not answer" in error and "HF_ENDPOINT" in error  # the whole message on one line


def test_cli_endpoint_without_scheme_is_a_usage_error(tmp_path: Path) -> None:
    proc = _download_in_a_process(tmp_path, HF_ENDPOINT="127.0.0.1:9")
    assert proc.returncode == 2, proc.stderr
    assert "HF_ENDPOINT='127.0.0.1:9' is not an http(s) URL" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------ settings


def test_offline_is_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in settings.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    assert not settings.offline() and settings.offline(True)
    for var in settings.OFFLINE_VARS:
        monkeypatch.setenv(var, "yes")
        assert settings.offline()
        monkeypatch.setenv(var, "0")
    assert not settings.current().offline


def test_endpoint_and_timeouts_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in settings.ENDPOINT_VARS:
        monkeypatch.delenv(var, raising=False)
    assert settings.endpoint() is None and settings.endpoint("http://127.0.0.1:8/") == "http://127.0.0.1:8"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:7")
    monkeypatch.setenv("FACEEDIT_HF_ENDPOINT", "http://127.0.0.1:8")
    assert settings.endpoint() == "http://127.0.0.1:8"  # faceedit's own variable wins
    monkeypatch.setenv("FACEEDIT_HF_ENDPOINT", "ftp://127.0.0.1")
    with pytest.raises(UsageError, match="FACEEDIT_HF_ENDPOINT"):
        settings.endpoint()
    monkeypatch.setenv(settings.TIMEOUT_VAR, "2.5")
    assert settings.timeouts() == (2.5, 2.5)
    for bad in ("abc", "0", "-1"):
        monkeypatch.setenv(settings.TIMEOUT_VAR, bad)
        with pytest.raises(UsageError, match=settings.TIMEOUT_VAR):
            settings.timeouts()
    monkeypatch.setenv("FACEEDIT_CACHE", "~/x")
    assert settings.cache_root() == Path("~/x").expanduser()
    assert hub.converted_dir("m") == Path("~/x/models/m").expanduser()
