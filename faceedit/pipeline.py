"""The photo pipeline around the generator: per-photo CPU stages ahead of it and behind it, in threads
or worker processes, with bounded queues (memory flat for any folder size), results in input order and
failures kept per file. Generic over what the stages do; the recipes live in :mod:`faceedit.api`.

Stage contract: ``prepare(path, target, *, timings)`` runs ahead of the generator; a finish job
``job(*, timings) -> Item`` runs behind it. In process mode both must pickle: a ``functools.partial``
of a module-level function over picklable arguments (arrays, dataclasses, paths).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from faceedit.batch import Item, OutputPlan, Report
from faceedit.errors import FaceeditError
from faceedit.workers import Handle, Lane, Processes, StageTimes, Threads, WorkerDied, stage  # noqa: F401

Job = tuple[Path, Path]  # (input, output)


def default_workers() -> int:
    """Workers that decode and detect ahead of the generator (``FACEEDIT_WORKERS`` overrides)."""
    env = os.environ.get("FACEEDIT_WORKERS")
    return max(1, int(env)) if env and env.isdigit() else min(8, os.cpu_count() or 1)


def plan_jobs(paths: Iterable[Path], plan: OutputPlan, report: Report) -> list[Job]:
    """(input, output) pairs still to do; existing outputs are skipped or refused up front. ``plan`` is
    bound to the batch by the recipe (:meth:`OutputPlan.for_inputs`), so no two inputs share a name."""
    jobs = []
    for path in paths:
        target = plan.path_for(path)
        try:
            if not plan.check(target, source=path):
                report.add(Item(input=path, status="skipped", outputs=[target], details={"reason": "exists"}))
                continue
        except FaceeditError as e:
            report.fail(path, e)
            continue
        jobs.append((path, target))
    return jobs


def in_input_order(report: Report, paths: Sequence[Path]) -> Report:
    """Items sorted as the inputs were given (workers finish in any order)."""
    index: dict[Path, int] = {}
    for i, path in enumerate(paths):
        index.setdefault(path, i)
    report.items.sort(key=lambda item: index.get(item.input, len(index)))
    return report


class Sink:
    """Where items go: the report and the progress callback, always from the calling thread."""

    def __init__(self, report: Report, on_done: Callable[[Item], None] | None) -> None:
        self.report, self.on_done = report, on_done

    def add(self, item: Item) -> None:
        self.report.add(item)
        if self.on_done:
            self.on_done(item)

    def fail(self, path: Path, error: Exception) -> None:
        item = self.report.fail(path, error)
        if self.on_done:
            self.on_done(item)


def attempt(
    prepare: Callable[..., Any], path: Path, target: Path, *, timings: StageTimes | None = None
) -> Any:
    """``prepare``'s result, or the expected error it raised (a per-file failure, not a crash)."""
    try:
        return prepare(path, target, timings=timings)
    except FaceeditError as e:
        return e
    except (OSError, ValueError) as e:  # anything a broken file can raise that we did not foresee
        return e


def _collect(handle: Handle, path: Path | None) -> Any:
    """A handle's result; a dead worker becomes this file's failure, not the batch's."""
    try:
        return handle.result()
    except WorkerDied as e:
        return WorkerDied(f"{path}: {e.message}", e.hint)


# --------------------------------------------------------------------------------------- pipeline


def ahead(
    jobs: Sequence[Job],
    prepare: Callable[..., Any],
    lane: Lane | None,
    depth: int,
    timings: StageTimes | None,
) -> Iterator[tuple[Path, Any]]:
    """(input, prepared or error) in input order, at most ``depth`` photos prepared ahead."""
    if lane is None:
        for path, target in jobs:
            yield path, attempt(prepare, path, target, timings=timings)
        return
    queue = iter(jobs)
    pending = deque(
        (path, lane.submit(attempt, prepare, path, target)) for path, target in islice(queue, depth)
    )
    while pending:
        path, handle = pending.popleft()
        for nxt, target in islice(queue, 1):
            pending.append((nxt, lane.submit(attempt, prepare, nxt, target)))
        yield path, _collect(handle, path)


