"""Image folders: local names, per-entity sub-folders, extensions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmalign.io.images import local_name, scan_image_folder


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("http://dbpedia.org/resource/Andy_Griffith", "Andy_Griffith"),
        ("http://ex.org/onto#Thing", "Thing"),
        ("/m/01m4kpp", "01m4kpp"),
        ("alice", "alice"),
        ("http://ex.org/Caf%C3%A9", "Café"),
    ],
)
def test_local_name(key: str, name: str) -> None:
    assert local_name(key) == name


def test_scan_files_and_subfolders(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "bob").mkdir(parents=True)
    for path in ("alice.png", "Caf%C3%A9.JPG", "notes.txt", ".hidden.png", "bob/1.jpg", "bob/2.webp", "bob/x.csv"):
        (images / path).write_bytes(b"x")
    found = scan_image_folder(images)
    assert found == [
        ("Caf\u00e9", (images / "Caf%C3%A9.JPG").resolve()),
        ("alice", (images / "alice.png").resolve()),
        ("bob", (images / "bob" / "1.jpg").resolve()),
        ("bob", (images / "bob" / "2.webp").resolve()),
    ]
