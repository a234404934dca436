"""Image files → model input: decoding that never holds a huge bitmap, and the batch dataset.

Decoding runs in DataLoader worker processes; a file that cannot be read comes back as a
reason, never as an exception, so one bad file costs one row, not the run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image, ImageOps

from mmalign.errors import first_line

DOWNSCALE_FACTOR = 4  # images whose shorter side exceeds this × the input size are shrunk on decode


def load_rgb(path: str | Path, min_side_limit: int) -> Image.Image:
    """Decode an image as RGB without ever holding a huge bitmap.

    JPEGs are decoded at reduced scale (``draft``) and anything whose shorter side exceeds
    ``min_side_limit`` is shrunk (``thumbnail``) before the model's own resize, so memory is
    bounded by the limit, not by the file. EXIF rotation is applied; transparency is composited
    onto white (logos in KG image sets are often transparent PNGs, which black would distort).
    """
    with warnings.catch_warnings():
        # the pixel-count guard still raises for true bombs; the warning below it is noise here
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            width, height = image.size
            scale = min_side_limit / min(width, height)
            if scale < 1:
                box = (max(1, round(width * scale)), max(1, round(height * scale)))
                image.draft(None, box)
                image.thumbnail(box)
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            return image.convert("RGB")


class ImageFiles(torch.utils.data.Dataset):
    """Decodes and transforms one file per item; unreadable files come back as reasons.

    Holds only paths and timm's data config (plain, picklable data) and builds the transform
    lazily in each worker: that keeps worker start-up cheap under fork and works under spawn,
    where the worker must run the torchvision workaround before any transform is unpickled.
    """

    def __init__(self, paths: Sequence[str], data_config: dict[str, Any]) -> None:
        self.paths = list(paths)
        self.data_config = data_config
        self.limit = DOWNSCALE_FACTOR * max(data_config["input_size"][1:])
        self._transform: Any = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        if self._transform is None:
            from mmalign._compat import import_timm

            self._transform = import_timm().data.create_transform(**self.data_config, is_training=False)
        try:
            return index, self._transform(load_rgb(self.paths[index], self.limit)), None
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
            return index, None, f"{type(error).__name__}: {first_line(error)}"


def collate(
    items: list[tuple[int, torch.Tensor | None, str | None]],
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    """Stack the decoded images of a batch; pass the failures through by index."""
    good = [(index, tensor) for index, tensor, _ in items if tensor is not None]
    failed = [(index, reason) for index, tensor, reason in items if tensor is None]
    stacked = torch.stack([tensor for _, tensor in good]) if good else None
    return [index for index, _ in good], stacked, failed
