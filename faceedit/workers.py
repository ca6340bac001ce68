"""Where the pipeline's stage calls run: a lane of threads, or of spawned worker processes that
outlive a worker's death; and the stage timings that come back from either.

A lane runs ``fn(*args, timings=...)`` and hands back a handle (``done()``, ``result()``). In a process
``fn`` and its arguments must pickle; large arrays travel through :mod:`faceedit.spill`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from faceedit import spill
from faceedit.errors import FaceeditError


class StageTimes:
    """Seconds per stage (decode, detect, align, classify, generate, paste, encode), wall and CPU, summed
    over the threads and processes that ran it: stages overlap, so sums can exceed the wall time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start, time.thread_time() - cpu)

    def add(self, name: str, seconds: float, cpu: float, calls: int = 1) -> None:
        with self._lock:
            self.seconds[name] += seconds
            self.cpu[name] += cpu
            self.calls[name] += calls

    def snapshot(self) -> dict[str, tuple[float, float, int]]:
        """Plain numbers (picklable): what a worker process sends back with its result."""
        return {name: (self.seconds[name], self.cpu[name], self.calls[name]) for name in self.calls}

    def merge(self, snapshot: dict[str, tuple[float, float, int]]) -> None:
        for name, (seconds, cpu, calls) in snapshot.items():
            self.add(name, seconds, cpu, calls)


def stage(timings: StageTimes | None, name: str) -> contextlib.AbstractContextManager[None]:
    return timings.stage(name) if timings is not None else contextlib.nullcontext()


class WorkerDied(FaceeditError):
    """A worker process ended without answering (crashed, killed, out of memory)."""


class Handle(Protocol):
    def done(self) -> bool: ...
    def result(self) -> Any: ...


class Lane(Protocol):
    """Runs ``fn(*args, timings=...)`` somewhere else and hands back a :class:`Handle`."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Handle: ...


class Threads:
    """A lane of threads (OpenCV and PIL release the GIL); stage times go straight into ``timings``."""

    def __init__(self, threads: int, name: str, timings: StageTimes | None) -> None:
        self.pool = cf.ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"faceedit-{name}")
        self.timings = timings

    def submit(self, fn: Callable[..., Any], *args: Any) -> Handle:
        return self.pool.submit(fn, *args, timings=self.timings)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _worker_start(spill_folder: str) -> None:
    """In each worker process: Ctrl-C is the parent's to handle (it was blocked from birth, see
    :func:`_sigint_blocked`); one OpenCV thread per process; photos travel through ``spill_folder``."""
    import signal

    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also drops a Ctrl-C that came during start-up
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    cv2.setNumThreads(1)
    spill.install(spill_folder)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Workers start while the executor submits; with SIGINT blocked in this thread they inherit it
    blocked, so a Ctrl-C while they import (before :func:`_worker_start`) cannot print tracebacks.
    The parent still gets it: another thread takes it, and Python runs the handler here."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _timed(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, dict[str, tuple[float, float, int]]]:
    """Runs in a worker process: the result (errors made picklable) and the stage times it took."""
    local = StageTimes()
    result = fn(*args, timings=local)
    if isinstance(result, FaceeditError):  # its hint is not in args: rebuild from the full text
        result = _portable(result)
    return result, local.snapshot()


def _portable(error: FaceeditError) -> FaceeditError:
    try:
        return type(error)(str(error))
    except TypeError:
        return FaceeditError(str(error))


class _Task:
    """One call on the process lane; ``outcome`` is set when it ran again after a worker died."""

    def __init__(self, owner: Processes, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.owner, self.fn, self.args = owner, fn, args
        try:
            self.future: cf.Future[Any] = owner.call(fn, args)
        except cf.process.BrokenProcessPool:  # a worker died since the last call: mend first
            owner._recover()
            self.future = owner.call(fn, args)
        self.outcome: tuple[str, Any] | None = None

    def done(self) -> bool:
        return self.outcome is not None or self.future.done()

    def result(self) -> Any:
        return self.owner.result(self)


class Processes:
    """A lane of ``spawn``-ed worker processes (torch-safe; they import only what the stages need).

    When a worker dies the pool breaks and every unfinished call fails with it; the calls caught in it
    run again one at a time in a fresh pool, so only the call that kills a worker fails (WorkerDied).
    """

    def __init__(self, workers: int, timings: StageTimes | None) -> None:
        self.workers, self.timings = workers, timings
        self.folder = spill.make_folder()
        spill.install(self.folder, owner=True)
        self.pool = self._start()
        self.live: dict[_Task, None] = {}  # submitted and not yet collected, in submission order

    def _start(self) -> cf.ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return cf.ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_worker_start, initargs=(self.folder,)
        )

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> cf.Future[Any]:
        with _sigint_blocked():  # the executor may start a worker now
            return self.pool.submit(_timed, fn, args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Handle:
        task = _Task(self, fn, args)
        self.live[task] = None
        return task

    def result(self, task: _Task) -> Any:
        while task.outcome is None:
            try:
                task.outcome = ("ok", task.future.result())
            except cf.process.BrokenProcessPool:
                self._recover()
            except BaseException:
                self.live.pop(task, None)
                raise
        self.live.pop(task, None)
        kind, value = task.outcome
        if kind == "error":
            raise value
        if kind == "died":
            raise WorkerDied(
                "a worker process died while working on this file",
                "it may crash the decoder or detector: try it alone with --workers 1",
            )
        result, times = value
        if self.timings is not None:
            self.timings.merge(times)
        return result

    def _recover(self) -> None:
        """Rerun, one by one, the calls the broken pool took down with it."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = self._start()
        for task in [t for t in self.live if t.outcome is None and not _answered(t.future)]:
            task.outcome = self._alone(task)

    def _alone(self, task: _Task) -> tuple[str, Any]:
        try:
            return "ok", self.call(task.fn, task.args).result()
        except cf.process.BrokenProcessPool:
            self.pool.shutdown(wait=True)
            self.pool = self._start()
            return "died", None
        except Exception as e:
            return "error", e

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        spill.install(None)
        shutil.rmtree(self.folder, ignore_errors=True)


def _answered(future: cf.Future[Any]) -> bool:
    return future.done() and not isinstance(future.exception(), cf.process.BrokenProcessPool)
