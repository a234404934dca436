"""``mmalign link``'s output: TSV, N-Triples (``owl:sameAs``) or the OAEI Alignment format (RDF/XML).

- TSV: ``kg1_entity, kg2_entity, confidence, band`` after a header, accepted and review rows
  (every row with ``--all``: rejected ones name their best candidate, or none with an empty
  kg2_entity, and band ``reject``), confidences with 6 decimals.
- N-Triples: one ``<kg1> owl:sameAs <kg2> .`` per accepted link.
- Alignment (the Alignment API's RDF/XML, level 0): one ``Cell`` per accepted or review link,
  relation ``=``, the confidence as ``measure`` (xsd:float); type ``??`` (one-to-one, partial)
  or ``?*`` (``--many``: a KG2 entity may have several partners).

The RDF formats need IRIs: an entity key that is not an absolute IRI is an error naming it,
unless ``--base-iri`` gives a prefix for such keys (the key percent-encoded after it). Every
IRI is checked before the first line is produced, so a bad key leaves no half-written output.
"""

from __future__ import annotations

from typing import Iterable, Iterator
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

import pyoxigraph

from mmalign.errors import MMAlignError
from mmalign.links.config import BANDS, Band, LinkConfig, LinkFormat
from mmalign.links.linker import Links

LINK_HEADER = "kg1_entity\tkg2_entity\tconfidence\tband\n"
SAME_AS = "http://www.w3.org/2002/07/owl#sameAs"
ALIGNMENT_NS = "http://knowledgeweb.semanticweb.org/heterogeneity/alignment#"
XSD_FLOAT = "http://www.w3.org/2001/XMLSchema#float"
LINES_PER_CHUNK = 20000
IRI_SAFE = "/:#?&=;@!$'()*+,~-._%[]"
"""Characters a key keeps as they are after ``--base-iri`` (the rest is percent-encoded)."""


def render(links: Links, config: LinkConfig) -> Iterator[str]:
    """The output in ``config.format``, in chunks of text."""
    if config.format is LinkFormat.TSV:
        return tsv(links, config.include_rejected)
    if config.format is LinkFormat.NT:
        return ntriples(links, config.base_iri)
    return alignment(links, config.base_iri)


def tsv(links: Links, include_rejected: bool) -> Iterator[str]:
    """The header, then one row per entity in the bands written, in entity order."""
    yield LINK_HEADER
    bands = tuple(BANDS) if include_rejected else (Band.ACCEPT, Band.REVIEW)
    rows = links.rows(bands)
    for start in range(0, len(rows), LINES_PER_CHUNK):
        out = []
        for row in rows[start : start + LINES_PER_CHUNK].tolist():
            target = int(links.kg2[row])
            kg2 = links.kg2_keys[target] if target >= 0 else ""
            out.append(f"{links.kg1_keys[links.kg1[row]]}\t{kg2}\t{links.confidence[row]:.6f}\t{BANDS[links.band[row]].value}\n")
        yield "".join(out)


def ntriples(links: Links, base_iri: str | None) -> Iterator[str]:
    """``<kg1> owl:sameAs <kg2> .`` per accepted link (IRIs checked first)."""
    pairs = _iri_pairs(links, links.rows((Band.ACCEPT,)), base_iri)
    same_as = f"<{SAME_AS}>"
    return _chunks(f"<{a}> {same_as} <{b}> .\n" for a, b, _ in pairs)


def alignment(links: Links, base_iri: str | None) -> Iterator[str]:
    """The Alignment API's RDF/XML with one Cell per accepted or review link (IRIs checked first)."""
    cells = _iri_pairs(links, links.rows((Band.ACCEPT, Band.REVIEW)), base_iri)
    head = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<rdf:RDF xmlns="{ALIGNMENT_NS}"\n'
        '         xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"\n'
        '         xmlns:xsd="http://www.w3.org/2001/XMLSchema#">\n'
        "<Alignment>\n"
        "  <xml>yes</xml>\n"
        "  <level>0</level>\n"
        f"  <type>{'?*' if links.many else '??'}</type>\n"
        + "".join(
            f"  <{name}>\n    <Ontology rdf:about={quoteattr(iri)}>\n      <location>{escape(iri)}</location>\n"
            f"    </Ontology>\n  </{name}>\n"
            for name, iri in (("onto1", links.onto1), ("onto2", links.onto2))
        )
    )
    body = (
        f"  <map>\n    <Cell>\n      <entity1 rdf:resource={quoteattr(a)}/>\n"
        f"      <entity2 rdf:resource={quoteattr(b)}/>\n      <relation>=</relation>\n"
        f'      <measure rdf:datatype="{XSD_FLOAT}">{confidence:.6f}</measure>\n    </Cell>\n  </map>\n'
        for a, b, confidence in cells
    )
    return _chunks([head], body, ["</Alignment>\n</rdf:RDF>\n"])


def _chunks(*parts: Iterable[str]) -> Iterator[str]:
    buffer: list[str] = []
    for part in parts:
        for text in part:
            buffer.append(text)
            if len(buffer) >= LINES_PER_CHUNK:
                yield "".join(buffer)
                buffer = []
    yield "".join(buffer)


def _iri_pairs(links: Links, rows: Iterable[int], base_iri: str | None) -> list[tuple[str, str, float]]:
    """(KG1 IRI, KG2 IRI, confidence) of ``rows``, every IRI checked."""
    return [
        (iri(links.kg1_keys[links.kg1[row]], "KG1", base_iri), iri(links.kg2_keys[links.kg2[row]], "KG2", base_iri),
         float(links.confidence[row]))
        for row in rows
    ]


def iri(key: str, side: str, base_iri: str | None) -> str:
    """``key`` as an absolute IRI: itself when it is one, else ``base_iri`` + the key percent-encoded."""
    try:
        return pyoxigraph.NamedNode(key).value
    except ValueError:
        if base_iri is None:
            raise MMAlignError(
                f"{side} entity {key!r} is not an absolute IRI, which RDF output needs; "
                "give --base-iri PREFIX to turn such keys into PREFIX + key"
            ) from None
    joined = base_iri + quote(key, safe=IRI_SAFE)
    try:
        return pyoxigraph.NamedNode(joined).value
    except ValueError as error:
        raise MMAlignError(f"{side} entity {key!r}: --base-iri gives {joined!r}, not an IRI ({error})") from None
