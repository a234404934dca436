"""Image folders: ``images/`` files and per-entity sub-folders, matched by local name.

An image file belongs to the entities whose *local name* equals the file's stem: the
local name of a key is its part after the last ``/`` or ``#`` (the whole key when it has
neither), percent-decoded; the stem is percent-decoded too. So
``http://dbpedia.org/resource/Andy_Griffith`` matches ``images/Andy_Griffith.jpg`` and the
Freebase key ``/m/01m4kpp`` matches ``images/01m4kpp.png``. A sub-folder named like a local
name holds several images of that entity. Only extensions Pillow reads are considered.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


def local_name(key: str) -> str:
    """The part of an entity key that image files are named after (see module docstring)."""
    cut = max(key.rfind("/"), key.rfind("#"))
    return unquote(key[cut + 1 :])


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not path.name.startswith(".")


def scan_image_folder(folder: Path) -> list[tuple[str, Path]]:
    """(local name, absolute path) of every image directly in ``folder`` or one level below."""
    found: list[tuple[str, Path]] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            found.extend((unquote(entry.name), p.resolve()) for p in sorted(entry.iterdir()) if is_image(p))
        elif is_image(entry):
            found.append((unquote(entry.stem), entry.resolve()))
    return found
