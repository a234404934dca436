"""The documentation stays true to the code: modules named exist, settings are all listed."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from mmalign.training.config import SETTING_PATHS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SETUP_COMMANDS = ("pip install -e '.[dev,cpu,text,multilingual,faiss,scale]'", "HF_HUB_OFFLINE=1 python -m pytest -q")
README_MAX_LINES = 200


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def named_paths(text: str) -> set[str]:
    """``mmalign/...`` file and folder paths named in ``text``."""
    return set(re.findall(r"(?<![\w/.-])mmalign/[\w/]*(?:\.py|/)", text))


def named_modules(text: str) -> set[str]:
    """Dotted names ``mmalign.x.y[.Attr]`` named in ``text``."""
    return set(re.findall(r"(?<![\w./-])mmalign(?:\.\w+)+", text))


def resolves(dotted: str) -> bool:
    """Whether the longest importable prefix of ``dotted`` holds the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def test_design_names_only_existing_modules() -> None:
    text = read(DOCS / "design.md")
    paths, modules = named_paths(text), named_modules(text)
    assert paths and modules
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
    assert sorted(m for m in modules if not resolves(m)) == []


def test_design_maps_every_module() -> None:
    text = read(DOCS / "design.md")
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "mmalign").rglob("*.py"))
    assert [m for m in modules if f"`{m}`" not in text] == []


def test_readme_is_short() -> None:
    assert len(read(README).splitlines()) <= README_MAX_LINES


@pytest.mark.parametrize("command", SETUP_COMMANDS)
def test_readme_keeps_the_setup_commands(command: str) -> None:
    assert command in read(README)


def test_guide_lists_every_setting() -> None:
    text = read(DOCS / "guide.md")
    missing = [name for name, path in SETTING_PATHS.items() if f"`{name}`" not in text or f"`{path}`" not in text]
    assert missing == []


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", ["README.md", "docs/guide.md", "docs/benchmarks.md", "docs/design.md"])
def test_links_between_pages_resolve(page: str) -> None:
    source = ROOT / page
    broken = []
    for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)", read(source)):
        path = (source.parent / target) if target else source
        if not path.is_file():
            broken.append(target)
            continue
        if anchor:
            headings = re.findall(r"^#+ (.+)$", read(path), flags=re.MULTILINE)
            if anchor not in {github_anchor(h) for h in headings}:
                broken.append(f"{target}#{anchor}")
    assert broken == []
