"""``mmalign predict`` and ``mmalign evaluate``: ranked candidates as TSV, metrics as a table.

``evaluate --links FILE`` scores a link file (``mmalign link``'s TSV) instead of the run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

import typer
from rich.table import Table

from mmalign.cli._app import WORKDIR_OPTION, app, configure_compute, user_errors
from mmalign.cli.console import RichReporter, stderr
from mmalign.errors import MMAlignError
from mmalign.evaluation import RankMethod
from mmalign.links import evaluate_links
from mmalign.predict import Direction, evaluate, predict
from mmalign.search import ListSides

RUN_OPTION = typer.Option(None, "--run", help="Run folder, or its name under runs/ (default: runs/latest).")


@app.command("predict")
@user_errors
def predict_command(
    workdir: Path = WORKDIR_OPTION,
    run: Optional[Path] = RUN_OPTION,
    top_k: int = typer.Option(10, "--top-k", min=1, help="Candidates per entity (with --one-to-one: list depth)."),
    ranking: Optional[RankMethod] = typer.Option(
        None, "--ranking", help="sinkhorn or csls (then --csls applies). Default: the run's setting (sinkhorn).",
    ),
    csls: int = typer.Option(
        0, "--csls", min=0,
        help="With --ranking csls: CSLS with this neighbourhood size (3 in training); 0: cosine, about twice as fast.",
    ),
    sinkhorn_sides: Optional[ListSides] = typer.Option(
        None, "--sinkhorn-sides",
        help="With Sinkhorn: both sides' lists, or the queries' only (one search; pair with --sinkhorn-lists 100; "
        "less accurate on weak models). Default: the run's setting (both).",
    ),
    sinkhorn_lists: Optional[int] = typer.Option(
        None, "--sinkhorn-lists", min=1, help="With Sinkhorn: candidates kept per list. Default: the run's setting (50).",
    ),
    one_to_one: bool = typer.Option(
        False, "--one-to-one", help="Print a 1:1 matching (greedy by score over the top-k lists), one row per pair."
    ),
    include_seeds: bool = typer.Option(False, "--include-seeds", help="Also rank seed entities, against all entities."),
    direction: Direction = typer.Option(Direction.KG1_TO_KG2, "--direction", help="Which KG's entities are queried."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors on stderr."),
) -> None:
    """Rank KG2 candidates for every non-seed KG1 entity; TSV on stdout.

    Columns: kg1_entity, kg2_entity, score, rank (kg1 first in both directions).
    """
    configure_compute()
    result = predict(
        workdir, run, top_k=top_k, csls_k=csls, ranking=ranking, sinkhorn_sides=sinkhorn_sides,
        sinkhorn_lists=sinkhorn_lists, one_to_one=one_to_one, include_seeds=include_seeds, direction=direction,
        reporter=RichReporter(quiet),
    )
    if result.test_metrics and not quiet:
        stderr.print(metrics_table("this run's test metrics (training)", result.test_metrics))
    write_stdout(result.lines())


@app.command("evaluate")
@user_errors
def evaluate_command(
    gold: Path = typer.Option(..., "--gold", help="Gold pairs: kg1_entity<TAB>kg2_entity per line.", show_default=False),
    workdir: Path = WORKDIR_OPTION,
    run: Optional[Path] = RUN_OPTION,
    all_candidates: bool = typer.Option(
        False, "--all-candidates", help="Rank against every KG2 entity; default: only the gold targets, as in the papers."
    ),
    csls: Optional[int] = typer.Option(
        None, "--csls", min=0, help="CSLS neighbourhood size; 0: cosine. Default: the run's setting (3), as in training."
    ),
    ranking: Optional[RankMethod] = typer.Option(
        None, "--ranking", help="sinkhorn or csls (then --csls applies). Default: the run's setting, as in training.",
    ),
    skip_unknown: bool = typer.Option(
        False, "--skip-unknown", help="Skip gold pairs naming entities the workspace lacks (counted), instead of stopping."
    ),
    links: Optional[Path] = typer.Option(
        None, "--links", help="Score this link file (mmalign link's TSV) instead of the run: precision, recall, F1, ECE."
    ),
    many: bool = typer.Option(False, "--many", help="With --links: a KG1 entity may have several rows."),
    as_json: bool = typer.Option(False, "--json", help="Also print the metrics as JSON on stdout."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors on stderr."),
) -> None:
    """H@1, H@5, H@10, MRR and MR of the run on gold pairs: a table on stderr.

    With --links FILE: precision, recall and F1 of the link file per band, and its calibration.
    """
    if links is not None:
        if all_candidates or csls is not None or ranking is not None or run is not None:
            raise MMAlignError(
                "--all-candidates, --csls, --ranking and --run rank a run; with --links the file is scored as it is"
            )
        scored = evaluate_links(workdir, links, gold, many=many, skip_unknown=skip_unknown, reporter=RichReporter(quiet))
        if not quiet:
            stderr.print(link_table(f"{links.name} against {gold.name}", scored))
            stderr.print(calibration_table(scored))
        if as_json:
            write_stdout([json.dumps(scored) + "\n"])
        return
    if many:
        raise MMAlignError("--many applies to --links only")
    configure_compute()
    metrics = evaluate(
        workdir, run, gold, all_candidates=all_candidates, csls_k=csls, ranking=ranking, skip_unknown=skip_unknown,
        reporter=RichReporter(quiet),
    )
    if not quiet:
        candidates = "all KG2 entities" if all_candidates else "gold targets"
        stderr.print(metrics_table(f"{gold.name}, candidates: {candidates}", metrics))
    if as_json:
        write_stdout([json.dumps(metrics) + "\n"])


def metrics_table(title: str, metrics: dict[str, Any]) -> Table:
    """H@k as fractions, MRR, MR and the pair count, as in the JSON."""
    table = Table(title=title, title_justify="left")
    for column in ("H@1", "H@5", "H@10", "MRR", "MR", "count"):
        table.add_column(column, justify="right")
    table.add_row(
        *(f"{metrics[key]:.4f}" for key in ("hits@1", "hits@5", "hits@10", "mrr")),
        f"{metrics['mr']:.1f}",
        f"{metrics['count']:,}",
    )
    return table


def link_table(title: str, scored: dict[str, Any]) -> Table:
    """Links, correct, precision, recall and F1 per band group, as in the JSON."""
    table = Table(title=f"{title}: {scored['entities']:,} KG1 entities, {scored['gold_pairs']:,} gold pairs",
                  title_justify="left")
    for column in ("band", "links", "correct", "precision", "recall", "F1"):
        table.add_column(column, justify="left" if column == "band" else "right")
    for group in scored["bands"]:
        table.add_row(group["band"], f"{group['links']:,}", f"{group['correct']:,}",
                      *(_fraction(group[key]) for key in ("precision", "recall", "f1")))
    return table


def calibration_table(scored: dict[str, Any]) -> Table:
    """Confidence bins against observed precision, with ECE in the title."""
    ece = scored["ece"]
    table = Table(title=f"calibration (ECE {_fraction(ece)})", title_justify="left")
    for column in ("confidence", "links", "mean confidence", "precision"):
        table.add_column(column, justify="right")
    for row in scored["calibration"]:
        closing = "]" if row["high"] == 1 else ")"
        table.add_row(f"[{row['low']:.1f}, {row['high']:.1f}{closing}", f"{row['count']:,}",
                      _fraction(row["confidence"]), _fraction(row["precision"]))
    return table


def _fraction(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def write_stdout(chunks: Iterable[str]) -> None:
    """Write UTF-8 text to stdout; a reader that stops early (``| head``) ends it quietly.

    After a broken pipe, stdout is pointed at /dev/null so the interpreter's final flush
    does not raise again; the command then exits 0, as the data it was asked for went out
    as far as the reader wanted.
    """
    out = sys.stdout.buffer
    try:
        for chunk in chunks:
            out.write(chunk.encode("utf-8"))
        out.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
