"""Rich output for the CLI: everything for humans goes to stderr, stdout stays data (TSV/JSON)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

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


class RichReporter(Reporter):
    """Reporter drawing log lines and progress bars on stderr (quiet=True keeps warnings only)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            stderr.print(message, highlight=False)

    def warn(self, message: str) -> None:
        stderr.print(f"[yellow]warning:[/] {message}", highlight=False)

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[_RichTask]:
        columns = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        ]
        start = time.perf_counter()
        with Progress(*columns, console=stderr, transient=False, disable=self.quiet) as progress:
            task_id = progress.add_task(description, total=total, info="")
            yield _RichTask(progress, task_id)
        if not self.quiet and total is None:
            stderr.print(f"{description}: {time.perf_counter() - start:.1f} s", highlight=False)
