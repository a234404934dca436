"""``mmalign ingest`` and ``mmalign info``: read the KGs into a workspace, show what is there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from mmalign.cli._app import WORKDIR_OPTION, app, configure_compute, user_errors
from mmalign.cli.console import RichReporter, stderr
from mmalign.ingest import FORMAT_CHOICES, ingest
from mmalign.workspace import Workspace

_ROWS = (
    ("entities", "entities"),
    ("relations", "relations"),
    ("relation triples", "relation_triples"),
    ("attribute triples", "attribute_triples"),
    ("attributes", "attributes"),
    ("names", "names"),
    ("images", "images"),
    ("duplicates removed", "duplicate_triples"),
)


@app.command("ingest")
@user_errors
def ingest_command(
    paths: list[Path] = typer.Argument(
        ..., metavar="KG1_DIR KG2_DIR | BENCH_DIR", help="Two KG folders, or one benchmark folder.", show_default=False
    ),
    workdir: Path = WORKDIR_OPTION,
    format: str = typer.Option(
        "auto", "--format", help=f"Input layout: {', '.join(FORMAT_CHOICES)} (auto detects it from the files)."
    ),
    skip_bad_lines: bool = typer.Option(
        False, "--skip-bad-lines", help="Skip malformed lines with a counted warning instead of stopping."
    ),
    force: bool = typer.Option(
        False, "--force", help="Rebuild even if this deletes training runs made from the previous input."
    ),
    image_model: Optional[str] = typer.Option(
        None, "--image-model", help="Also extract image features with this timm model (as `mmalign features images`)."
    ),
    image_weights: Optional[str] = typer.Option(
        None, "--image-weights", help="Checkpoint file for --image-model, or 'random' (tests and demos only)."
    ),
    image_batch: int = typer.Option(64, "--image-batch", help="Images per forward pass."),
    gpu: Optional[int] = typer.Option(None, "--gpu", help="Extract image features on CUDA device N."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors."),
) -> None:
    """Read two KGs (or a benchmark folder) into the workspace; a no-op when nothing changed."""
    reporter = RichReporter(quiet)
    result = ingest(paths, workdir, format=format, skip_bad_lines=skip_bad_lines, force=force, reporter=reporter)
    if result.up_to_date and not quiet:
        stderr.print(f"workspace up to date: {workdir}", highlight=False)
    if not quiet:
        stderr.print(summary_table(result.workspace.manifest, workdir, result.seconds))
    if image_model:
        from mmalign.extract.images import ImageSettings, extract_workspace_images

        configure_compute()
        settings = ImageSettings(model=image_model, weights=image_weights, batch_size=image_batch, gpu=gpu)
        extract_workspace_images(result.workspace, settings, reporter=reporter)


@app.command("info")
@user_errors
def info_command(
    workdir: Path = WORKDIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the manifest's counts as JSON on stdout."),
) -> None:
    """Show what the workspace holds (the table ingest printed)."""
    manifest = Workspace.open(workdir).manifest
    if as_json:
        typer.echo(json.dumps(manifest["counts"], indent=2, ensure_ascii=False))
        return
    stderr.print(summary_table(manifest, workdir, manifest.get("seconds")))
    features = manifest.get("features") or {}
    if features:
        stderr.print(f"features: {', '.join(sorted(features))}", highlight=False)


def summary_table(manifest: dict[str, Any], workdir: Path, seconds: Optional[float]) -> Table:
    """Counts per KG, gold pairs and time taken, as a rich table."""
    counts = manifest["counts"]
    table = Table(title=f"workspace {workdir}", title_justify="left")
    table.add_column("")
    table.add_column("KG1", justify="right")
    table.add_column("KG2", justify="right")
    for label, key in _ROWS:
        table.add_row(label, f"{counts['kg1'].get(key, 0):,}", f"{counts['kg2'].get(key, 0):,}")
    if counts.get("links"):
        table.add_row("gold pairs (links.tsv)", f"{counts['links']:,}", "")
    if seconds is not None:
        table.caption = f"ingest took {seconds:.1f} s"
    return table
