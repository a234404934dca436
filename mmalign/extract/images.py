"""Image extraction (``mmalign ingest --image-model``, ``mmalign features images``): files → features.

Three layers, each usable on its own:

1. :func:`extract_image_features` — image files → one pooled feature vector per distinct file
   (by content hash), through a per-(model, weights) cache so re-running computes nothing twice.
2. :func:`aggregate_entities` — per-file features → one row per entity (mean or first of its
   readable images) plus a ``present`` mask.
3. :func:`extract_workspace_images` — both of the above for a workspace's two KGs, written to
   ``features/images-<model>[-<weights tag>].safetensors`` and recorded in the manifest as the
   active image features, which the ``image`` modality (:mod:`mmalign.features.images`) reads.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from mmalign.atomic import file_sha256
from mmalign.device import resolve_device
from mmalign.errors import MMAlignError
from mmalign.extract.backbone import WeightsSource, load_backbone, resolve_weights
from mmalign.extract.decode import ImageFiles, collate
from mmalign.extract.image_cache import FeatureCache, cache_folder, safe_name
from mmalign.report import SILENT, Reporter
from mmalign.run import atomic_save_tensors
from mmalign.workspace import Workspace

AGGREGATES = ("mean", "first")
DTYPES = {"float16": torch.float16, "float32": torch.float32}
MANIFEST_KEY = "images"
CACHE_DIR = "image-cache"
SHARD_ROWS = 4096  # new features are flushed to the cache this often, so an interrupted run resumes
WARN_FIRST = 5  # how many unreadable files a warning names
_FLOAT16_MAX = float(torch.finfo(torch.float16).max)


@dataclass(frozen=True)
class ImageSettings:
    """How to extract: the options shared by ``mmalign ingest`` and ``mmalign features images``.

    ``weights``: ``None`` for timm's pretrained weights (hub or its local cache), ``"random"`` for
    an untrained model (tests, demos), anything else a checkpoint file (.safetensors, .pt, .pth).
    ``num_workers``: DataLoader decode processes; ``None`` means ``min(4, cpu count)``.
    """

    model: str
    weights: str | None = None
    batch_size: int = 64
    num_workers: int | None = None
    gpu: int | None = None
    dtype: str = "float16"
    aggregate: str = "mean"

    def validate(self) -> None:
        """Reject bad values before any file is read, so mistakes cost nothing."""
        if self.batch_size < 1:
            raise MMAlignError(f"--image-batch must be at least 1, not {self.batch_size}")
        if self.num_workers is not None and self.num_workers < 0:
            raise MMAlignError(f"--image-workers must be 0 or more, not {self.num_workers}")
        if self.dtype not in DTYPES:
            raise MMAlignError(f"--image-dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.aggregate not in AGGREGATES:
            raise MMAlignError(
                f"--image-aggregate must be one of {', '.join(AGGREGATES)}, not {self.aggregate!r}"
            )


@dataclass
class FileFeatures:
    """Features of distinct image files: ``matrix`` rows in the order of ``hashes``.

    ``row_of_path`` maps every readable path to its row (files with the same content share one);
    ``failed`` lists ``(path, reason)`` for files that could not be read or decoded.
    """

    model: str
    weights: WeightsSource
    dim: int
    hashes: list[str]
    matrix: torch.Tensor
    row_of_path: dict[str, int]
    failed: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0
    computed: int = 0


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def extract_image_features(
    paths: Sequence[str | Path],
    settings: ImageSettings,
    *,
    cache_root: Path | None = None,
    reporter: Reporter = SILENT,
) -> FileFeatures:
    """Pooled features for every distinct readable file in ``paths``.

    Files are identified by content (sha256): duplicates are computed once, and with a
    ``cache_root`` every file seen before with the same model and weights is read from the cache
    instead of the network — the model is not even built when everything is cached. Unreadable
    files are listed in ``failed`` and reported as one counted warning; they never stop the run.
    """
    settings.validate()
    device = resolve_device(settings.gpu)
    weights = resolve_weights(settings.weights)
    unique_paths = list(dict.fromkeys(str(p) for p in paths))
    hash_of, failed = _hash_files(unique_paths, settings.num_workers, reporter)
    hashes = list(dict.fromkeys(hash_of.values()))
    cache = FeatureCache(cache_folder(cache_root, settings.model, weights)) if cache_root else None
    cached, bad = cache.lookup(hashes) if cache else ({}, {})
    todo = [h for h in hashes if h not in cached and h not in bad]
    computed: dict[str, torch.Tensor] = {}
    if todo:
        path_of = {h: p for p, h in reversed(hash_of.items())}  # first path with that content
        computed, new_bad = _run_model(
            [(h, path_of[h]) for h in todo], settings, weights, device, cache, reporter
        )
        bad.update(new_bad)
    failed += [(p, bad[h]) for p, h in hash_of.items() if h in bad]
    hash_of = {p: h for p, h in hash_of.items() if h not in bad}
    hashes = [h for h in hashes if h not in bad]
    vectors = {**cached, **computed}
    dim = next(iter(vectors.values())).shape[0] if vectors else 0
    matrix = torch.stack([vectors[h] for h in hashes]) if hashes else torch.zeros(0, dim)
    row_of_hash = {h: i for i, h in enumerate(hashes)}
    _warn_failed(failed, len(unique_paths), reporter)
    return FileFeatures(
        model=settings.model,
        weights=weights,
        dim=dim,
        hashes=hashes,
        matrix=matrix,
        row_of_path={p: row_of_hash[h] for p, h in hash_of.items()},
        failed=failed,
        cached=len(cached),
        computed=len(computed),
    )


def _hash_files(
    paths: Sequence[str], workers: int | None, reporter: Reporter
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """sha256 of every file, in threads (hashlib releases the GIL); missing files are failures."""

    def one(path: str) -> tuple[str, str | None, str | None]:
        try:
            return path, file_sha256(Path(path)), None
        except OSError as error:
            return path, None, f"{type(error).__name__}: {error.strerror or error}"

    hash_of: dict[str, str] = {}
    failed: list[tuple[str, str]] = []
    with reporter.progress("hashing images", total=len(paths)) as task:
        with ThreadPoolExecutor(max_workers=max(1, workers or default_workers())) as pool:
            for path, digest, reason in pool.map(one, paths):
                if digest is None:
                    failed.append((path, reason or "unreadable"))
                else:
                    hash_of[path] = digest
                task.advance()
    return hash_of, failed


@torch.inference_mode()
def _run_model(
    items: Sequence[tuple[str, str]],
    settings: ImageSettings,
    weights: WeightsSource,
    device: torch.device,
    cache: FeatureCache | None,
    reporter: Reporter,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Forward ``(hash, path)`` items through the backbone in batches; flush to the cache as it goes.

    Returns features and decode failures, both by hash.
    """
    from mmalign._compat import import_timm

    network = load_backbone(settings.model, weights).to(device)
    data_config = import_timm().data.resolve_model_data_config(network)
    dataset = ImageFiles([path for _, path in items], data_config)
    workers = default_workers() if settings.num_workers is None else settings.num_workers
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=settings.batch_size,
        num_workers=min(workers, math.ceil(len(items) / settings.batch_size)),
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    computed: dict[str, torch.Tensor] = {}
    failed: dict[str, str] = {}
    unsaved: list[str] = []  # hashes done (computed or failed) but not yet in the cache

    def flush() -> None:
        if cache and unsaved:
            cache.add({h: computed[h] for h in unsaved if h in computed}, {h: failed[h] for h in unsaved if h in failed})
        unsaved.clear()

    start = time.perf_counter()
    reporter.info(f"extracting {len(items)} images with {settings.model} ({weights.tag}) on {device}")
    with reporter.progress("image features", total=len(items)) as task:
        for indices, batch, batch_failed in loader:
            failed.update((items[i][0], reason) for i, reason in batch_failed)
            if batch is not None:
                output = network(batch.to(device, non_blocking=True)).float().cpu()
                computed.update((items[i][0], row) for i, row in zip(indices, output))
            unsaved.extend(items[i][0] for i in [*indices, *(i for i, _ in batch_failed)])
            if len(unsaved) >= SHARD_ROWS:
                flush()
            rate = (len(computed) + len(failed)) / (time.perf_counter() - start)
            task.advance(len(indices) + len(batch_failed), **{"images/s": rate})
    flush()
    return computed, failed


