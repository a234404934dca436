"""``mmalign link``: a match or none for every non-seed KG1 entity, with a calibrated confidence."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mmalign.atomic import atomic_write_bytes
from mmalign.cli._app import WORKDIR_OPTION, app, configure_compute, user_errors
from mmalign.cli.console import RichReporter
from mmalign.cli.predict import RUN_OPTION, write_stdout
from mmalign.links import LinkConfig, LinkFormat, link
from mmalign.links.config import ACCEPT_PRECISION
from mmalign.links.formats import render
from mmalign.links.prior import Prior

DEFAULTS = LinkConfig()


@app.command("link")
@user_errors
def link_command(
    workdir: Path = WORKDIR_OPTION,
    run: Optional[Path] = RUN_OPTION,
    accept: Optional[float] = typer.Option(
        None, "--accept", metavar="P",
        help=f"Accept links with confidence ≥ P (default: the threshold chosen on validation for precision ≥ {ACCEPT_PRECISION}).",
    ),
    review: float = typer.Option(DEFAULTS.review, "--review", metavar="P", help="Links below --accept but ≥ P go to review."),
    many: bool = typer.Option(False, "--many", help="Let several KG1 entities link to one KG2 entity (default: one-to-one)."),
    top_k: int = typer.Option(DEFAULTS.top_k, "--top-k", help="Candidates per entity the one-to-one matching may fall back on."),
    format_: LinkFormat = typer.Option(
        DEFAULTS.format, "--format", help="tsv (accept and review rows), nt (owl:sameAs, accepted links), alignment (OAEI RDF/XML, accept and review)."
    ),
    include_rejected: bool = typer.Option(False, "--all", help="TSV: also the rejected entities (band reject)."),
    base_iri: Optional[str] = typer.Option(None, "--base-iri", help="nt/alignment: prefix for keys that are not absolute IRIs."),
    prior: Prior = typer.Option(
        DEFAULTS.prior, "--prior",
        help="degree: an entity's prior chance of a counterpart follows the seeds' share at its degree "
             "(seeds a random sample of the matches); flat: the same for every entity.",
    ),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here (atomically) instead of stdout."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors on stderr."),
) -> None:
    """Link every non-seed KG1 entity to its KG2 match or to none; TSV (or RDF) on stdout.

    Confidences are probabilities calibrated on the run's validation pairs (kept in the run's
    links/calibration.json); the log says the estimated share of entities without a match.
    """
    config = LinkConfig(accept=accept, review=review, many=many, top_k=top_k, format=format_,
                        include_rejected=include_rejected, base_iri=base_iri, prior=prior)
    configure_compute()
    chunks = render(link(workdir, run, config, reporter=RichReporter(quiet)), config)
    if output is None:
        write_stdout(chunks)
    else:
        atomic_write_bytes(output, "".join(chunks).encode("utf-8"))
