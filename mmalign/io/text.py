"""Reading text files (plain or gzipped, UTF-8) with decoding errors pointing at a line."""

from __future__ import annotations

import gzip
from pathlib import Path

from mmalign.errors import MMAlignError


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as error:
        raise MMAlignError(f"cannot read: {getattr(error, 'strerror', None) or error}", path=path) from None


def read_text(path: Path) -> str:
    """The file decoded as UTF-8 (a leading BOM dropped); bad bytes name their line."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise MMAlignError(f"not UTF-8 text (byte 0x{data[error.start]:02x})", path=path, line=line) from None


def read_lines(path: Path) -> list[str]:
    """The file's lines without line endings (LF or CRLF); a final newline adds no line.

    Only ``\\n`` ends a line: ``str.splitlines`` would also split on characters such as
    U+2028 or U+0085 that may legitimately occur inside names and values.
    """
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def strip_gz(path: Path) -> str:
    """The file name without a trailing ``.gz`` (the name that tells the format)."""
    return path.name[:-3] if path.name.endswith(".gz") else path.name
