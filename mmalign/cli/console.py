"""Rich output for the CLI: everything for humans goes to stderr, stdout stays data (TSV/JSON)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mmalign.report import Reporter

stderr = Console(stderr=True)

LOG_EVERY = 60.0
"""Seconds between the progress lines written when stderr is not a terminal."""


class _RichTask:
    def __init__(self, progress: Progress, task_id: int) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, amount: float = 1.0, **fields: object) -> None:
        if fields:
            self._progress.update(self._id, advance=amount, info=_fmt(fields))
        else:
            self._progress.update(self._id, advance=amount)

    def update(self, **fields: object) -> None:
        self._progress.update(self._id, info=_fmt(fields))


def _fmt(fields: dict[str, object]) -> str:
    parts = []
    for key, value in fields.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)


class _LogTask:
    """Progress as plain lines, for stderr sent to a file (``nohup``, a batch job's log).

    A bar redrawn in place shows only its last state in a file, written when the work ends: a
    1M × 1M search would say nothing for an hour. So a line at most every :data:`LOG_EVERY`
    seconds gives what is done, the elapsed time and the time left at the rate so far.
    """

    def __init__(self, console: Console, description: str, total: float | None,
                 clock: Callable[[], float]) -> None:
        self._console, self._description, self._total, self._clock = console, description, total, clock
        self._start = self._last = clock()
        self._done = 0.0
        self._info = ""

    def advance(self, amount: float = 1.0, **fields: object) -> None:
        self._done += amount
        self.update(**fields)

    def update(self, **fields: object) -> None:
        if fields:
            self._info = _fmt(fields)
        now = self._clock()
        if now - self._last >= LOG_EVERY:
            self._last = now
            self._console.print(self.line(now), highlight=False)

    def line(self, now: float, finished: bool = False) -> str:
        """``description: done / total (share), elapsed, time left`` and the fields last given;
        once ``finished``, the count and the time it took."""
        elapsed = now - self._start
        count = (f"{self._done:,.0f} / {self._total:,.0f} ({self._done / self._total:.0%})" if self._total
                 else f"{self._done:,.0f}" if self._done else "")
        if finished:
            timing = [f"done in {_clock_time(elapsed)}"]
        else:
            timing = [f"{_clock_time(elapsed)} elapsed"]
            if self._total and 0 < self._done < self._total:
                timing.append(f"about {_clock_time(elapsed * (self._total - self._done) / self._done)} left")
        return f"{self._description}: " + ", ".join(part for part in (count, *timing, self._info) if part)


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class RichReporter(Reporter):
    """Reporter drawing log lines and progress bars on stderr (quiet=True keeps warnings only).

    On a terminal progress is a rich bar; otherwise plain lines (:class:`_LogTask`).
    """

    def __init__(self, quiet: bool = False, console: Console = stderr,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self._console = console
        self._clock = clock

    def info(self, message: str) -> None:
        if not self.quiet:
            self._console.print(message, highlight=False)

    def warn(self, message: str) -> None:
        self._console.print(f"[yellow]warning:[/] {message}", highlight=False)

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[_RichTask | _LogTask]:
        if self._console.is_terminal or self.quiet:
            with self._bar(description, total) as task:
                yield task
            return
        task = _LogTask(self._console, description, total, self._clock)
        yield task
        self._console.print(task.line(self._clock(), finished=True), highlight=False)

    @contextmanager
    def _bar(self, description: str, total: float | None) -> Iterator[_RichTask]:
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        ]
        start = self._clock()
        with Progress(*columns, console=self._console, transient=False, disable=self.quiet) as progress:
            task_id = progress.add_task(description, total=total, info="")
            yield _RichTask(progress, task_id)
        if not self.quiet and total is None:
            self._console.print(f"{description}: {self._clock() - start:.1f} s", highlight=False)
