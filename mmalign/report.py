"""The one reporting hook through which library code tells the user what is going on.

Library functions never print. They take a ``Reporter`` (default: :data:`SILENT`) and call
``info``/``warn`` for messages and ``progress`` for long loops. The CLI passes a
:class:`mmalign.cli.console.RichReporter` that draws on stderr; tests pass nothing or a
:class:`RecordingReporter`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol


class Task(Protocol):
    """Handle of one progress bar."""

    def advance(self, amount: float = 1.0, **fields: object) -> None: ...

    def update(self, **fields: object) -> None: ...


class Reporter:
    """Silent base reporter: every hook is a no-op. Subclass to show things."""

    def info(self, message: str) -> None:
        """A log line (goes to stderr in the CLI)."""

    def warn(self, message: str) -> None:
        """A warning the user should see (counted problems, fallbacks taken)."""

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[Task]:
        """A progress bar for a loop of ``total`` steps; fields shown next to it via update()."""
        yield _NullTask()


class _NullTask:
    def advance(self, amount: float = 1.0, **fields: object) -> None:
        pass

    def update(self, **fields: object) -> None:
        pass


class RecordingReporter(Reporter):
    """Keeps messages in lists; useful in tests."""

    def __init__(self) -> None:
        self.infos: list[str] = []
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


SILENT = Reporter()
