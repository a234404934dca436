"""Generate the example KG pair in this folder (deterministic; the output is committed).

Both KGs are noisy views of one hidden "world" graph, so alignment is learnable from
structure: each KG keeps a random subset of the world's edges among its own entities, adds a
few wrong edges, names relations and entities its own way, and has attributes, names and
images for only some entities. Nothing is copied from benchmark data.

- ``kg1/``: Turtle (``kg.ttl``) with Wikidata-like IRIs, typed literal attributes and
  ``rdfs:label`` names (a few in German only); ``images/`` named by IRI local name, one
  entity with a sub-folder of two images.
- ``kg2/``: TSV (``triples.tsv`` with a header, ``attributes.tsv``, ``names.tsv``,
  ``images.tsv`` pointing into ``photos/``) with Freebase-like keys.
- ``seeds.tsv`` (30% of the shared entities) and ``test.tsv`` (the rest): KG1 key, KG2 key.

Run ``python examples/make_example.py`` to regenerate (it rewrites only these files).
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SEED = 20240611
WORLD_SIZE = 600
ONLY_IN_ONE_KG = 100  # world entities that only KG1 (resp. only KG2) has; the rest are shared
KEEP_EDGE = 0.8
NOISE_EDGES = 0.03
SEED_FRACTION = 0.3
IMAGED_ENTITIES = 8

TYPES = {"person": 0.5, "city": 0.15, "org": 0.2, "film": 0.15}

# world relation: (head type, tail type, edges per head, KG1 property, KG2 relation path)
RELATIONS = [
    ("bornIn", "person", "city", 1, "birthPlace", "/people/person/place_of_birth"),
    ("worksFor", "person", "org", 1.5, "employer", "/business/employment/company"),
    ("knows", "person", "person", 3, "knows", "/people/person/acquaintance"),
    ("spouse", "person", "person", 0.4, "spouse", "/people/marriage/spouse"),
    ("actedIn", "person", "film", 2, "castMember", "/film/actor/film"),
    ("locatedIn", "org", "city", 1.5, "headquarters", "/organization/organization/headquarters"),
    ("partOf", "org", "org", 0.8, "parentOrganization", "/organization/organization/parent"),
    ("directedBy", "film", "person", 1.5, "director", "/film/film/directed_by"),
    ("filmedIn", "film", "city", 2, "filmingLocation", "/film/film/location"),
    ("twinnedWith", "city", "city", 1.5, "twinnedAdministrativeBody", "/location/location/twin"),
]

# attribute per type: (KG1 property, XSD type, KG2 attribute, value maker)
ATTRIBUTES = {
    "person": [("birthYear", "gYear", "people.person.birth_year", lambda r: r.randint(1900, 2005)),
               ("height", "double", "people.person.height_meters", lambda r: round(r.uniform(1.5, 2.05), 2))],
    "city": [("population", "integer", "location.location.population", lambda r: r.randint(2_000, 9_000_000))],
    "org": [("inception", "gYear", "organization.organization.founded", lambda r: r.randint(1800, 2020))],
    "film": [("duration", "integer", "film.film.runtime_minutes", lambda r: r.randint(75, 200))],
}

SYLLABLES = "ka lo mi ra ve sun dor tal bri en os ul fa ni qua ter zo ha ly mon".split()


@dataclass
class WorldEntity:
    id: int
    type: str
    name: str


def make_world(rng: random.Random) -> tuple[list[WorldEntity], set[tuple[int, int, int]]]:
    """Typed entities with unique names, and typed edges (head, relation index, tail)."""
    entities, names = [], set()
    types = rng.choices(list(TYPES), weights=list(TYPES.values()), k=WORLD_SIZE)
    for i, kind in enumerate(types):
        while True:
            words = 1 if kind == "city" else 2
            name = " ".join(
                "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize() for _ in range(words)
            )
            if name not in names:
                break
        names.add(name)
        entities.append(WorldEntity(i, kind, name))
    by_type = {kind: [e.id for e in entities if e.type == kind] for kind in TYPES}
    edges: set[tuple[int, int, int]] = set()
    for r, (_, head_type, tail_type, per_head, _, _) in enumerate(RELATIONS):
        tails = by_type[tail_type]
        popular = rng.sample(tails, k=max(1, len(tails) // 5))  # a few hubs, as in real KGs
        for head in by_type[head_type]:
            count = int(per_head) + (rng.random() < per_head - int(per_head))
            for _ in range(count):
                tail = rng.choice(popular if rng.random() < 0.3 else tails)
                if tail != head:
                    edges.add((head, r, tail))
    return entities, edges


def view(rng: random.Random, members: list[int], edges: set[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """One KG's edges: a random subset of the world's edges among ``members``, plus noise."""
    inside = set(members)
    among = [e for e in sorted(edges) if e[0] in inside and e[2] in inside]
    kept = [e for e in among if rng.random() < KEEP_EDGE]
    covered = {end for h, _, t in kept for end in (h, t)}
    for member in members:  # every entity keeps an edge, so every seed/test pair exists
        if member not in covered:
            own = [e for e in among if member in (e[0], e[2])]
            kept.append(rng.choice(own) if own else (member, rng.randrange(len(RELATIONS)), rng.choice(members)))
    for _ in range(int(len(kept) * NOISE_EDGES)):
        kept.append((rng.choice(members), rng.randrange(len(RELATIONS)), rng.choice(members)))
    return sorted(set(kept))


def turtle_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_kg1(folder: Path, rng: random.Random, world: list[WorldEntity], members: list[int],
              edges: list[tuple[int, int, int]]) -> dict[int, str]:
    """Turtle KG; returns world id -> IRI."""
    ids = rng.sample(range(10_000, 99_999), len(members))
    iri = {w: f"http://example.org/kg1/entity/Q{q}" for w, q in zip(members, ids)}
    lines = [
        "@prefix e: <http://example.org/kg1/entity/> .",
        "@prefix p: <http://example.org/kg1/prop/> .",
        "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .",
        "@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .",
        "",
    ]
    local = {w: "e:" + iri[w].rsplit("/", 1)[1] for w in members}
    statements: dict[int, list[str]] = {w: [] for w in members}
    for h, r, t in edges:
        statements[h].append(f"p:{RELATIONS[r][4]} {local[t]}")
    for w in members:
        entity = world[w]
        for prop, xsd, _, value in ATTRIBUTES[entity.type]:
            if rng.random() < 0.7:
                statements[w].append(f'p:{prop} "{value(rng)}"^^xsd:{xsd}')
        draw = rng.random()
        if draw < 0.6:
            statements[w].append(f"rdfs:label {turtle_string(entity.name)}@en")
        elif draw < 0.65:
            statements[w].append(f"rdfs:label {turtle_string(entity.name + 'e')}@de")
    for w in members:
        if statements[w]:
            lines.append(f"{local[w]} " + " ;\n    ".join(statements[w]) + " .")
    (folder / "kg.ttl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return iri


def write_kg2(folder: Path, rng: random.Random, world: list[WorldEntity], members: list[int],
              edges: list[tuple[int, int, int]]) -> dict[int, str]:
    """TSV KG; returns world id -> key."""
    alphabet = "0123456789bcdfghjklmnpqrstvwxyz"
    keys = {w: "/m/0" + "".join(rng.choice(alphabet) for _ in range(5)) for w in members}
    assert len(set(keys.values())) == len(keys)
    rows = ["head\trelation\ttail"] + [f"{keys[h]}\t{RELATIONS[r][5]}\t{keys[t]}" for h, r, t in edges]
    (folder / "triples.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    attributes, names = [], []
    for w in members:
        entity = world[w]
        for _, _, attribute, value in ATTRIBUTES[entity.type]:
            if rng.random() < 0.6:
                attributes.append(f"{keys[w]}\thttp://rdf.example.org/ns/{attribute}\t{value(rng)}")
        if rng.random() < 0.7:
            name = entity.name.lower() if rng.random() < 0.2 else entity.name  # another spelling
            names.append(f"{keys[w]}\t{name}")
    (folder / "attributes.tsv").write_text("\n".join(attributes) + "\n", encoding="utf-8")
    (folder / "names.tsv").write_text("\n".join(names) + "\n", encoding="utf-8")
    return keys


def picture(rng: random.Random, seed: int, variant: int) -> Image.Image:
    """A 32x32 picture whose colours and shape come from ``seed`` (the world entity), with
    per-KG jitter from ``variant``: the two KGs' images of one entity look alike."""
    base = random.Random(seed)
    background = tuple(base.randrange(256) for _ in range(3))
    colour = tuple(base.randrange(256) for _ in range(3))
    box = [base.randrange(4, 12), base.randrange(4, 12), base.randrange(20, 28), base.randrange(20, 28)]
    shift = variant * rng.randint(-2, 2)
    image = Image.new("RGB", (32, 32), background)
    shape = ImageDraw.Draw(image).ellipse if base.random() < 0.5 else ImageDraw.Draw(image).rectangle
    shape([c + shift for c in box], fill=colour)
    return image


