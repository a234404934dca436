"""``mmalign train``: parse options, call :func:`mmalign.train.train`, print the final table."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from mmalign.cli._app import WORKDIR_OPTION, app, configure_compute, user_errors
from mmalign.cli.console import RichReporter, stderr
from mmalign.errors import MMAlignError
from mmalign.run import resolve_run
from mmalign.train import TrainOptions, TrainResult, resume, train

_OPTION_NAMES = {f.name for f in fields(TrainOptions)}


def _load_config(path: Path) -> dict[str, Any]:
    """A JSON file of TrainOptions fields (a run's config.json works too: its "options")."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MMAlignError(f"cannot read config: {error}", path=path) from None
    data = data.get("options", data)
    unknown = sorted(set(data) - _OPTION_NAMES)
    if unknown:
        raise MMAlignError(f"unknown option {unknown[0]!r} in config", path=path)
    return data


@app.command("train")
@user_errors
def train_command(
    seeds: Optional[Path] = typer.Option(None, "--seeds", help="Seed pairs: kg1_entity<TAB>kg2_entity."),
    workdir: Path = WORKDIR_OPTION,
    valid: Optional[Path] = typer.Option(None, "--valid", help="Validation pairs (default: --valid-fraction of the seeds)."),
    valid_fraction: Optional[float] = typer.Option(None, "--valid-fraction", help="Share of seeds held out for model selection [0.1]."),
    test: Optional[Path] = typer.Option(None, "--test", help="Test pairs: reported for the selected model, never used to select it."),
    gpu: Optional[int] = typer.Option(None, "--gpu", help="Train on cuda:N (default: the CPU, all cores)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs [500]; early stopping may end sooner."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed [2023]."),
    members: Optional[int] = typer.Option(None, "--members", help="Models trained with seeds seed, seed+1, ...; their embeddings are concatenated (an ensemble; 1: one model, half the time) [2]."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of options (flags override it)."),
    resume_run: bool = typer.Option(False, "--resume", help="Continue the latest (or --run) interrupted run."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder for --resume (default: runs/latest)."),
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Skip pairs naming unknown entities (counted)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="code (the authors' code) or paper [code]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate [5e-3]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pairs per loss chunk (in-batch negatives) [3500]."),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Pairs per epoch's loss: every seed plus sampled pseudo pairs, at least as many as seeds (0: all) [14000]."),
    pseudo_per_seed: Optional[float] = typer.Option(None, "--pseudo-per-seed", help="Pseudo pairs sampled into an epoch's loss per seed pair (0: all) [0]."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout on the embeddings entering the loss [0]."),
    loss: Optional[str] = typer.Option(None, "--loss", help="nhs (Dual-AMN's normalised hard samples), infonce (paper), infonce_sym (both directions) or icl (ablation) [nhs]."),
    fusion: Optional[str] = typer.Option(None, "--fusion", help="lmf, weighted_sum (w/o low-rank) or concat."),
    adaptive_weights: Optional[bool] = typer.Option(None, "--adaptive-weights/--no-adaptive-weights", help="Entity-adaptive modality weights."),
    modality_score: Optional[str] = typer.Option(None, "--modality-score", help="shared or per_modality scorer."),
    graph_layer: Optional[str] = typer.Option(None, "--graph-layer", help="rrea or gat (ablation)."),
    attention: Optional[str] = typer.Option(None, "--attention", help="RREA edge score: relation (the paper and LoginMEA code) or full ([x_i; msg; u], the RREA code) [relation]."),
    paradigm: Optional[str] = typer.Option(None, "--paradigm", help="login, gam (graph as modality) or gum (graph upon modality)."),
    modalities: Optional[str] = typer.Option(None, "--modalities", help="Comma list of modalities to use [all available]."),
    drop: Optional[list[str]] = typer.Option(None, "--drop-modality", help="Leave out a modality (repeatable)."),
    rank: Optional[int] = typer.Option(None, "--rank", help="Low-rank fusion rank [8]."),
    dim: Optional[int] = typer.Option(None, "--dim", help="Graph and fusion width [100]."),
    modal_dim: Optional[int] = typer.Option(None, "--modal-dim", help="Per-modality embedding width [100]."),
    relation_direction: Optional[str] = typer.Option(None, "--relation-direction", help="Bag of relations: split (a relation's heads and tails in columns of their own, as RREA) or merged (one column, the spec) [split]."),
    iterative: Optional[bool] = typer.Option(None, "--iterative/--no-iterative", help="Add mutual-nearest-neighbour pseudo pairs."),
    pseudo_pool: Optional[str] = typer.Option(None, "--pseudo-pool", help="Search pseudo pairs among all non-seed entities, or only the --test pairs' (test: RREA's protocol, comparison only) [all]."),
    pseudo_score: Optional[str] = typer.Option(None, "--pseudo-score", help="Pseudo pairs: mutual nearest by csls or cosine [csls]."),
    pseudo_refresh: Optional[bool] = typer.Option(None, "--pseudo-refresh/--pseudo-accumulate", help="Each window's pseudo pairs replace the last (refresh) or join them for good (the authors' code) [refresh]."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Epochs between validations [10]."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Validations without improvement before stopping [5]."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Precision of the big dense products (loss, fusion, search): auto (bf16 only where the hardware has it natively and it probes faster), bf16 or fp32 [auto]."),
    names: Optional[str] = typer.Option(None, "--names", help="Name modality: none (the paper), recorded or recorded+iri [recorded+iri]."),
    name_encoder: Optional[str] = typer.Option(None, "--name-encoder", help="char, sbert:PATH_OR_PACKAGE, or both: char+sbert (each its own modality) [char]."),
    names_file: Optional[Path] = typer.Option(None, "--names-file", help="Extra names: entity<TAB>name for either KG."),
    direct_weight: Optional[float] = typer.Option(None, "--direct-weight", help="Weight of the names' direct block beside the fused model (0: fusion only) [1]."),
    missing_image: Optional[str] = typer.Option(None, "--missing-image", help="neighbor_mean, random_per_entity or zeros."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings, errors and the final table."),
) -> None:
    """Train LoginMEA from seed pairs; the run goes to WORKDIR/runs/<timestamp> (runs/latest)."""
    configure_compute()
    reporter = RichReporter(quiet)
    if resume_run:
        result = resume(workdir, resolve_run(workdir, run), reporter=reporter)
        stderr.print(result_table(result))
        return
    if seeds is None:
        raise MMAlignError("--seeds FILE is required (or --resume to continue a run)")
    values: dict[str, Any] = _load_config(config) if config else {}
    given = {
        "valid_fraction": valid_fraction, "epochs": epochs, "seed": seed, "members": members, "variant": variant, "lr": lr,
        "batch_size": batch_size, "max_pairs": max_pairs, "pseudo_per_seed": pseudo_per_seed, "dropout": dropout, "loss": loss, "fusion": fusion, "adaptive_weights": adaptive_weights,
        "modality_score": modality_score, "graph_layer": graph_layer, "attention": attention, "paradigm": paradigm, "rank": rank,
        "dim": dim, "modal_dim": modal_dim, "relation_direction": relation_direction, "pseudo_refresh": pseudo_refresh, "iterative": iterative, "pseudo_pool": pseudo_pool, "pseudo_score": pseudo_score, "eval_every": eval_every, "patience": patience, "precision": precision,
        "names": names, "name_encoder": name_encoder, "direct_weight": direct_weight, "missing_image": missing_image,
        "names_file": str(names_file) if names_file else None,
        "modalities": [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None,
        "device": f"cuda:{gpu}" if gpu is not None else None,
    }
    values.update({k: v for k, v in given.items() if v is not None})
    options = TrainOptions(**values)
    if drop:
        options.modalities = [m for m in options.modalities if m not in set(drop)]
    result = train(workdir, seeds, options, valid=valid, test=test, skip_unknown=skip_unknown, reporter=reporter)
    stderr.print(result_table(result))


def result_table(result: TrainResult) -> Table:
    """Validation (and test) metrics of the selected model, with time taken."""
    if result.members:
        epochs = ", ".join(f"{m.selected_epoch} of {m.epochs_run}" for m in result.members)
        title = f"run {result.run_dir.name}: {len(result.members)} members, selected epochs {epochs}"
    else:
        title = f"run {result.run_dir.name}: selected epoch {result.selected_epoch} of {result.epochs_run}"
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    for column in ("H@1", "H@5", "H@10", "MRR", "MR", "count"):
        table.add_column(column, justify="right")
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        if metrics:
            table.add_row(split, *(f"{metrics[k]:.4f}" for k in ("hits@1", "hits@5", "hits@10", "mrr")), f"{metrics['mr']:.1f}", f"{metrics['count']:,}")
    active = ", ".join(result.modalities) or "none (structure only)"
    table.caption = f"modalities: {active} · {result.seconds:.0f} s, {result.seconds_per_epoch:.2f} s/epoch"
    return table
