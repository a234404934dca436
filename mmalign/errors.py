"""Errors a user can fix. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path


class MMAlignError(Exception):
    """A problem with the user's input or workspace, stated so the user can fix it.

    ``path`` and ``line`` (1-based) point at the offending place when there is one; ``str()``
    gives the single line the CLI prints.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return f"{where}{self.message}"


def first_line(error: BaseException) -> str:
    """The first line of a foreign exception's message (its type when empty), for one-line reports.

    Libraries such as timm, torch and PIL raise multi-line messages; a user error or a skipped
    file's reason must stay on one line.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