def write_images(out: Path, rng: random.Random, shared: list[int], iri1: dict[int, str], key2: dict[int, str]) -> None:
    chosen = sorted(rng.sample(shared, IMAGED_ENTITIES))
    images1, photos2 = out / "kg1" / "images", out / "kg2" / "photos"
    images1.mkdir()
    photos2.mkdir()
    listing = []
    for n, w in enumerate(chosen):
        local = iri1[w].rsplit("/", 1)[1]
        if n == 0:  # one entity with several images: a sub-folder named after it
            (images1 / local).mkdir()
            for k in (1, 2):
                picture(rng, w * 7 + k, 0).save(images1 / local / f"{k}.png", optimize=True)
        else:
            picture(rng, w, 0).save(images1 / f"{local}.png", optimize=True)
        name = f"photo_{n:02d}.png"
        picture(rng, w if n else w * 7 + 1, 1).save(photos2 / name, optimize=True)
        listing.append(f"{key2[w]}\tphotos/{name}")
    (out / "kg2" / "images.tsv").write_text("\n".join(listing) + "\n", encoding="utf-8")


def main(out: Path = HERE) -> None:
    """Write the example into ``out`` (this folder by default)."""
    rng = random.Random(SEED)
    world, edges = make_world(rng)
    order = rng.sample(range(WORLD_SIZE), WORLD_SIZE)
    only1, only2 = order[:ONLY_IN_ONE_KG], order[ONLY_IN_ONE_KG : 2 * ONLY_IN_ONE_KG]
    shared = sorted(order[2 * ONLY_IN_ONE_KG :])
    members1, members2 = sorted(shared + only1), sorted(shared + only2)
    for name in ("kg1", "kg2"):
        shutil.rmtree(out / name, ignore_errors=True)
        (out / name).mkdir(parents=True)
    iri1 = write_kg1(out / "kg1", rng, world, rng.sample(members1, len(members1)), view(rng, members1, edges))
    key2 = write_kg2(out / "kg2", rng, world, rng.sample(members2, len(members2)), view(rng, members2, edges))
    write_images(out, rng, shared, iri1, key2)
    pairs = [f"{iri1[w]}\t{key2[w]}" for w in rng.sample(shared, len(shared))]
    cut = round(len(pairs) * SEED_FRACTION)
    (out / "seeds.tsv").write_text("\n".join(pairs[:cut]) + "\n", encoding="utf-8")
    (out / "test.tsv").write_text("\n".join(pairs[cut:]) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
