"""The image modality: timm backbones turn image files into entity features.

Three layers, each usable on its own:

1. :func:`extract_image_features` — image files → one pooled feature vector per distinct file
   (by content hash), through a per-(model, weights) cache so re-running computes nothing twice.
2. :func:`aggregate_entities` — per-file features → one row per entity (mean or first of its
   readable images) plus a ``present`` mask.
3. :func:`extract_workspace_images` — both of the above for a workspace's two KGs, written to
   ``features/images-<model>[-<weights tag>].safetensors`` and recorded in the manifest as the
   active image features.

The ``image`` modality builder (:func:`build`) reads the active features back, fills entities
without an image by the missing-image policy of spec §1.5 and L2-normalises the rows.

timm is imported lazily through :func:`mmalign._compat.import_timm`, so importing this module
(which the modality registry does) stays cheap and a fully cached run never loads a model.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors import safe_open
from safetensors.torch import load_file

from mmalign.atomic import file_sha256
from mmalign.device import resolve_device
from mmalign.errors import MMAlignError
from mmalign.features.base import FeatureContext, ModalityFeatures, register
from mmalign.report import SILENT, Reporter
from mmalign.run import atomic_save_tensors
from mmalign.workspace import Workspace

RANDOM_WEIGHTS = "random"
AGGREGATES = ("mean", "first")
DTYPES = {"float16": torch.float16, "float32": torch.float32}
MISSING_POLICIES = ("neighbor_mean", "random_per_entity", "zeros")
MANIFEST_KEY = "images"
CACHE_DIR = "image-cache"
SHARD_ROWS = 4096  # new features are flushed to the cache this often, so an interrupted run resumes
DOWNSCALE_FACTOR = 4  # images whose shorter side exceeds this × the input size are shrunk on decode
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


@dataclass(frozen=True)
class WeightsSource:
    """Where the backbone's weights come from, resolved before anything is computed.

    ``tag`` is what the manifest records (``hub``, ``file:<sha256>``, ``random``); ``slug`` is its
    file-name form used in the cache folder and the output file name.
    """

    tag: str
    file: Path | None = None

    @property
    def slug(self) -> str:
        """``hub``, ``random`` or ``file-<first 16 hex digits of the sha256>``."""
        kind, _, digest = self.tag.partition(":")
        return f"{kind}-{digest[:16]}" if digest else kind


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


def resolve_weights(weights: str | Path | None) -> WeightsSource:
    """Name the weights without loading the model: the cache is keyed by this tag."""
    if weights is None:
        return WeightsSource("hub")
    if str(weights) == RANDOM_WEIGHTS:
        return WeightsSource(RANDOM_WEIGHTS)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise MMAlignError("image weights file not found (give a .safetensors, .pt or .pth file)", path=path)
    return WeightsSource(f"file:{file_sha256(path)}", path.resolve())


def load_backbone(model: str, weights: WeightsSource) -> torch.nn.Module:
    """A timm model with its classifier removed (``num_classes=0``: pooled features), in eval mode.

    A weights file goes through ``pretrained_cfg_overlay=dict(file=...)``: timm then loads it
    (safetensors, or torch.load with weights_only) and drops classifier keys, which
    ``checkpoint_path`` does not do with ``num_classes=0``. Random weights are timm's own
    initialisation under seed 0, so they are reproducible (and cacheable) like real ones.
    """
    from mmalign._compat import import_timm

    timm = import_timm()
    if not model.startswith(("hf-hub:", "hf_hub:")) and not timm.is_model(model):
        raise MMAlignError(f"unknown timm model {model!r}{_close_matches(timm, model)}")
    kwargs: dict[str, Any] = {"num_classes": 0}
    if weights.file is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights.file)})
    else:
        kwargs["pretrained"] = weights.tag == "hub"
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # "random" weights must be the same every run: the cache relies on it
            network = timm.create_model(model, **kwargs)
    except Exception as error:  # timm/hub/torch raise many kinds; all mean "these weights won't load"
        if weights.file is not None:
            raise MMAlignError(
                f"cannot load these weights into {model}: {_first_line(error)}", path=weights.file
            ) from error
        if weights.tag == RANDOM_WEIGHTS:
            raise MMAlignError(f"cannot build timm model {model}: {_first_line(error)}") from error
        raise MMAlignError(
            f"no pretrained weights for {model} offline ({_first_line(error)}); download them on a "
            "networked machine (timm caches them in ~/.cache/huggingface) or pass --image-weights FILE, "
            "or --image-weights random for a demo"
        ) from error
    return network.eval()


def _close_matches(timm: Any, model: str) -> str:
    """A hint naming timm models that contain the typed name, else the most similar names."""
    architecture = model.split(".")[0]
    names = timm.list_models(f"*{architecture}*") or difflib.get_close_matches(
        architecture, timm.list_models(), n=10
    )
    if not names:
        return "; see timm.list_models() for the names"
    return "; close matches: " + ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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


class _ImageFiles(torch.utils.data.Dataset):
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
            return index, None, f"{type(error).__name__}: {_first_line(error)}"


def _collate(
    items: list[tuple[int, torch.Tensor | None, str | None]],
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    """Stack the decoded images of a batch; pass the failures through by index."""
    good = [(index, tensor) for index, tensor, _ in items if tensor is not None]
    failed = [(index, reason) for index, tensor, reason in items if tensor is None]
    stacked = torch.stack([tensor for _, tensor in good]) if good else None
    return [index for index, _ in good], stacked, failed


class FeatureCache:
    """Per-image results of one (model, weights) pair, keyed by the image file's sha256.

    A folder of shards ``shard-*.safetensors``, each holding ``sha256`` (M × 32 uint8, the raw
    digests), ``features`` (M × D float32, exact model output) and, in its metadata, the files
    that could not be decoded (``failed``: JSON hash → reason; the same bytes fail the same way,
    so a re-run need not build the model just to fail again). Shards are only ever added, each
    written atomically, so concurrent or interrupted runs never corrupt the cache.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def lookup(self, hashes: Sequence[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The cached feature vector, or the cached decode failure, of each hash that has one."""
        wanted = set(hashes)
        found: dict[str, torch.Tensor] = {}
        failed: dict[str, str] = {}
        for shard in sorted(self.folder.glob("shard-*.safetensors")):
            with safe_open(str(shard), framework="pt") as handle:
                bad = json.loads((handle.metadata() or {}).get("failed", "{}"))
                failed.update({h: reason for h, reason in bad.items() if h in wanted})
                digests = [bytes(row).hex() for row in handle.get_tensor("sha256").numpy()]
                rows = [i for i, h in enumerate(digests) if h in wanted and h not in found]
                if rows:
                    features = handle.get_tensor("features")
                    for i in rows:
                        found[digests[i]] = features[i].clone()
        return found, failed

    def add(self, features: Mapping[str, torch.Tensor], failed: Mapping[str, str]) -> None:
        """Store one shard of freshly computed features (hash → vector) and decode failures."""
        hashes = list(features)
        digests = np.frombuffer(b"".join(bytes.fromhex(h) for h in hashes), np.uint8).reshape(-1, 32)
        matrix = torch.stack([features[h].float() for h in hashes]) if hashes else torch.zeros(0, 0)
        name = f"shard-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.safetensors"
        atomic_save_tensors(
            self.folder / name,
            {"sha256": torch.from_numpy(digests.copy()), "features": matrix},
            metadata={"failed": json.dumps(dict(failed))},
        )


def cache_folder(cache_root: Path, model: str, weights: WeightsSource) -> Path:
    """``<cache_root>/<model>-<weights slug>``: one cache per (model, weights) pair."""
    return cache_root / f"{_safe_name(model)}-{weights.slug}"


def _safe_name(text: str) -> str:
    """A file-name-safe form of a model name (hub names contain ``/`` and ``:``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


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
    dataset = _ImageFiles([path for _, path in items], data_config)
    workers = default_workers() if settings.num_workers is None else settings.num_workers
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=settings.batch_size,
        num_workers=min(workers, math.ceil(len(items) / settings.batch_size)),
        collate_fn=_collate,
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
    return f"images-{_safe_name(model)}{suffix}.safetensors"


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


def fill_missing(
    features: torch.Tensor,
    present: torch.Tensor,
    policy: str = "neighbor_mean",
    neighbors: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Rows for entities without an image, by the spec §1.5 policies; returns the counts used.

    ``neighbor_mean``: mean of the raw features of imaged 1-hop neighbours, weighted by triple
    count (``neighbors`` is the N × N sparse CSR count matrix; one CSR matmul, never dense N × N);
    entities with no imaged neighbour share ONE vector drawn from N(mean, std) of the available
    features. ``random_per_entity``: an independent N(mean, std) draw per missing entity.
    ``zeros``: zero rows. Present rows are returned unchanged.
    """
    if policy not in MISSING_POLICIES:
        raise MMAlignError(f"missing_image must be one of {', '.join(MISSING_POLICIES)}, not {policy!r}")
    out = features.float().clone()
    missing = ~present
    counts = {"neighbor_mean": 0, "random": 0, "zeros": 0}
    if not missing.any():
        return out, counts
    if policy == "zeros":
        out[missing] = 0
        counts["zeros"] = int(missing.sum())
        return out, counts
    available = out[present]
    mean, std = available.mean(0), available.std(0, correction=0)
    generator = torch.Generator().manual_seed(seed)
    if policy == "random_per_entity":
        draws = torch.randn(int(missing.sum()), out.shape[1], generator=generator)
        out[missing] = mean + std * draws
        counts["random"] = int(missing.sum())
        return out, counts
    if neighbors is not None:
        adjacency = neighbors.to(torch.float32)
        mask = present.to(torch.float32).unsqueeze(1)
        sums = adjacency @ (out * mask)
        weight = (adjacency @ mask).squeeze(1)
        from_neighbors = missing & (weight > 0)
        out[from_neighbors] = sums[from_neighbors] / weight[from_neighbors].unsqueeze(1)
        missing = missing & ~from_neighbors
        counts["neighbor_mean"] = int(from_neighbors.sum())
    if missing.any():
        out[missing] = mean + std * torch.randn(out.shape[1], generator=generator)
        counts["random"] = int(missing.sum())
    return out, counts


def load_active_features(workspace: Workspace) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The manifest entry and tensors of the active image features, or None when there are none.

    Checks that the file was made for the workspace's current entity lists: a re-ingested
    workspace with a stale feature file would silently shift every row.
    """
    entry = workspace.manifest.get("features", {}).get(MANIFEST_KEY)
    if not entry:
        return None
    path = workspace.path / entry["file"]
    if not path.is_file():
        raise MMAlignError("the active image features file is missing; run `mmalign features images`", path=path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    for name in ("kg1", "kg2"):
        if metadata.get(f"{name}_entities_sha256") != entities_fingerprint(getattr(workspace, name).entities):
            raise MMAlignError(
                f"image features were extracted for other {name} entities (workspace re-ingested?); "
                "run `mmalign features images` again",
                path=path,
            )
    return entry, load_file(str(path))


@register("image")
def build(ctx: FeatureContext) -> ModalityFeatures | None:
    """The ``image`` modality: active features, missing rows filled by policy, rows L2-normalised.

    Settings read: ``missing_image`` (``neighbor_mean`` | ``random_per_entity`` | ``zeros``) and
    the context's ``seed``. Returns None when there are no image features or no entity has one.
    """
    loaded = load_active_features(ctx.workspace)
    if loaded is None:
        return None
    entry, tensors = loaded
    present = torch.cat([tensors["kg1_present"], tensors["kg2_present"]]).bool()
    if not present.any():
        return None
    raw = torch.cat([tensors["kg1"], tensors["kg2"]]).float()
    policy = ctx.config.missing_image.value
    if policy == "neighbor_mean" and ctx.neighbors is None and not present.all():
        ctx.reporter.warn("no graph given for neighbour-mean images; entities without one share a random vector")
    filled, fallback = fill_missing(raw, present, policy, ctx.neighbors, ctx.seed)
    matrix = torch.nn.functional.normalize(filled, dim=1)
    n1 = int(tensors["kg1_present"].shape[0])
    info = {
        "model": entry["model"],
        "weights": entry["weights"],
        "dim": int(matrix.shape[1]),
        "present": {"kg1": int(present[:n1].sum()), "kg2": int(present[n1:].sum())},
        "missing_image": policy,
        "fallback": fallback,
    }
    return ModalityFeatures("image", matrix, present.numpy(), info)


__all__ = [
    "FeatureCache",
    "FileFeatures",
    "ImageSettings",
    "WeightsSource",
    "aggregate_entities",
    "build",
    "extract_image_features",
    "extract_workspace_images",
    "fill_missing",
    "load_active_features",
    "load_backbone",
    "load_rgb",
    "resolve_weights",
]
