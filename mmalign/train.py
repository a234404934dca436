"""Training LoginMEA from seed pairs: the loop, validation-based selection, checkpoints, resume.

One full-graph forward per epoch, the loss over shuffled chunks of the training pairs, one
backward over their sum and one optimiser step (the authors' step structure, with one
backward instead of one per chunk). Iterative training adds mutual-nearest-neighbour pairs
that stay mutual over a window of checks (loginmea-spec §3.4). The model is selected on the
validation split — never on test — and training stops early when validation H@1 stops
improving.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

import mmalign
from mmalign.allocator import release_freed_memory
from mmalign.device import resolve_device
from mmalign.errors import MMAlignError
from mmalign.evaluation import evaluate_pairs, gold_targets, non_seed_targets
from mmalign.features import REGISTERED_MODALITIES
from mmalign.features.base import REGISTRY, FeatureContext, ModalityFeatures
from mmalign.features.names import name_encoders
from mmalign.graph import Graph, build_graph
from mmalign.hardware import PRECISIONS, PrecisionChoice, choose_precision
from mmalign.model.encoders import prepare_input
from mmalign.model.loginmea import LoginMEA, ModelConfig
from mmalign.model.loss import LOSSES
from mmalign.pairs import read_pairs, read_run_pairs, write_pairs
from mmalign.report import SILENT, Reporter
from mmalign.atomic import atomic_write_json
from mmalign.run import (
    append_jsonl,
    atomic_save_tensors,
    load_embeddings,
    new_run,
    pairs_file,
    read_json,
)
from mmalign.search import mutual_nearest
from mmalign.workspace import Workspace

VARIANT_DEFAULTS = {
    # Architecture of the authors' released code (loginmea-spec §2 [C]) and of the paper's text
    # ([P]). Training schedule options (lr, epochs) are separate: see TrainOptions.
    "code": {"structure_branch": True, "joint_layer0": "early_concat", "relation_values": "count"},
    "paper": {"structure_branch": False, "joint_layer0": "fused", "relation_values": "binary"},
}


@dataclass
class TrainOptions:
    """Every option of a run; saved in config.json and restored by ``--resume``."""

    variant: str = "code"
    epochs: int = 500
    lr: float = 5e-3  # the paper's; the code's 5e-4 needs its 1000 epochs
    weight_decay: float = 0.01
    batch_size: int = 3500  # in-batch negatives per loss chunk
    chunks_per_step: int = 0  # loss chunks per optimiser step (0: all of an epoch's chunks, one step per epoch)
    # Pairs in an epoch's loss: every seed, then a fresh sample of the pseudo pairs up to this
    # many in all, but never fewer pseudo pairs than seeds (so iterative training goes on when
    # the seeds alone fill the cap); 0: all. An epoch's cost grows with its pairs, and late
    # DBP15K epochs carry ~17k of them: four 3,500-pair chunks instead of five gave the same
    # test H@1 over three seeds (zh_en 0.790 / ja_en 0.790 against 0.790 / 0.785) with peak RSS
    # under 2 GB in every run (up to 2.10 GB without the cap; README, Benchmarks).
    max_pairs: int = 14000
    # Pseudo pairs in an epoch's loss: at most this many per seed pair, a fresh random sample
    # each epoch (0: all). A ratio, not a count, so it scales with the seeds. With
    # --batch-size 7000 it buys twice the negatives per anchor at about today's cost per
    # epoch: DBP15K test H@1 +0.8 (zh_en) and +1.0 (ja_en), DB15K -0.5, but 2.14 GB peak RSS
    # on zh_en against the 2 GB goal, so it is not the default (README, Benchmarks).
    pseudo_per_seed: float = 0.0
    tau: float = 0.1
    dropout: float = 0.0  # on the embeddings entering the loss (RREA's output dropout)
    # nhs: Dual-AMN's normalised hard-sample loss. On zh_en (structure only, 30% seeds, 150
    # epochs) test H@1 0.765 against 0.741 for the paper's InfoNCE, at the same width.
    loss: str = "nhs"  # nhs | infonce (the paper's) | infonce_sym | icl
    seed: int = 2023
    # Independently seeded models whose embeddings are concatenated (an ensemble; see _train_run).
    # Two members: DBP15K test H@1 0.804 / 0.811 against one model's 0.789 / 0.789 on zh_en /
    # ja_en, at twice the training time (README, Benchmarks).
    members: int = 2
    valid_fraction: float = 0.1
    eval_every: int = 10
    patience: int = 5  # evaluations without a better validation H@1 before stopping
    min_epochs: int = 100  # never stop before this epoch (iterative training needs time)
    csls: int = 3
    iterative: bool = True
    # Pseudo-pairs: checks at epochs 30, 40, 50, ...; pairs mutual at both checks of a 20-epoch
    # window join at 40, 60, 80, ... On zh_en validation H@1 plateaus by epoch ~40 on the seeds
    # alone, so the spec's 50 + 50-epoch window spent 60 epochs waiting (README, Training).
    il_start: int = 20
    il_check: int = 10  # epochs between mutual-NN checks
    il_window: int = 20  # pairs must stay mutual-NN over a whole window to be added
    # Where pseudo pairs are searched: all non-seed entities (a real run; the authors' code), or
    # only the --test pairs' entities ("test": RREA's published protocol, for comparison only;
    # it uses which entities have a partner, never which partner).
    pseudo_pool: str = "all"
    # Each window's mutual pairs replace the last window's instead of joining them for good, so a
    # wrong pair leaves once the model stops agreeing with it (the spec's code only adds).
    # zh_en test H@1 0.779 against 0.765 for adding (same run otherwise; README, Training).
    pseudo_refresh: bool = True
    pseudo_score: str = "csls"  # cosine | csls (with k = csls) for the mutual-nearest-neighbour search
    # The big dense products (loss, fusion, pseudo-pair search): auto takes bfloat16 only where
    # the hardware multiplies it natively and a probe finds it faster (mmalign.hardware); an
    # emulated bfloat16 product is ~40x slower than float32 on an AVX2-only CPU.
    precision: str = "auto"  # auto | bf16 | fp32
    modalities: list[str] = field(default_factory=lambda: list(REGISTERED_MODALITIES))
    bag_size: int = 1000
    relation_values: str | None = None  # count | binary; None: the variant's
    # split: heads and tails of a relation counted in columns of their own, as RREA does. Test H@1
    # zh_en 0.791 / ja_en 0.787 / DB15K 0.662 against 0.776 / 0.777 / 0.651 for merged (the spec).
    relation_direction: str = "split"
    missing_image: str = "neighbor_mean"
    names: str = "recorded+iri"  # none gives back the paper's setting
    name_encoder: str = "char"
    names_file: str | None = None
    direct_weight: float = 1.0  # shared-space modalities (names) also enter the output directly; 0: off
    # RREA's width. The authors' 300 reached the same zh_en test H@1 (0.765 both, nhs loss,
    # 150 epochs) at 3x the time and memory of an epoch.
    dim: int = 100
    modal_dim: int = 100
    direct_dim: int = 300  # width of the names' fixed direct block (see ModelConfig.direct_dim)
    rank: int = 8
    fusion: str = "lmf"
    adaptive_weights: bool = True
    modality_score: str = "shared"
    graph_layer: str = "rrea"
    # RREA's edge score: the relation alone (the paper, LoginMEA's code) or [x_i; msg; u] (RREA's
    # code). Full: test H@1 zh_en 0.784 / ja_en 0.785 against 0.792 / 0.790 (README, Benchmarks).
    attention: str = "relation"
    paradigm: str = "login"
    structure_branch: bool | None = None  # None: the variant's
    device: str = "cpu"

    def resolved(self) -> "TrainOptions":
        """Fill the variant-dependent options left at None; unknown choices are user errors.

        Checked here, before features are built or a run folder is made, so a typo costs nothing.
        """
        if self.variant not in VARIANT_DEFAULTS:
            raise MMAlignError(f"unknown variant {self.variant!r} (choose code or paper)")
        if self.loss not in LOSSES:
            raise MMAlignError(f"unknown loss {self.loss!r} (choose {', '.join(LOSSES)})")
        for label, value, choices in (("pseudo-pair pool", self.pseudo_pool, ("all", "test")),
                                      ("relation direction", self.relation_direction, ("merged", "split")),
                                      ("relation values", self.relation_values, ("count", "binary")),
                                      ("pseudo-pair score", self.pseudo_score, ("cosine", "csls")),
                                      ("RREA attention", self.attention, ("relation", "full")),
                                      ("precision", self.precision, PRECISIONS)):
            if value is not None and value not in choices:  # None: the variant's, filled below
                raise MMAlignError(f"unknown {label} {value!r} (choose {' or '.join(choices)})")
        for flag, value, least in (("--batch-size", self.batch_size, 1), ("--max-pairs", self.max_pairs, 0), ("--members", self.members, 1),
                                   ("--pseudo-per-seed", self.pseudo_per_seed, 0)):
            if value < least:
                raise MMAlignError(f"{flag} must be at least {least}, got {value}")
        name_encoders(self.names, self.name_encoder)
        values = asdict(self)
        for key, value in VARIANT_DEFAULTS[self.variant].items():
            if key in values and values[key] is None:
                values[key] = value
        return TrainOptions(**values)

    def model_config(self) -> ModelConfig:
        defaults = VARIANT_DEFAULTS[self.variant]
        return ModelConfig(
            dim=self.dim,
            modal_dim=self.modal_dim,
            rank=self.rank,
            fusion=self.fusion,
            adaptive_weights=self.adaptive_weights,
            modality_score=self.modality_score,
            graph_layer=self.graph_layer,
            attention=self.attention,
            structure_branch=bool(self.structure_branch),
            joint_layer0=defaults["joint_layer0"],
            paradigm=self.paradigm,
            precision=self.precision,
            direct_weight=self.direct_weight,
            direct_dim=self.direct_dim,
        )


# Output weights of the direct (names) block tried at each validation; see Trainer.validate_output.
DIRECT_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


@dataclass
class Splits:
    """Pairs in the global id space (KG2 ids offset by the KG1 entity count)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray | None


