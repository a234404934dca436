"""One KG folder: RDF files in any syntax, the TSV files, and images.

Recognised (all optional, but at least one triple source: an RDF file or ``triples.tsv``):
RDF files by extension (``.nt .nq .ttl .n3 .rdf .xml .owl .trig .jsonld``), ``triples.tsv``,
``attributes.tsv``, ``names.tsv``, ``images.tsv`` (each may be compressed: ``.gz .bz2 .xz``)
and an ``images/`` folder. Other files are listed as ignored (other folders are
not: ``images.tsv`` may point into them). Files are read in
name order, so entity ids do not depend on the file system's listing order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmalign.errors import MMAlignError
from mmalign.io.images import scan_image_folder
from mmalign.io.rdf import RDF_FORMATS, rdf_format, read_rdf
from mmalign.io.records import BadLines, KGBuilder
from mmalign.io.text import COMPRESSIONS, strip_compression
from mmalign.io.tsv import read_rows
from mmalign.report import SILENT, Reporter

TSV_FILES = ("triples.tsv", "attributes.tsv", "names.tsv", "images.tsv")


@dataclass
class KGFolderInput:
    """The files of one KG folder, found before anything is parsed (for hashing)."""

    folder: Path
    rdf: list[Path] = field(default_factory=list)
    tsv: dict[str, Path] = field(default_factory=dict)
    image_files: list[tuple[str, Path]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @classmethod
    def find(cls, folder: Path) -> KGFolderInput:
        """Sort the folder's files by role; no triple source at all is a clear error."""
        found = cls(folder)
        for entry in sorted(folder.iterdir()):
            name = strip_compression(entry)
            if entry.name.startswith("."):
                continue
            if entry.is_dir() and entry.name == "images":
                found.image_files = scan_image_folder(entry)
            elif entry.is_file() and name in TSV_FILES:
                if name in found.tsv:
                    raise MMAlignError(f"both {found.tsv[name].name} and {entry.name} are present; keep one", path=folder)
                found.tsv[name] = entry
            elif entry.is_file() and rdf_format(entry) is not None:
                found.rdf.append(entry)
            elif entry.is_file():
                found.ignored.append(entry.name)
        if not found.rdf and "triples.tsv" not in found.tsv:
            extensions, compressed = " ".join(RDF_FORMATS), "/".join(COMPRESSIONS)
            raise MMAlignError(
                f"no triple source: expected RDF files ({extensions}, maybe {compressed}) or triples.tsv", path=folder
            )
        return found

    def files(self) -> list[Path]:
        """Every file that ingest reads, for the manifest's hashes."""
        return [*self.rdf, *self.tsv.values(), *(path for _, path in self.image_files)]

    def read(self, bad: BadLines, reporter: Reporter = SILENT) -> KGBuilder:
        """Parse every recognised file of the folder into one builder."""
        if self.ignored:
            reporter.info(f"{self.folder}: ignoring {', '.join(self.ignored)}")
        builder = KGBuilder()
        for path in self.rdf:
            reporter.info(f"reading {path}")
            read_rdf(path, builder, bad, reporter)
        for name, path in self.tsv.items():
            reporter.info(f"reading {path}")
            if name == "triples.tsv":
                for _, (head, relation, tail) in read_rows(path, 3, bad):
                    builder.add_triple(head, relation, tail)
            elif name == "attributes.tsv":
                for _, (entity, attribute, value) in read_rows(path, 3, bad, optional_last=True):
                    builder.add_attribute(entity, attribute, value)
            elif name == "names.tsv":
                for _, (entity, text) in read_rows(path, 2, bad):
                    builder.add_name(entity, text)
            else:
                for entity, image in self._listed_images(path, bad):
                    builder.add_image(entity, image)
        builder.image_files = [(name, str(path)) for name, path in self.image_files]
        return builder

    def _listed_images(self, listing: Path, bad: BadLines) -> list[tuple[str, str]]:
        """``images.tsv`` rows: paths are relative to the KG folder and must exist."""
        found = []
        for line, (entity, relative) in read_rows(listing, 2, bad):
            path = (self.folder / relative).resolve()
            if not path.is_file():
                bad(f"image file not found: {relative}", listing, line)
                continue
            found.append((entity, str(path)))
        return found
