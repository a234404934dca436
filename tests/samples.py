"""Sample images, weights and workspaces shared by the extraction and the modality tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from mmalign.extract.images import ImageSettings
from mmalign.workspace import KGData, Workspace

MODEL = "test_resnet.r160_in1k"  # 0.37M parameters, 96-d pooled features, 160 px input
DIM = 96


def pattern(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def sample_files(folder: Path) -> dict[str, Path]:
    """Images of every kind the extractor must cope with, made with pillow."""
    out: dict[str, Path] = {}
    for i in range(4):
        out[f"rgb{i}"] = folder / f"rgb{i}.jpg"
        pattern(i).save(out[f"rgb{i}"], quality=95)
    out["copy0"] = folder / "copy-of-rgb0.jpg"  # same bytes, other name: computed once
    out["copy0"].write_bytes(out["rgb0"].read_bytes())
    out["gray"] = folder / "gray.png"
    pattern(10).convert("L").save(out["gray"])
    out["rgba"] = folder / "rgba.png"
    rgba = pattern(11).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(out["rgba"])
    out["palette"] = folder / "palette.png"
    pattern(12).convert("P").save(out["palette"], transparency=0)
    out["cmyk"] = folder / "cmyk.jpg"
    pattern(13).convert("CMYK").save(out["cmyk"])
    out["corrupt"] = folder / "corrupt.jpg"
    out["corrupt"].write_bytes(b"this is not an image at all")
    out["truncated"] = folder / "truncated.jpg"
    data = out["rgb1"].read_bytes()
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["missing"] = folder / "does-not-exist.png"
    return out


def sample_weights(folder: Path) -> Path:
    """A local checkpoint (seed 123, so unlike the 'random' weights) saved the way a user would."""
    timm = __import__("mmalign._compat", fromlist=["import_timm"]).import_timm()
    torch.manual_seed(123)
    model = timm.create_model(MODEL, pretrained=False, num_classes=0)
    path = folder / "backbone.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def settings(weights: Path | str, **kwargs: Any) -> ImageSettings:
    return ImageSettings(MODEL, weights=str(weights), **{"batch_size": 4, "num_workers": 0, **kwargs})


def small_kg(entities: list[str], **given: Any) -> KGData:
    """A KG of ``entities`` with one triple (0 r 1), no attributes, and ``names``/``images`` as given."""
    return KGData(
        entities=entities,
        relations=["r"],
        attributes=[],
        triples=np.array([[0, 0, 1]], dtype=np.int32),
        attr_triples=np.zeros((0, 2), dtype=np.int32),
        attr_values=[],
        attr_datatypes=[],
        **given,
    )


def make_workspace(path: Path, kg1_images: dict[int, list[str]], kg2_images: dict[int, list[str]], n: int = 4) -> Workspace:
    """A real workspace of two n-entity KGs with the given images."""
    kg1 = small_kg([f"a{i}" for i in range(n)], images=kg1_images)
    kg2 = small_kg([f"b{i}" for i in range(n)], images=kg2_images)
    Workspace.create(path, kg1, kg2, [], {})
    return Workspace.open(path)


def named_workspace(path: Path) -> Workspace:
    """Three entities a side named every way: recorded, by IRI only, both, or not at all.

    With ``recorded+iri``: KG1 Andy Griffith (IRI), España (recorded), Q1 (IRI); KG2 Andy
    Griffith, Spain (recorded) and a Freebase MID without a name.
    """
    kg1 = small_kg(["http://x.org/Andy_Griffith", "http://x.org/Spain", "http://x.org/Q1"], names={1: "España"})
    kg2 = small_kg(["/m/01", "/m/02", "/m/03"], names={0: "Andy Griffith", 1: "Spain"})
    Workspace.create(path, kg1, kg2, [], {})
    return Workspace.open(path)


def sample_workspace(path: Path, files: dict[str, Path]) -> Workspace:
    """Four entities a side: two with images each, one of KG1's only unreadable."""
    kg1 = {0: [str(files["rgb0"])], 1: [str(files["rgb1"]), str(files["rgb2"])], 3: [str(files["corrupt"])]}
    kg2 = {0: [str(files["copy0"])], 2: [str(files["gray"])]}
    return make_workspace(path, kg1, kg2)