class Writer:
    """Runs finish jobs (paste back, encode, write) on a lane while the generator works.

    At most ``limit`` photos wait or run at once (bounded memory for any folder size); their items reach
    the sink in submission order, from the thread that submits. A job's unexpected exception is raised
    there too; files are written atomically, so nothing is ever half-written.
    """

    def __init__(self, sink: Sink, lane: Lane | None, limit: int, timings: StageTimes | None = None) -> None:
        self.sink, self.lane, self.limit, self.timings = sink, lane, max(1, limit), timings
        self.pending: deque[tuple[Path | None, Handle]] = deque()

    def submit(self, job: Callable[..., Item], path: Path | None = None) -> None:
        """Queue ``job(timings=...)``; ``path`` names the input if its worker dies."""
        if self.lane is None:
            self.sink.add(job(timings=self.timings))
            return
        self.pending.append((path, self.lane.submit(job)))
        while len(self.pending) > self.limit or (self.pending and self.pending[0][1].done()):
            self._take()

    def _take(self) -> None:
        path, handle = self.pending.popleft()
        item = _collect(handle, path)
        if isinstance(item, WorkerDied):
            item = Item(input=path or Path("?"), status="failed", error=str(item))
        self.sink.add(item)

    def drain(self) -> None:
        while self.pending:
            self._take()


def groups(stream: Iterator[tuple[Path, Any]], sink: Sink, batch_faces: int) -> Iterator[list[Any]]:
    """Prepared photos grouped so that one generator call sees about ``batch_faces`` faces from several
    photos (a photo counts its ``aligned`` faces, or 1); errors go to the sink as per-file failures."""
    group: list[Any] = []
    count = 0
    for path, prepared in stream:
        if isinstance(prepared, Exception):
            sink.fail(path, prepared)
            continue
        group.append(prepared)
        count += len(prepared.aligned) or 1
        if count >= batch_faces:
            yield group
            group, count = [], 0
    if group:
        yield group


@dataclass(frozen=True)
class Pipeline:
    """Workers around the generator: ``workers`` prepare ahead and ``writers`` finish behind (threads),
    or, with ``processes``, ``workers`` processes do both; 1 thread worker and 0 writers = all inline."""

    workers: int
    writers: int
    processes: bool = False

    @classmethod
    def make(cls, workers: int | None = None, *, processes: bool | None = None, jobs: int = 0) -> Pipeline:
        """``processes=None`` picks them for folders: starting a process costs about as much as
        preparing a few photos, so a handful of photos stays with threads."""
        n = workers or default_workers()
        if processes is None:
            processes = n > 1 and jobs >= 4 * n
        return cls(n, max(1, n // 2) if n > 1 else 0, processes)

    @contextlib.contextmanager
    def run(self, sink: Sink, timings: StageTimes | None = None) -> Iterator[Run]:
        """Lanes started, then closed: on an error or Ctrl-C, running jobs finish, queued ones are dropped."""
        lanes: list[Threads | Processes] = []
        if self.processes:
            lanes.append(Processes(self.workers, timings))
            prep = write = lanes[0]
        else:
            prep = Threads(self.workers, "prep", timings) if self.workers > 1 else None
            write = Threads(self.writers, "write", timings) if self.writers > 0 else None
            lanes += [lane for lane in (prep, write) if lane is not None]
        try:
            run = Run(
                self, prep, Writer(sink, write, self.workers if self.processes else 2 * self.writers, timings)
            )
            yield run
            run.writer.drain()
        finally:
            for lane in lanes:
                lane.close()


@dataclass
class Run:
    """One pass over a batch: prepared photos in groups for the generator, a writer behind it."""

    pipe: Pipeline
    prep: Lane | None
    writer: Writer

    def groups(
        self, jobs: Sequence[Job], prepare: Callable[..., Any], batch_faces: int
    ) -> Iterator[list[Any]]:
        depth = 2 * self.pipe.workers
        stream = ahead(jobs, prepare, self.prep, depth, self.writer.timings)
        return groups(stream, self.writer.sink, batch_faces)

    def each(self, jobs: Sequence[Job], work: Callable[..., Item]) -> None:
        """``work`` (stage form, returning an :class:`Item`) on every job in the prepare workers, with
        no generator step: items, or errors as per-file failures, reach the sink in input order."""
        sink = self.writer.sink
        for path, result in ahead(jobs, work, self.prep, 2 * self.pipe.workers, self.writer.timings):
            if isinstance(result, Exception):
                sink.fail(path, result)
            else:
                sink.add(result)
