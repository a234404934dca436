"""Synthetic KG pairs at any size: two KGs drawn from one hidden graph, with gold links.

Why: the real benchmarks stop at about 40k entities, while users merge KGs of 10^5-10^7
entities. This generator makes pairs of any size that look like real ones where it matters
for cost and for alignment: heavy-tailed degrees, a few relations doing most of the work,
entities without a counterpart on both sides, KGs that disagree, opaque keys.

The hidden graph has ``H = N (1 + dangling)`` entities. Each entity gets two Pareto weights
(shape ``--degree-exponent``, so degrees have a power-law tail of exponent shape + 1); a
triple's head is drawn by out-weight, its tail by in-weight and its relation from a Zipf law
over ``--relations`` types. The hidden entities are split at random into ``N (1 - dangling)``
shared ones and ``N dangling`` per KG seen by that KG alone, so each KG has exactly
``--entities`` (N) entities and a share ``--dangling`` of them has no counterpart.

Each KG then, independently:

- keeps each hidden triple between two of its entities with probability ``--keep``;
- corrupts a share ``--corrupt`` of those: the tail is replaced by a random entity of the KG;
- merges a share ``--merge`` of the relation types into other types, then names its
  relations in its own namespace and numbering, so relation names reveal nothing;
- gives every entity left without a triple one random triple, so none is lost at ingest;
- names entities ``http://kg1.example.org/resource/Q<n>`` or ``http://kg2.example.net/m.<hex>``
  from a random numbering of its own, so keys do not reveal the match.

The number of hidden triples is chosen so that each KG has about ``--degree`` relation
triples per entity. With ``--names`` every hidden entity gets a name of 1-4 pseudo-words
(Zipf-distributed, so some words are common), and each KG drops a share ``--missing-names``
of them and, each with probability ``--name-noise``, drops a token, rotates the tokens
("Smith John") and makes a typo. ``--attributes A`` adds about A integer attribute triples per
entity (Zipf over 50 attribute types), kept per KG like triples, the value off by one in KG2
with probability ``--corrupt``.

Output (``OUT/``), in the layout ``mmalign ingest OUT/kg1 OUT/kg2`` reads::

    kg1/ kg2/       --format tsv: triples.tsv [names.tsv] [attributes.tsv]
                    --format nt:  kgN.nt (names as rdfs:label, attributes as typed literals)
    links.tsv       every gold pair: kg1 IRI <TAB> kg2 IRI
    seeds.tsv       a random share --seed-share of links.tsv (30 %)
    test.tsv        the rest
    synthetic.json  the settings and what was written (counts), for benchmarks/scale.py

The same ``--seed`` and settings give byte-identical files; the drawn graph does not depend
on ``--format``, ``--names`` or ``--attributes`` (each part has its own random stream). Nothing
is kept as a Python object per triple: the graph is numpy arrays and lines are formatted and
written in blocks. The folder appears complete or not at all (written beside it, renamed).

    python benchmarks/synthetic.py OUT --entities 1M [--format tsv|nt] [--names] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

NAMESPACES = (
    {"entity": "http://kg1.example.org/resource/Q", "relation": "http://kg1.example.org/ontology/p",
     "attribute": "http://kg1.example.org/ontology/a"},
    {"entity": "http://kg2.example.net/m.", "relation": "http://kg2.example.net/prop/P",
     "attribute": "http://kg2.example.net/prop/A"},
)  # fmt: skip
"""Per KG: the key prefixes of entities, relations and attributes (different hosts and styles)."""
LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
XSD_INTEGER = "http://www.w3.org/2001/XMLSchema#integer"
ATTRIBUTE_TYPES = 50
VALUES = 10**6
"""Attribute values are integers below this."""
NAME_TOKENS = (0.2, 0.45, 0.25, 0.1)
"""Share of hidden names with 1, 2, 3 and 4 tokens."""
BLOCK = 1 << 18
"""Lines formatted and written at a time."""
FORMATS = ("tsv", "nt")


def parse_count(text: str) -> int:
    """``15k`` -> 15000, ``1M`` -> 1000000, ``2.5m`` -> 2500000, ``300`` -> 300."""
    text = text.strip().replace("_", "").replace(",", "")
    scale = {"k": 10**3, "m": 10**6}.get(text[-1:].lower(), 1)
    number = float(text[:-1] if scale > 1 else text)
    if number <= 0 or number * scale != int(number * scale):
        raise ValueError(f"not a positive whole count: {text!r}")
    return int(number * scale)


def _setting(default: object, help: str) -> object:
    """A config field with its ``--help`` text (the CLI is built from the fields)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides a generated pair; the only home of the defaults (the CLI reads them)."""

    entities: int = _setting(15_000, "entities per KG, exact: 15000, 15k, 1M")
    degree: float = _setting(5.0, "relation triples per entity in each KG (about)")
    relations: int = _setting(300, "relation types of the hidden graph")
    relation_exponent: float = _setting(1.0, "Zipf exponent of relation use: type k is used in proportion to k^-exponent")
    degree_exponent: float = _setting(1.5, "Pareto shape of the entities' out- and in-weights (degree tail exponent: shape + 1)")
    dangling: float = _setting(0.25, "share of each KG's entities without a counterpart in the other KG")
    keep: float = _setting(0.8, "probability that a KG keeps a hidden triple between two of its entities")
    corrupt: float = _setting(0.05, "share of a KG's kept triples whose tail is replaced by a random entity")
    merge: float = _setting(0.1, "share of relation types a KG merges into another of its types")
    names: bool = _setting(False, "write entity names (names.tsv, or rdfs:label in N-Triples)")
    missing_names: float = _setting(0.1, "share of a KG's entities without a name")
    name_noise: float = _setting(0.1, "probability of each of token drop, token rotation and typo, per name and KG")
    attributes: float = _setting(0.0, "integer attribute triples per hidden entity (about); 0 writes none")
    seed_share: float = _setting(0.3, "share of the gold links written to seeds.tsv (the rest to test.tsv)")
    format: str = _setting("tsv", "tsv (triples.tsv, names.tsv, attributes.tsv) or nt (one N-Triples file per KG)")
    seed: int = _setting(0, "random seed: the same seed and settings give byte-identical files")

    def __post_init__(self) -> None:
        shares = ("dangling", "keep", "corrupt", "merge", "missing_names", "name_noise", "seed_share")
        bad = [name for name in shares if not 0 <= getattr(self, name) <= 1]
        bad += [name for name in ("degree", "relation_exponent", "degree_exponent") if not getattr(self, name) > 0]
        bad += [name for name in ("entities", "relations") if getattr(self, name) < 2]
        bad += ["dangling"] * (self.dangling == 1) + ["keep"] * (self.keep == 0) + ["attributes"] * (self.attributes < 0)
        bad += ["format"] * (self.format not in FORMATS)
        if bad:
            raise ValueError(f"bad setting {bad[0]}={getattr(self, bad[0])!r}")


@dataclass
class KG:
    """One generated KG as arrays: local entity ids ``0..N-1`` and the hidden entity of each."""

    hidden: np.ndarray
    """int64 (N,): the hidden entity behind local id i."""
    triples: np.ndarray
    """int64 (T, 3): head, relation (this KG's numbering), tail; distinct, no self-loops, sorted."""
    relations: int
    """Relation names this KG uses (its relation ids are ``0..relations-1``)."""
    names: list[str | None] | None = None
    attributes: np.ndarray | None = None
    """int64 (A, 3): entity, attribute, value; distinct, sorted."""


@dataclass
class Pair:
    """Both KGs and the gold links as (kg1 local id, kg2 local id) rows, split into seeds and test."""

    kgs: tuple[KG, KG]
    links: np.ndarray
    seeds: np.ndarray
    """A random share ``seed_share`` of ``links``."""
    test: np.ndarray
    """The other links."""


# ---- drawing ------------------------------------------------------------------------------


def generate(config: SyntheticConfig) -> Pair:
    """Draw the hidden graph and both KGs (deterministic in ``config``)."""
    graph_rng, roles_rng, names_rng, attributes_rng, split_rng, *kg_seeds = np.random.SeedSequence(config.seed).spawn(7)
    n = config.entities
    dangling = round(n * config.dangling)
    shared = n - dangling
    hidden = shared + 2 * dangling
    rng = np.random.default_rng(graph_rng)
    out_weight = rng.pareto(config.degree_exponent, hidden) + 1
    in_weight = rng.pareto(config.degree_exponent, hidden) + 1
    # A hidden triple lands in a KG when both ends do, about (n / hidden)^2 of them, and a
    # share ``keep`` of those is kept: draw enough for ``degree`` triples per KG entity.
    count = round(config.degree * n / config.keep * (hidden / n) ** 2)
    heads = _draw(rng, out_weight, count)
    tails = _draw(rng, in_weight, count)
    relations = _draw(rng, np.arange(1, config.relations + 1, dtype=np.float64) ** -config.relation_exponent, count)

    order = np.random.default_rng(roles_rng).permutation(hidden)
    members = (np.sort(np.r_[order[:shared], order[shared : shared + dangling]]),
               np.sort(np.r_[order[:shared], order[shared + dangling :]]))  # fmt: skip
    kgs = []
    for seed, entity_ids in zip(kg_seeds, members):
        kg_rng = np.random.default_rng(seed)
        local = np.full(hidden, -1, dtype=np.int64)
        local[entity_ids] = kg_rng.permutation(n)  # this KG's own numbering: keys reveal nothing
        kgs.append(_project(kg_rng, config, local, heads, relations, tails, in_weight))
    if config.names:
        _add_names(np.random.default_rng(names_rng), config, kgs, hidden)
    if config.attributes:
        _add_attributes(np.random.default_rng(attributes_rng), config, kgs, hidden)
    first, second = (np.full(hidden, -1, dtype=np.int64) for _ in range(2))
    first[kgs[0].hidden], second[kgs[1].hidden] = np.arange(n), np.arange(n)
    both = (first >= 0) & (second >= 0)
    links = np.column_stack([first[both], second[both]])
    links = links[np.argsort(links[:, 0])]
    order = np.random.default_rng(split_rng).permutation(len(links))
    cut = round(len(links) * config.seed_share)
    return Pair((kgs[0], kgs[1]), links, links[order[:cut]], links[order[cut:]])


def _draw(rng: np.random.Generator, weights: np.ndarray, count: int) -> np.ndarray:
    """``count`` indices drawn with probability proportional to ``weights``, in random order.

    Counts per index from one multinomial draw, then shuffled: the same law as ``count``
    independent draws, several times faster than looking up ``count`` random numbers.
    """
    drawn = np.repeat(np.arange(len(weights)), rng.multinomial(count, weights / weights.sum()))
    rng.shuffle(drawn)
    return drawn


def _project(
    rng: np.random.Generator, config: SyntheticConfig, local: np.ndarray,
    heads: np.ndarray, relations: np.ndarray, tails: np.ndarray, in_weight: np.ndarray,
) -> KG:  # fmt: skip
    """One KG's view of the hidden triples: kept, corrupted, relations merged and renamed."""
    n = config.entities
    h, t = local[heads], local[tails]
    kept = (h >= 0) & (t >= 0) & (rng.random(len(h)) < config.keep)
    h, r, t = h[kept], relations[kept], t[kept]
    hidden_of = np.empty(n, dtype=np.int64)
    hidden_of[local[local >= 0]] = np.flatnonzero(local >= 0)
    corrupted = rng.random(len(t)) < config.corrupt
    t[corrupted] = _draw(rng, in_weight[hidden_of], int(corrupted.sum()))

    merged = rng.random(config.relations) < config.merge
    merged[0] = False  # the commonest type stays, so some type is always left to merge into
    targets = np.flatnonzero(~merged)
    into = np.arange(config.relations)
    into[merged] = targets[rng.integers(0, len(targets), int(merged.sum()))]
    names = np.full(config.relations, -1, dtype=np.int64)
    names[targets] = rng.permutation(len(targets))  # this KG's numbering of its relation types
    r = names[into[r]]

    triples = _distinct(np.column_stack([h, r, t])[h != t], (n, len(targets), n))
    linked = np.zeros(n, dtype=bool)
    linked[triples[:, 0]] = linked[triples[:, 2]] = True
    alone = np.flatnonzero(~linked)
    if len(alone):  # one random triple each, so every entity of the KG exists at ingest
        partner = (alone + rng.integers(1, n, len(alone))) % n
        like = triples[rng.integers(0, len(triples), len(alone)), 1] if len(triples) else np.zeros(len(alone), np.int64)
        extra = np.column_stack([alone, like, partner])
        triples = _distinct(np.r_[triples, extra], (n, len(targets), n))
    used = np.flatnonzero(np.bincount(triples[:, 1], minlength=len(targets)))
    renumber = np.full(len(targets), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))  # merged-away or unused types leave no gap
    triples[:, 1] = renumber[triples[:, 1]]
    return KG(hidden_of, triples, len(used))