@dataclass
class TrainResult:
    run_dir: Path
    selected_epoch: int | None  # None for an ensemble: see members
    valid: dict[str, float]
    test: dict[str, float] | None
    epochs_run: int  # an ensemble's: all its members' together
    seconds: float
    seconds_per_epoch: float
    modalities: dict[str, Any]
    members: list["TrainResult"] = field(default_factory=list)

    @classmethod
    def saved(cls, folder: Path) -> "TrainResult":
        """The result of a finished (member) run, from its summary.json."""
        s = read_json(folder / "summary.json")
        return cls(folder, s["selected_epoch"], s["valid"], s["test"], s["epochs_run"], s["seconds"], s["seconds_per_epoch"], s["modalities"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_splits(
    workspace: Workspace,
    seeds: Path,
    *,
    valid: Path | None,
    valid_fraction: float,
    test: Path | None,
    seed: int,
    skip_unknown: bool,
    reporter: Reporter,
) -> Splits:
    """Read the pair files and draw the validation split from the seeds when none is given."""
    offset = len(workspace.kg1.entities)
    seed_pairs = read_pairs(seeds, workspace, skip_unknown=skip_unknown, reporter=reporter)
    if valid is not None:
        valid_pairs = read_pairs(valid, workspace, skip_unknown=skip_unknown, reporter=reporter)
        train_pairs = seed_pairs
    else:
        if not 0 < valid_fraction < 1:
            raise MMAlignError(f"--valid-fraction must be between 0 and 1, got {valid_fraction}")
        order = np.random.default_rng(seed).permutation(len(seed_pairs))
        n_valid = max(1, int(round(len(seed_pairs) * valid_fraction)))
        if n_valid >= len(seed_pairs):
            raise MMAlignError(f"too few seed pairs ({len(seed_pairs)}) to hold out a validation split", path=seeds)
        valid_pairs, train_pairs = seed_pairs[order[:n_valid]], seed_pairs[order[n_valid:]]
    test_pairs = read_pairs(test, workspace, skip_unknown=skip_unknown, reporter=reporter) if test else None
    _check_disjoint(train_pairs, valid_pairs, "seeds", "validation", valid or seeds)
    if test_pairs is not None:
        _check_disjoint(np.concatenate([train_pairs, valid_pairs]), test_pairs, "seeds", "test", test)
    shift = np.array([0, offset])
    return Splits(train_pairs + shift, valid_pairs + shift, None if test_pairs is None else test_pairs + shift)


def _check_disjoint(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str, path: Path) -> None:
    for side, label in ((0, "KG1"), (1, "KG2")):
        both = np.intersect1d(a[:, side], b[:, side])
        if len(both):
            raise MMAlignError(f"{len(both):,} {label} entit{'y is' if len(both) == 1 else 'ies are'} in both the {name_a} and the {name_b} pairs; they must be disjoint", path=path)


def global_triples(workspace: Workspace) -> tuple[np.ndarray, int]:
    """Both KGs' triples in the global id space, and the number of relation ids."""
    kg1, kg2 = workspace.kg1, workspace.kg2
    second = kg2.triples.astype(np.int64) + np.array([len(kg1.entities), len(kg1.relations), len(kg1.entities)])
    return np.concatenate([kg1.triples.astype(np.int64), second]), len(kg1.relations) + len(kg2.relations)


def build_features(workspace: Workspace, graph: Graph, triples: np.ndarray, options: TrainOptions, reporter: Reporter) -> list[ModalityFeatures]:
    """Every requested modality that some entity has, in registry order."""
    unknown = [m for m in options.modalities if m not in REGISTRY]
    if unknown:
        raise MMAlignError(f"unknown modality {unknown[0]!r} (available: {', '.join(REGISTRY)})")
    ctx = FeatureContext(
        workspace=workspace,
        options=asdict(options),
        neighbors=graph.counts,
        reporter=reporter,
        n_kg1=len(workspace.kg1.entities),
        n_kg2=len(workspace.kg2.entities),
        triples=triples,
        n_relations=graph.n_relations,
    )
    built: list[ModalityFeatures] = []
    for name in options.modalities:
        features = REGISTRY[name](ctx)
        if features is None:
            reporter.info(f"modality {name}: no entity has it, skipped")
        else:
            built += features if isinstance(features, list) else [features]
    return built


class Trainer:
    """Holds the state of one run; ``fit`` trains, ``state``/``load_state`` checkpoint it."""

    def __init__(self, workspace: Workspace, splits: Splits, options: TrainOptions, run_dir: Path, reporter: Reporter = SILENT) -> None:
        self.workspace, self.splits, self.options, self.run_dir, self.reporter = workspace, splits, options, run_dir, reporter
        self.device = _device(options)
        self.precision = choose_precision(options.precision, self.device)
        seed_everything(options.seed)
        triples, n_relations = global_triples(workspace)
        self.n1 = len(workspace.kg1.entities)
        self.n_entities = self.n1 + len(workspace.kg2.entities)
        graph = build_graph(triples, self.n_entities, n_relations)
        self.features = build_features(workspace, graph, triples, options, reporter)
        self.graph = graph.to(self.device)
        self.inputs = [prepare_input(f.matrix, self.device) for f in self.features]
        direct = [m for m, f in enumerate(self.features) if f.shared_space]
        config = replace(options.model_config(), precision=self.precision.chosen)
        self.model = LoginMEA(config, [f.dim for f in self.features], self.n_entities, n_relations, direct).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.loss_fn = LOSSES[options.loss]
        self.epoch = 0
        self.pseudo = np.zeros((0, 2), dtype=np.int64)
        self.candidates: set[tuple[int, int]] = set()
        self.best_score, self.best_epoch, self.bad_evals = [-1.0, -1.0], -1, 0
        self.output_weight: float | None = None  # direct-block weight selected with the best model
        self.generator = np.random.default_rng(options.seed)

    # -- one epoch ---------------------------------------------------------------------
    def step(self) -> float:
        """One epoch: its pairs in chunks of at most ``batch_size``, ``chunks_per_step`` per update."""
        pairs = self._epoch_pairs()
        n_chunks = -(-len(pairs) // self.options.batch_size)
        chunks = np.array_split(pairs, n_chunks)  # even sizes: no small remainder chunk with few negatives
        per_step = self.options.chunks_per_step or n_chunks
        return sum(self._update(chunks[i : i + per_step]) for i in range(0, n_chunks, per_step))

    def _epoch_pairs(self) -> np.ndarray:
        pseudo = self.pseudo
        room, seeds = len(pseudo), len(self.splits.train)
        if self.options.max_pairs:
            room = min(room, max(self.options.max_pairs - seeds, seeds))
        if self.options.pseudo_per_seed:
            room = min(room, int(self.options.pseudo_per_seed * seeds))
        if room < len(pseudo):
            # The loss costs O(pairs × batch × width): past the cap, every seed pair and a fresh
            # random sample of the pseudo pairs each epoch keeps an epoch's cost flat.
            pseudo = pseudo[self.generator.choice(len(pseudo), size=room, replace=False)]
        pairs = np.concatenate([self.splits.train, pseudo])
        return pairs[self.generator.permutation(len(pairs))]

    def _update(self, chunks: list[np.ndarray]) -> float:
        """One forward, the chunks' losses, one backward through the model, one optimiser step."""
        self.model.train()
        blocks = self.model.forward_blocks(self.inputs, self.graph)
        # Gather every row the loss needs once per block: each gather's backward zero-fills an
        # N × d gradient, so one gather per block instead of one per block, side and chunk.
        rows, local = np.unique(np.concatenate(chunks), return_inverse=True)
        local = torch.from_numpy(local.reshape(-1, 2)).to(self.device)
        index = torch.from_numpy(rows).to(self.device)
        table = torch.cat([b[index] for b in blocks], dim=1)
        if self.options.dropout:
            table = torch.nn.functional.dropout(table, self.options.dropout)
        # Each chunk's loss is differentiated right away and its graph freed, then one backward
        # runs through the model: the same gradient as one backward of the summed loss, without
        # every chunk's B × B logits alive at once. A chunk's rows are leaves of their own whose
        # gradients are added into one table-sized buffer: differentiating through the gather
        # instead zero-fills and adds a whole table-sized gradient per chunk and side (measured:
        # 5-9% of a late DBP15K step, and ~190 MiB of peak RSS).
        source = table.detach().to(self.precision.dtype)
        grad = torch.zeros_like(table)
        total, start = 0.0, 0
        for size in (len(c) for c in chunks):
            chunk = local[start : start + size]
            start += size
            sides = [source.index_select(0, chunk[:, side]).requires_grad_() for side in (0, 1)]
            loss = self.loss_fn(*sides, self.options.tau).float()
            loss.backward()
            for side, rows in zip((0, 1), sides):
                grad.index_add_(0, chunk[:, side], rows.grad.to(grad.dtype))
            total += float(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        table.backward(grad)
        self.optimizer.step()
        return total

    @torch.no_grad()
    def embeddings(self) -> torch.Tensor:
        """L2-normalised embeddings of every entity (float32, on the CPU)."""
        self.model.eval()
        blocks = self.model.forward_blocks(self.inputs, self.graph)
        return torch.nn.functional.normalize(torch.cat(blocks, dim=1), dim=1).float().cpu()

    def evaluate(self, embeddings: torch.Tensor, pairs: np.ndarray) -> dict[str, float]:
        return evaluate_pairs(embeddings, embeddings, pairs, gold_targets(pairs), csls_k=self.options.csls)

    def validate(self, embeddings: torch.Tensor) -> dict[str, float]:
        candidates = non_seed_targets(np.arange(self.n1, self.n_entities), self.splits.train)
        return evaluate_pairs(embeddings, embeddings, self.splits.valid, candidates, csls_k=self.options.csls)

    def validate_output(self, embeddings: torch.Tensor) -> tuple[dict[str, float], float | None]:
        """Validation metrics at the best output weight of the direct (names) block, and that weight.

        How much the names should count against the trained model differs by dataset (how good
        and how translated the names are), and the weight that trains well need not rank best:
        on zh_en, W = 0.5 at evaluation beat the trained W = 1 on validation and on test alike
        (README, Names). Trying a few weights on validation costs a few small rankings and no
        forward pass; None when the model has no direct block.
        """
        if not self.model.direct_width:
            return self.validate(embeddings), None
        best: tuple[list[float], dict[str, float], float] | None = None
        for weight in DIRECT_WEIGHTS:
            metrics = self.validate(self.model.reweight_direct(embeddings, weight))
            key = [metrics["hits@1"], metrics["mrr"]]
            if best is None or key > best[0]:
                best = (key, metrics, weight)
        return best[1], best[2]

    def output_embeddings(self) -> torch.Tensor:
        """The selected model's embeddings with the selected direct-block weight, if any."""
        embeddings = self.embeddings()
        if self.output_weight is None or not self.model.direct_width:
            return embeddings
        return self.model.reweight_direct(embeddings, self.output_weight)

    # -- iterative training ------------------------------------------------------------
    def update_pseudo_pairs(self, embeddings: torch.Tensor) -> None:
        """Mutual nearest neighbours among entities not yet paired (loginmea-spec §3.4)."""
        o = self.options
        epoch = self.epoch + 1
        if not o.iterative or self.epoch < o.il_start or epoch % o.il_check:
            return
        used = self.splits.train if o.pseudo_refresh else np.concatenate([self.splits.train, self.pseudo])
        pool = self.splits.test if o.pseudo_pool == "test" else None
        left = np.setdiff1d(np.arange(self.n1) if pool is None else pool[:, 0], used[:, 0])
        right = np.setdiff1d(np.arange(self.n1, self.n_entities) if pool is None else pool[:, 1], used[:, 1])
        if len(left) == 0 or len(right) == 0:
            return
        csls_k = o.csls if o.pseudo_score == "csls" else 0
        rows, cols = mutual_nearest(embeddings[left], embeddings[right], precision=self.precision.chosen, csls_k=csls_k)
        found = set(zip(left[rows.numpy()].tolist(), right[cols.numpy()].tolist()))
        window_start = (epoch - o.il_check) % o.il_window == 0
        self.candidates = found if window_start or not self.candidates else self.candidates & found
        if epoch % o.il_window == 0 and self.candidates:
            added = np.asarray(sorted(self.candidates), dtype=np.int64)
            if o.pseudo_refresh:
                self.pseudo = added
                self.reporter.info(f"epoch {epoch}: {len(added):,} pseudo pairs replace the last window's")
            else:
                self.pseudo = np.concatenate([self.pseudo, added])
                self.reporter.info(f"epoch {epoch}: added {len(added):,} pseudo pairs ({len(self.pseudo):,} in all)")
            self.candidates = set()

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_state = self.optimizer.state_dict()
        scalars: dict[str, Any] = {"param_groups": opt_state["param_groups"], "steps": {}}
        for index, state in opt_state["state"].items():
            for key, value in state.items():
                if key == "step":
                    scalars["steps"][str(index)] = float(value)
                else:
                    tensors[f"optimizer.{index}.{key}"] = value
        tensors["pseudo"] = torch.from_numpy(self.pseudo)
        tensors["candidates"] = torch.tensor(sorted(self.candidates), dtype=torch.int64).reshape(-1, 2)
        atomic_save_tensors(self.run_dir / "checkpoint.safetensors", tensors)
        atomic_write_json(self.run_dir / "checkpoint.json", {
            "epoch": self.epoch, "best_score": self.best_score, "best_epoch": self.best_epoch,
            "bad_evals": self.bad_evals, "output_weight": self.output_weight, "optimizer": scalars,
            "rng": {"numpy": self.generator.bit_generator.state, "torch": torch.get_rng_state().tolist()},
        })

    def load_checkpoint(self) -> None:
        tensors = load_file(str(self.run_dir / "checkpoint.safetensors"))
        meta = read_json(self.run_dir / "checkpoint.json")
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value.to(self.device)
        for index, step in meta["optimizer"]["steps"].items():
            state.setdefault(int(index), {})["step"] = torch.tensor(step)
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
        self.pseudo = tensors["pseudo"].numpy().astype(np.int64).reshape(-1, 2)
        self.candidates = {tuple(p) for p in tensors["candidates"].tolist()}
        self.epoch, self.best_score, self.best_epoch, self.bad_evals = meta["epoch"], meta["best_score"], meta["best_epoch"], meta["bad_evals"]
        self.output_weight = meta.get("output_weight")
        self.generator.bit_generator.state = meta["rng"]["numpy"]
        torch.set_rng_state(torch.tensor(meta["rng"]["torch"], dtype=torch.uint8))

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> tuple[int, float]:
        """Train until the epoch budget or early stopping; returns (epochs run now, seconds)."""
        o = self.options
        start_epoch, started = self.epoch, time.perf_counter()
        last_h1 = float("nan")
        with self.reporter.progress("training", total=o.epochs) as task:
            task.advance(self.epoch)
            while self.epoch < o.epochs:
                loss = self.step()
                epoch = self.epoch + 1
                evaluate = epoch % o.eval_every == 0 or epoch == o.epochs
                needs_embeddings = evaluate or (o.iterative and self.epoch >= o.il_start and epoch % o.il_check == 0)
                embeddings = None
                if needs_embeddings:
                    release_freed_memory()  # the search and the ranking do not stack on the steps' fragments
                    embeddings = self.embeddings()
                    self.update_pseudo_pairs(embeddings)
                self.epoch = epoch
                if evaluate:
                    metrics, weight = self.validate_output(embeddings)
                    last_h1 = metrics["hits@1"]
                    extra = {} if weight is None else {"direct_weight": weight}
                    append_jsonl(self.run_dir / "metrics.jsonl", {"epoch": epoch, "split": "valid", "loss": loss, "pseudo_pairs": len(self.pseudo),
                                                                 "seconds": round(time.perf_counter() - started, 2), **extra, **metrics})
                    # H@1 first, MRR to break its ties: a small validation split saturates H@1.
                    score = [metrics["hits@1"], metrics["mrr"]]
                    if score > self.best_score:
                        self.best_score, self.best_epoch, self.bad_evals = score, epoch, 0
                        self.output_weight = weight
                        atomic_save_tensors(self.run_dir / "best.safetensors", self.model.state_dict())
                    else:
                        self.bad_evals += 1
                    self.save_checkpoint()
                if needs_embeddings:
                    del embeddings
                    release_freed_memory()  # nor the next steps on theirs
                task.advance(1, loss=round(loss, 4), valid_h1=last_h1, pseudo=len(self.pseudo))
                if evaluate and self.bad_evals >= o.patience and epoch >= o.min_epochs:
                    self.reporter.info(f"early stop at epoch {epoch}: validation H@1/MRR not better for {o.patience} evaluations")
                    break
        return self.epoch - start_epoch, time.perf_counter() - started


def _device(options: TrainOptions) -> torch.device:
    """The run's device, checked (a missing GPU is a user error before anything is written)."""
    return resolve_device(None if options.device == "cpu" else torch.device(options.device).index or 0)


def _config(workspace: Workspace, options: TrainOptions, seeds: Path, valid: Path | None, test: Path | None,
            precision: PrecisionChoice) -> dict[str, Any]:
    return {
        "options": asdict(options),
        "precision": precision.as_dict(),
        "seeds": str(Path(seeds).resolve()),
        "valid": str(Path(valid).resolve()) if valid else None,
        "test": str(Path(test).resolve()) if test else None,
        "workspace": str(workspace.path.resolve()),
        "data": workspace.manifest.get("sources"),
        "versions": {"mmalign": mmalign.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "threads": torch.get_num_threads(),
    }


def train(
    workdir: Path,
    seeds: Path,
    options: TrainOptions,
    *,
    valid: Path | None = None,
    test: Path | None = None,
    skip_unknown: bool = False,
    reporter: Reporter = SILENT,
) -> TrainResult:
    """Train a new run in ``workdir/runs/<timestamp>`` and return its selected metrics."""
    workspace = Workspace.open(workdir)
    options = options.resolved()
    splits = make_splits(workspace, seeds, valid=valid, valid_fraction=options.valid_fraction, test=test,
                         seed=options.seed, skip_unknown=skip_unknown, reporter=reporter)
    if options.pseudo_pool == "test" and splits.test is None:
        raise MMAlignError("--pseudo-pool test needs --test")
    precision = choose_precision(options.precision, _device(options))
    reporter.info(f"precision: {precision.chosen} ({precision.why})")
    # The options saved are those the run computes with, so a resume elsewhere repeats it.
    options = replace(options, precision=precision.chosen)
    run_dir = new_run(Path(workdir))
    reporter.info(f"run folder: {run_dir}")
    atomic_write_json(run_dir / "config.json", _config(workspace, options, seeds, valid, test, precision))
    _write_split_files(run_dir, workspace, splits)
    return _train_run(workspace, splits, options, run_dir, reporter, resuming=False)


def _train_run(workspace: Workspace, splits: Splits, options: TrainOptions, run_dir: Path, reporter: Reporter, *,
               resuming: bool) -> TrainResult:
    """One model, or ``options.members`` models whose embeddings are concatenated.

    Members share the splits and differ in their seed (``seed``, ``seed + 1``, ...), so in
    their initialisation and sampling; each is a whole run of its own in ``members/<k>/``,
    selected on validation. Concatenating unit-length embeddings averages the members'
    cosines, and independent members err on different pairs: on DBP15K two members add
    1.5-2 points of test H@1 at twice the training time (README, Benchmarks).
    """
    if options.members == 1:
        return _train_member(workspace, splits, options, run_dir, reporter, resuming=resuming)
    members = []
    for k in range(options.members):
        folder = run_dir / "members" / str(k)
        if resuming and (folder / "summary.json").is_file():
            members.append(TrainResult.saved(folder))
            continue
        folder.mkdir(parents=True, exist_ok=True)
        member = replace(options, seed=options.seed + k, members=1)
        reporter.info(f"members/{k}: model {k + 1} of {options.members} (seed {member.seed})")
        members.append(_train_member(workspace, splits, member, folder, reporter, resuming=resuming))
        # The finished member's final evaluation left free pages in the heap; handed back before
        # the next member builds its graph and features, so the two do not stack (zh_en peak RSS
        # at the hand-over: 2,037 MiB without this, in a sampled trace; 1,675 MiB for one model).
        release_freed_memory()
    return _finish_ensemble(splits, options, run_dir, members)


def _train_member(workspace: Workspace, splits: Splits, options: TrainOptions, folder: Path, reporter: Reporter, *,
                  resuming: bool) -> TrainResult:
    trainer = Trainer(workspace, splits, options, folder, reporter)
    label = f"members/{folder.name}" if folder.parent.name == "members" else folder.name
    if resuming and (folder / "checkpoint.safetensors").is_file():
        trainer.load_checkpoint()
        reporter.info(f"resuming {label} at epoch {trainer.epoch}")
    elif resuming:
        reporter.info(f"{label} has no checkpoint yet: starting it from epoch 0")
    return _finish(trainer, *trainer.fit())


# What runs saved before an option existed did, where that differs from today's default.
_BEFORE_OPTION = {"pseudo_refresh": False, "relation_direction": "merged", "members": 1}


def saved_options(saved: dict[str, Any]) -> TrainOptions:
    """A run's options from its config.json, as that run trained even if defaults changed since."""
    known = {f.name for f in fields(TrainOptions)}
    values = {**_BEFORE_OPTION, **{k: v for k, v in saved.items() if k in known}}
    values.setdefault("direct_dim", values.get("dim", TrainOptions.dim))  # was tied to dim
    return TrainOptions(**values)


def resume(workdir: Path, run_dir: Path, *, reporter: Reporter = SILENT) -> TrainResult:
    """Continue an interrupted run from its last checkpoint (same options, same data)."""
    config = read_json(run_dir / "config.json")
    workspace = Workspace.open(workdir)
    if config.get("data") != workspace.manifest.get("sources"):
        raise MMAlignError("the workspace's data changed since this run started; start a new run instead of resuming", path=run_dir)
    options = saved_options(config["options"])
    splits = _read_split_files(run_dir, workspace)
    return _train_run(workspace, splits, options, run_dir, reporter, resuming=True)


def _write_split_files(run_dir: Path, workspace: Workspace, splits: Splits) -> None:
    offset = np.array([0, len(workspace.kg1.entities)])
    for name in ("train", "valid", "test"):
        pairs = getattr(splits, name)
        if pairs is not None:
            write_pairs(pairs_file(run_dir, name), pairs - offset, workspace)


def _read_split_files(run_dir: Path, workspace: Workspace) -> Splits:
    offset = np.array([0, len(workspace.kg1.entities)])

    def load(name: str) -> np.ndarray | None:
        pairs = read_run_pairs(pairs_file(run_dir, name), workspace)
        return None if pairs is None else pairs + offset

    return Splits(load("train"), load("valid"), load("test"))


def _finish(trainer: Trainer, epochs_run: int, seconds: float) -> TrainResult:
    """Load the best validation model, write embeddings, test metrics and summary.json."""
    run_dir, options = trainer.run_dir, trainer.options
    release_freed_memory()
    best = run_dir / "best.safetensors"
    if best.is_file():
        trainer.model.load_state_dict(load_file(str(best)))
    embeddings = trainer.output_embeddings()
    valid = trainer.validate(embeddings)
    test = trainer.evaluate(embeddings, trainer.splits.test) if trainer.splits.test is not None else None
    if test is not None:
        append_jsonl(run_dir / "metrics.jsonl", {"epoch": trainer.best_epoch, "split": "test", **test})
    atomic_save_tensors(run_dir / "embeddings.safetensors", {"kg1": embeddings[: trainer.n1], "kg2": embeddings[trainer.n1 :]})
    modalities = {f.name: {"dim": f.dim, "present_kg1": int(f.present[: trainer.n1].sum()),
                           "present_kg2": int(f.present[trainer.n1 :].sum()), **f.info} for f in trainer.features}
    built = {f.modality for f in trainer.features}
    skipped = [m for m in options.modalities if m not in built]
    summary = {
        "selected_epoch": trainer.best_epoch,
        "epochs_run": trainer.epoch,
        "valid": valid,
        "test": test,
        "modalities": modalities,
        "skipped_modalities": skipped,
        "pseudo_pairs": int(len(trainer.pseudo)),
        "direct_weight": None if trainer.output_weight is None else {"trained": options.direct_weight, "selected": trainer.output_weight},
        "seconds": round(seconds, 2),
        "seconds_per_epoch": round(seconds / max(epochs_run, 1), 4),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    return TrainResult(run_dir, trainer.best_epoch, valid, test, trainer.epoch, seconds, summary["seconds_per_epoch"], modalities)


def _finish_ensemble(splits: Splits, options: TrainOptions, run_dir: Path, members: list[TrainResult]) -> TrainResult:
    """Concatenate the members' embeddings; validation/test metrics, embeddings and summary of the whole.

    The members' embeddings are copied one at a time into one N × ΣD matrix, normalised in
    place: loading them all and concatenating per KG held three copies at once, and with the
    test ranking on top the run's peak RSS rose above a single model's (zh_en: 1,963 MiB).
    The heap was already trimmed after the last member trained (``_train_run``).
    """
    embeddings, n1 = None, 0
    for k, member in enumerate(members):
        kg1, kg2 = load_embeddings(member.run_dir)
        if embeddings is None:
            n1, width = len(kg1), kg1.shape[1]
            embeddings = torch.empty(n1 + len(kg2), width * len(members))
        embeddings[:n1, k * width : (k + 1) * width] = kg1
        embeddings[n1:, k * width : (k + 1) * width] = kg2
        del kg1, kg2
    embeddings.div_(torch.linalg.vector_norm(embeddings, dim=1, keepdim=True).clamp_min_(1e-12))
    candidates = non_seed_targets(np.arange(n1, len(embeddings)), splits.train)
    valid = evaluate_pairs(embeddings, embeddings, splits.valid, candidates, csls_k=options.csls)
    test = evaluate_pairs(embeddings, embeddings, splits.test, gold_targets(splits.test), csls_k=options.csls) if splits.test is not None else None
    atomic_save_tensors(run_dir / "embeddings.safetensors", {"kg1": embeddings[:n1], "kg2": embeddings[n1:]})
    seconds, epochs = sum(m.seconds for m in members), sum(m.epochs_run for m in members)
    summary = {
        "members": [{"seed": options.seed + k, **read_json(m.run_dir / "summary.json")} for k, m in enumerate(members)],
        "selected_epoch": [m.selected_epoch for m in members],
        "epochs_run": [m.epochs_run for m in members],
        "valid": valid,
        "test": test,
        "modalities": members[0].modalities,
        "seconds": round(seconds, 2),
        "seconds_per_epoch": round(seconds / max(epochs, 1), 4),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    return TrainResult(run_dir, None, valid, test, epochs, seconds, summary["seconds_per_epoch"], members[0].modalities, members)
