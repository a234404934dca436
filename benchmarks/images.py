"""Image feature extraction speed: images/s and peak memory per timm backbone.

    python benchmarks/images.py [--images 256] [--models resnet18 resnet50] [--batch 32]
                                [--workers N] [--gpu N]

Generates N synthetic 224-px JPEGs in a temporary folder, then extracts features from them
with each model in a fresh subprocess (so peak RSS is per model, and no model warms another's
caches), with random weights (no pretrained weights offline; speed does not depend on them)
and no feature cache. "seconds" covers the whole call (timm import, hashing, model build,
decode, forward) and "images/s" the extraction loop alone (decode + forward, as the progress bar
shows it). Peak RSS is the extracting process's own, and the largest of its DataLoader workers'.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contextlib import contextmanager
from typing import Iterator

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmark this checkout, installed or not

from mmalign.machine import machine_line  # noqa: E402
from mmalign.report import Reporter, Task  # noqa: E402


def make_images(folder: Path, count: int, size: int = 224) -> list[Path]:
    """Smooth random colour fields: JPEG-compress like photos, unlike white noise."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
        paths.append(folder / f"{i:05d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


class RateReporter(Reporter):
    """Keeps the last images/s the extraction loop reported through its progress bar."""

    rate = 0.0

    @contextmanager
    def progress(self, description: str, total: float | None = None) -> Iterator[Task]:
        reporter = self

        class Capture:
            def advance(self, amount: float = 1.0, **fields: object) -> None:
                self.update(**fields)

            def update(self, **fields: object) -> None:
                reporter.rate = float(fields.get("images/s", reporter.rate))  # type: ignore[arg-type]

        yield Capture()


def measure(model: str, folder: Path, batch: int, workers: int | None, gpu: int | None) -> dict[str, object]:
    """Run one extraction in this process and return its numbers."""
    import torch

    from mmalign.extract.images import ImageSettings, default_workers, extract_image_features

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)
    paths = sorted(folder.glob("*.jpg"))
    settings = ImageSettings(model, weights="random", batch_size=batch, num_workers=workers, gpu=gpu)
    reporter = RateReporter()
    start = time.perf_counter()
    result = extract_image_features(paths, settings, reporter=reporter)
    seconds = time.perf_counter() - start
    return {
        "model": model,
        "images": len(paths),
        "dim": result.dim,
        "seconds": seconds,
        "images/s": reporter.rate,
        "workers": default_workers() if workers is None else workers,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the library's)")
    parser.add_argument("--gpu", type=int, default=None)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one model, in a child process
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.folder, args.batch, args.workers, args.gpu)))
        return

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    passed = ["--batch", str(args.batch)]
    passed += ["--workers", str(args.workers)] if args.workers is not None else []
    passed += ["--gpu", str(args.gpu)] if args.gpu is not None else []
    device = f"cuda:{args.gpu}" if args.gpu is not None else f"cpu ({os.cpu_count()} cores)"
    print(machine_line("fp32 (timm features)"))
    print(f"{args.images} JPEGs at 224 px, batch {args.batch}, random weights, no cache, {device}")
    print(f"{'model':<12}{'images':>8}{'seconds':>9}{'images/s':>10}{'workers':>9}{'peak RSS MB':>13}{'worker RSS MB':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        make_images(Path(tmp), args.images)
        for model in args.models:
            command = [sys.executable, __file__, "--measure", model, "--folder", tmp, *passed]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            print(
                f"{row['model']:<12}{row['images']:>8}{row['seconds']:>9.1f}{row['images/s']:>10.1f}"
                f"{row['workers']:>9}{row['rss_mb']:>13.0f}{row['worker_rss_mb']:>15.0f}"
            )


if __name__ == "__main__":
    main()
