"""The ``image`` modality: the workspace's active image features, ready for training.

Extraction (timm backbones, decoding, the per-image cache) is an ingest-time step in
:mod:`mmalign.extract.images`; this builder only reads what it wrote (the file the manifest's
``features.images`` entry names), fills entities without an image by the missing-image policy
of spec §1.5 and L2-normalises the rows. It never writes to the workspace, so training cannot
change what a later run sees.
"""

from __future__ import annotations

from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from mmalign.errors import MMAlignError
from mmalign.extract.images import MANIFEST_KEY, entities_fingerprint
from mmalign.features.base import FeatureContext, ModalityFeatures, register
from mmalign.workspace import Workspace

MISSING_POLICIES = ("neighbor_mean", "random_per_entity", "zeros")


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
