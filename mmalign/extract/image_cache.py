"""The per-image feature cache: one folder of append-only shards per (model, weights) pair.

Keyed by the image file's content, so a renamed or copied file is never computed twice and a
re-run (or an interrupted one, resumed) reads what it already has instead of building the model.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from safetensors import safe_open

from mmalign.extract.backbone import WeightsSource
from mmalign.run import atomic_save_tensors


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
    return cache_root / f"{safe_name(model)}-{weights.slug}"


def safe_name(text: str) -> str:
    """A file-name-safe form of a model name (hub names contain ``/`` and ``:``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)