def _distinct(rows: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Distinct ``rows`` in sorted order; column j holds values ``0 .. sizes[j] - 1``.

    Each row is packed into one int64 and sorted: many times faster than ``np.unique``'s
    hash-based path (or ``axis=0``) at 10^7 rows.
    """
    keys = np.zeros(len(rows), dtype=np.int64)
    for j, size in enumerate(sizes):
        keys = keys * size + rows[:, j]
    keys.sort()
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    out = np.empty((len(keys), len(sizes)), dtype=np.int64)
    for j in range(len(sizes) - 1, -1, -1):
        keys, out[:, j] = np.divmod(keys, sizes[j])
    return out


def _words(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` capitalised pseudo-words of 2-4 syllables (duplicates possible, as in life)."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["an", "el", "or", "is", "um"]
    picked = rng.integers(0, len(syllables), (count, 4))
    lengths = rng.integers(2, 5, count)
    return ["".join(syllables[s] for s in row[:k]).capitalize() for row, k in zip(picked.tolist(), lengths.tolist())]


def _add_names(rng: np.random.Generator, config: SyntheticConfig, kgs: list[KG], hidden: int) -> None:
    """Hidden names as token-id rows (-1 padded), then each KG's noisy copy as strings."""
    words = _words(rng, max(2_000, hidden // 4))
    zipf = np.arange(1, len(words) + 1, dtype=np.float64) ** -0.8
    lengths = _draw(rng, np.array(NAME_TOKENS), hidden) + 1
    tokens = _draw(rng, zipf, (hidden * 4)).reshape(hidden, 4)
    tokens[np.arange(4) >= lengths[:, None]] = -1
    for kg in kgs:
        rows, size = tokens[kg.hidden], lengths[kg.hidden].copy()
        n = len(rows)
        drop = (rng.random(n) < config.name_noise) & (size > 1)
        gone = (rng.random(n) * size).astype(np.int64)
        rows[drop, gone[drop]] = -1
        rows = np.take_along_axis(rows, np.argsort(rows < 0, axis=1, kind="stable"), axis=1)  # close the gaps
        size -= drop
        rotate = (rng.random(n) < config.name_noise) & (size > 1)
        shifted = (np.arange(4) + 1) % size[rotate, None]
        rows[rotate] = np.where(np.arange(4) < size[rotate, None], np.take_along_axis(rows[rotate], shifted, axis=1), -1)
        names: list[str | None] = [" ".join(words[i] for i in row if i >= 0) for row in rows.tolist()]
        typo = np.flatnonzero(rng.random(n) < config.name_noise)
        where, letters = rng.random(len(typo)), rng.integers(0, 26, len(typo))
        for i, at, letter in zip(typo.tolist(), where.tolist(), letters.tolist()):
            name = names[i]
            k = int(at * len(name))  # type: ignore[arg-type]
            names[i] = name[:k] + "abcdefghijklmnopqrstuvwxyz"[letter] + name[k + 1 :]  # type: ignore[index]
        for i in np.flatnonzero(rng.random(n) < config.missing_names).tolist():
            names[i] = None
        kg.names = names


def _add_attributes(rng: np.random.Generator, config: SyntheticConfig, kgs: list[KG], hidden: int) -> None:
    """Hidden (entity, attribute type, integer) triples; each KG keeps its share, KG2 with some values off by one."""
    count = round(config.attributes * hidden)
    entity = rng.integers(0, hidden, count)
    kind = _draw(rng, np.arange(1, ATTRIBUTE_TYPES + 1, dtype=np.float64) ** -1.0, count)
    value = rng.integers(1, VALUES, count)
    for index, kg in enumerate(kgs):
        local = np.full(hidden, -1, dtype=np.int64)
        local[kg.hidden] = np.arange(len(kg.hidden))
        e = local[entity]
        kept = (e >= 0) & (rng.random(count) < config.keep)
        v = value[kept] + (index * (rng.random(int(kept.sum())) < config.corrupt))
        rows = np.column_stack([e[kept], kind[kept], v])
        kg.attributes = _distinct(rows, (len(kg.hidden), ATTRIBUTE_TYPES, VALUES + 1))


# ---- writing ------------------------------------------------------------------------------


def write(pair: Pair, config: SyntheticConfig, out: Path) -> dict:
    """Write both KGs, the links and the split into ``out`` (complete or not at all); the counts."""
    out = Path(out)
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        keys = [_entity_keys(index, len(kg.hidden)) for index, kg in enumerate(pair.kgs)]
        counts = {}
        for index, kg in enumerate(pair.kgs):
            folder = tmp / f"kg{index + 1}"
            folder.mkdir()
            writer = _write_nt if config.format == "nt" else _write_tsv
            writer(folder, index, kg, keys[index])
            counts[f"kg{index + 1}"] = {
                "entities": len(kg.hidden),
                "relations": kg.relations,
                "relation_triples": len(kg.triples),
                "names": 0 if kg.names is None else sum(name is not None for name in kg.names),
                "attribute_triples": 0 if kg.attributes is None else len(kg.attributes),
                "dangling": len(kg.hidden) - len(pair.links),
            }
        for name, rows in (("links", pair.links), ("seeds", pair.seeds), ("test", pair.test)):
            _write_lines(tmp / f"{name}.tsv", (f"{a}\t{b}\n" for a, b in _columns(rows, keys[0], keys[1])))
        counts.update(links=len(pair.links), seeds=len(pair.seeds), test=len(pair.test))
        (tmp / "synthetic.json").write_text(json.dumps({"config": dataclasses.asdict(config), "counts": counts}, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def _entity_keys(index: int, n: int) -> np.ndarray:
    """Entity IRIs of KG ``index`` by local id: decimal ``Q<n>`` in KG1, hex ``m.<n>`` in KG2."""
    prefix = NAMESPACES[index]["entity"]
    style = "{}{:d}" if index == 0 else "{}{:x}"
    return np.array([style.format(prefix, i + 1) for i in range(n)], dtype=object)


def _columns(rows: np.ndarray, *vocabularies: np.ndarray | None) -> Iterator[tuple]:
    """Rows as tuples of strings, block by block: column j through ``vocabularies[j]`` (None: the number)."""
    for start in range(0, len(rows), BLOCK):
        block = rows[start : start + BLOCK]
        yield from zip(*(block[:, j].tolist() if v is None else v[block[:, j]] for j, v in enumerate(vocabularies)))


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        batch: list[str] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= BLOCK:
                handle.write("".join(batch))
                batch.clear()
        handle.write("".join(batch))


def _vocabulary(index: int, kind: str, size: int, wrap: Callable[[str], str] = str) -> np.ndarray:
    return np.array([wrap(f"{NAMESPACES[index][kind]}{i + 1}") for i in range(size)], dtype=object)


def _write_tsv(folder: Path, index: int, kg: KG, keys: np.ndarray) -> None:
    relations = _vocabulary(index, "relation", kg.relations)
    _write_lines(folder / "triples.tsv", (f"{h}\t{r}\t{t}\n" for h, r, t in _columns(kg.triples, keys, relations, keys)))
    if kg.names is not None:
        _write_lines(folder / "names.tsv", (f"{keys[i]}\t{name}\n" for i, name in enumerate(kg.names) if name is not None))
    if kg.attributes is not None:
        attributes = _vocabulary(index, "attribute", ATTRIBUTE_TYPES)
        _write_lines(folder / "attributes.tsv", (f"{e}\t{a}\t{v}\n" for e, a, v in _columns(kg.attributes, keys, attributes, None)))


def _write_nt(folder: Path, index: int, kg: KG, keys: np.ndarray) -> None:
    iri = "<{}>".format
    entities = np.array([iri(key) for key in keys], dtype=object)
    relations = _vocabulary(index, "relation", kg.relations, iri)
    lines: list[Iterable[str]] = [(f"{h} {r} {t} .\n" for h, r, t in _columns(kg.triples, entities, relations, entities))]
    if kg.names is not None:
        lines.append(f'{entities[i]} <{LABEL}> "{name}"@en .\n' for i, name in enumerate(kg.names) if name is not None)
    if kg.attributes is not None:
        attributes = _vocabulary(index, "attribute", ATTRIBUTE_TYPES, iri)
        rows = _columns(kg.attributes, entities, attributes, None)
        lines.append(f'{e} {a} "{v}"^^<{XSD_INTEGER}> .\n' for e, a, v in rows)
    _write_lines(folder / f"kg{index + 1}.nt", (line for part in lines for line in part))


# ---- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder (replaced if it exists)")
    for setting in dataclasses.fields(SyntheticConfig):
        flag, default, help = "--" + setting.name.replace("_", "-"), setting.default, setting.metadata["help"]
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=help)
        elif setting.name == "format":
            parser.add_argument(flag, choices=FORMATS, default=default, help=f"{help} (default {default})")
        else:
            kind = parse_count if setting.name == "entities" else type(default)
            parser.add_argument(flag, type=kind, default=default, help=f"{help} (default {default})")
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    try:
        config = SyntheticConfig(**args)
    except ValueError as error:
        parser.error(str(error))
    start = time.perf_counter()
    pair = generate(config)
    drawn = time.perf_counter() - start
    counts = write(pair, config, out)
    print(json.dumps(counts))
    print(f"{out}: drawn in {drawn:.1f} s, written in {time.perf_counter() - start - drawn:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
