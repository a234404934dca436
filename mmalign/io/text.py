"""Opening input files (plain, gzip, bzip2 or xz) and reading UTF-8 lines that name their number."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

from mmalign.errors import MMAlignError

COMPRESSIONS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
}
"""Suffix -> stdlib reader; a compressed file is read as a stream, never decompressed whole."""

BOM = b"\xef\xbb\xbf"


class InputStream:
    """A binary input decompressed on the fly, and how far into the file on disk it has got."""

    def __init__(self, path: Path, raw: IO[bytes], stream: IO[bytes]) -> None:
        self.path = path
        self.raw = raw
        self.stream = stream
        self.size = path.stat().st_size

    def position(self) -> int:
        """Bytes of the file on disk consumed so far (compressed bytes for compressed files)."""
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0


@contextmanager
def open_input(path: Path) -> Iterator[InputStream]:
    """Open ``path`` for streaming, decompressing by suffix; a leading UTF-8 BOM is skipped."""
    try:
        raw = open(path, "rb")
    except OSError as error:
        raise MMAlignError(f"cannot read: {error.strerror or error}", path=path) from None
    try:
        opener = COMPRESSIONS.get(path.suffix.lower())
        stream = opener(raw) if opener is not None else raw
        try:
            if stream.read(3) != BOM:
                stream.seek(0)
        except (OSError, EOFError, lzma.LZMAError) as error:
            raise MMAlignError(f"cannot read: {error}", path=path) from None
        try:
            yield InputStream(path, raw, stream)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as error:  # corrupt or truncated input
            raise MMAlignError(f"cannot read: {error}", path=path) from None
    finally:
        raw.close()


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based number, text) for each line, streamed; line endings (LF or CRLF) removed.

    Only ``\\n`` ends a line: ``str.splitlines`` would also split on characters such as U+2028
    or U+0085 that may legitimately occur inside names and values. A final newline adds no
    line. Bytes that are not UTF-8 stop reading with an error naming the line.
    """
    with open_input(path) as source:
        number = 0
        try:
            for number, data in enumerate(source.stream, 1):
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise MMAlignError(f"not UTF-8 text (byte 0x{data[error.start]:02x})", path=path, line=number) from None
                if text.endswith("\n"):
                    text = text[:-1]
                if text.endswith("\r"):
                    text = text[:-1]
                yield number, text
        except (OSError, EOFError, lzma.LZMAError) as error:
            raise MMAlignError(f"cannot read: {error}", path=path, line=number + 1) from None


def read_lines(path: Path) -> list[str]:
    """Every line of the file (see :func:`iter_lines`), for small files such as pair lists."""
    return [text for _, text in iter_lines(path)]


def strip_compression(path: Path) -> str:
    """The file name without a compression suffix (``.gz .bz2 .xz``): the name that tells the format."""
    name = path.name
    suffix = Path(name).suffix.lower()
    return name[: -len(suffix)] if suffix in COMPRESSIONS else name