def _warn_failed(failed: Sequence[tuple[str, str]], total: int, reporter: Reporter) -> None:
    if failed:
        shown = "; ".join(f"{path} ({reason})" for path, reason in failed[:WARN_FIRST])
        more = f"; and {len(failed) - WARN_FIRST} more" if len(failed) > WARN_FIRST else ""
        reporter.warn(f"{len(failed)} of {total} image files could not be read and were skipped: {shown}{more}")


def aggregate_entities(
    entity_images: Mapping[int, Sequence[str]],
    n_entities: int,
    files: FileFeatures,
    how: str = "mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One row per entity (zeros where it has no readable image) and the bool ``present`` mask.

    ``mean`` averages the features of all readable images of the entity; ``first`` takes the
    first readable one in the listed order (the order the KG gave them).
    """
    if how not in AGGREGATES:
        raise MMAlignError(f"image aggregate must be one of {', '.join(AGGREGATES)}, not {how!r}")
    out = torch.zeros(n_entities, files.dim)
    present = torch.zeros(n_entities, dtype=torch.bool)
    for entity, paths in entity_images.items():
        rows = [files.row_of_path[p] for p in map(str, paths) if p in files.row_of_path]
        if rows:
            out[entity] = files.matrix[rows].mean(0) if how == "mean" else files.matrix[rows[0]]
            present[entity] = True
    return out, present


def features_file_name(model: str, weights: WeightsSource) -> str:
    """``images-<model>[-<weights slug>].safetensors``: hub weights need no suffix."""
    suffix = "" if weights.tag == "hub" else f"-{weights.slug}"
    return f"images-{safe_name(model)}{suffix}.safetensors"


def entities_fingerprint(entities: Sequence[str]) -> str:
    """Identifies the entity list a feature file was made for, so a stale file is caught."""
    return hashlib.sha256("\n".join(entities).encode()).hexdigest()


def extract_workspace_images(
    workspace: Workspace | Path,
    settings: ImageSettings,
    reporter: Reporter = SILENT,
) -> dict[str, Any]:
    """Extract image features for both KGs of a workspace and make them the active ones.

    ``workspace`` is a :class:`~mmalign.workspace.Workspace` or the path of one. Writes
    ``features/images-<model>[-<weights slug>].safetensors`` (``kg1``, ``kg2``: N × D in
    ``settings.dtype``; ``kg1_present``, ``kg2_present``: uint8) and records the returned entry
    in ``manifest["features"]["images"]``. Per-image features are cached under
    ``features/image-cache/``, so a second run with the same model and weights computes nothing.
    """
    settings.validate()
    resolve_device(settings.gpu)  # a bad --gpu fails before the workspace is read
    if not isinstance(workspace, Workspace):
        workspace = Workspace.open(workspace)
    start = time.perf_counter()
    kgs = {"kg1": workspace.kg1, "kg2": workspace.kg2}
    paths = [p for kg in kgs.values() for entity_paths in kg.images.values() for p in entity_paths]
    if not paths:
        raise MMAlignError(
            "no entity in this workspace has an image; ingest KGs with image folders first",
            path=workspace.path,
        )
    files = extract_image_features(
        paths, settings, cache_root=workspace.features_dir / CACHE_DIR, reporter=reporter
    )
    tensors: dict[str, torch.Tensor] = {}
    with_images: dict[str, int] = {}
    for name, kg in kgs.items():
        matrix, present = aggregate_entities(kg.images, len(kg.entities), files, settings.aggregate)
        if settings.dtype == "float16":
            matrix = matrix.clamp(-_FLOAT16_MAX, _FLOAT16_MAX)
        tensors[name] = matrix.to(DTYPES[settings.dtype])
        tensors[f"{name}_present"] = present.to(torch.uint8)
        with_images[name] = int(present.sum())
    file_name = features_file_name(settings.model, files.weights)
    metadata = {f"{name}_entities_sha256": entities_fingerprint(kg.entities) for name, kg in kgs.items()}
    atomic_save_tensors(workspace.features_dir / file_name, tensors, metadata=metadata)
    entry = {
        "file": (workspace.features_dir / file_name).relative_to(workspace.path).as_posix(),
        "model": settings.model,
        "weights": files.weights.tag,
        "dim": files.dim,
        "dtype": settings.dtype,
        "aggregate": settings.aggregate,
        "counts": {
            "images": {
                "ok": len(files.row_of_path),
                "failed": len(files.failed),
                "cached": files.cached,
                "computed": files.computed,
            },
            "entities_with_images": with_images,
        },
        "seconds": round(time.perf_counter() - start, 3),
    }
    workspace.record_feature(MANIFEST_KEY, entry)
    reporter.info(
        f"image features: {len(files.row_of_path)} images ({files.cached} cached, {len(files.failed)} "
        f"unreadable), entities with images kg1 {with_images['kg1']} / kg2 {with_images['kg2']} → {file_name}"
    )
    return entry
