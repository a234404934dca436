"""Errors a user can fix. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path


class MMAlignError(Exception):
    """A problem with the user's input or workspace, stated so the user can fix it.

    ``path``, ``line`` and ``column`` (1-based) point at the offending place when there is
    one; ``str()`` gives the single line the CLI prints: ``FILE:LINE:COLUMN: message``.
    """

    def __init__(
        self, message: str, path: str | Path | None = None, line: int | None = None, column: int | None = None
    ):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.column = column if line is not None else None
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.where()}{self.message}"

    def where(self) -> str:
        """``FILE:LINE:COLUMN: `` with the parts that are known, or empty."""
        if self.path is None:
            return ""
        if self.line is None:
            return f"{self.path}: "
        return f"{self.path}:{self.line}:{self.column}: " if self.column is not None else f"{self.path}:{self.line}: "


def first_line(error: BaseException) -> str:
    """The first line of a foreign exception's message (its type when empty), for one-line reports.

    Libraries such as timm, torch and PIL raise multi-line messages; a user error or a skipped
    file's reason must stay on one line.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
