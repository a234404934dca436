"""timm image backbones: which weights a run uses, and the model built from them.

The weights are named (:func:`resolve_weights`) before anything is loaded, because the
per-image cache and the output file are keyed by that name: a fully cached run never builds
the model. timm is imported lazily through :func:`mmalign._compat.import_timm`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmalign.atomic import file_sha256
from mmalign.errors import MMAlignError, first_line

RANDOM_WEIGHTS = "random"


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
                f"cannot load these weights into {model}: {first_line(error)}", path=weights.file
            ) from error
        if weights.tag == RANDOM_WEIGHTS:
            raise MMAlignError(f"cannot build timm model {model}: {first_line(error)}") from error
        raise MMAlignError(
            f"no pretrained weights for {model} offline ({first_line(error)}); download them on a "
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
