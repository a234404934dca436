"""The training loop of one model: epochs of chunked contrastive steps, validation, pseudo pairs.

An epoch trains on every seed pair and a sample of the pseudo pairs, shuffled and cut into
even chunks of at most ``batch_size`` pairs (each pair's in-batch negatives). A step runs
one full-graph forward, the loss of its chunks and one backward through the model
(``chunks_per_step`` chunks per step; 0: the whole epoch in one step, the authors' step
structure with one backward instead of one per chunk). Partitioned (``schedule.partitions``),
a step runs one forward, loss and backward per part and one optimiser step
(:mod:`mmalign.training.partitions`).

Under ``torchrun`` each rank computes the loss of its share of a step's chunks, the gradients
are summed over the ranks, and rank 0 alone searches, validates and writes
(:mod:`mmalign.training.distributed`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from mmalign.allocator import release_freed_memory, returning_freed_memory
from mmalign.hardware import PrecisionChoice
from mmalign.model.loginmea import LoginMEA
from mmalign.model.loss import LOSSES
from mmalign.report import SILENT, Reporter
from mmalign.run import append_jsonl, atomic_save_tensors
from mmalign.training import distributed
from mmalign.training.checkpoint import save_checkpoint
from mmalign.training.config import TrainConfig
from mmalign.training.inputs import Inputs
from mmalign.training.partitions import Part, Partition
from mmalign.training.pseudo import PseudoLabeller
from mmalign.evaluation import Metrics
from mmalign.search.ann import use_ann
from mmalign.training.selection import Reading, Selector
from mmalign.training.splits import Splits
from mmalign.training.unpaired import UnpairedLists, read_validation, unpaired_entities, unpaired_lists

BEST = "best.safetensors"
METRICS = "metrics.jsonl"


class Trainer:
    """One model's training state in its folder; :meth:`fit` trains, ``checkpoint`` saves and loads it."""

    def __init__(self, model: LoginMEA, inputs: Inputs, splits: Splits, config: TrainConfig, folder: Path,
                 precision: PrecisionChoice, device: torch.device, reporter: Reporter = SILENT,
                 partition: Partition | None = None, hand_over: bool = False) -> None:
        """``partition``: the parts the steps run on (``schedule.partitions`` > 1), else the whole graph;
        ``hand_over``: the next member starts with this one's final pseudo pairs (``warm_start``),
        so the epoch training stops at still searches."""
        self.model, self.inputs, self.splits, self.config, self.folder = model, inputs, splits, config, folder
        self.partition, self.hand_over = partition, hand_over
        self.precision, self.device, self.reporter = precision, device, reporter
        schedule = config.schedule
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
        self.loss_fn = LOSSES[schedule.loss]
        self.pseudo = PseudoLabeller(config.pseudo, config.selection.csls, precision.chosen, config.compute.pseudo_ann_from, reporter)
        self.selector = Selector(config.selection, names_validation=splits.names_validation)
        self.generator = np.random.default_rng(config.seed)
        self.epoch = 0
        self.reading = self._reading()

    def _reading(self) -> Reading:
        """The validation reading: ``selection.reading``, ``auto`` resolved (see :class:`Reading`)."""
        reading = self.config.selection.reading
        if reading is not Reading.AUTO:
            return reading
        left, right = unpaired_entities(self.splits.train, self.inputs.n1, self.inputs.n_entities)
        shared = (self.partition is None and not self.model.direct_width and not self.splits.names_validation
                  and not use_ann(len(left), len(right), self.config.compute.pseudo_ann_from))
        return Reading.SINKHORN if shared else Reading.CSLS

    # -- one epoch ---------------------------------------------------------------------
    def step(self) -> float:
        """One epoch: its pairs in even chunks of at most ``batch_size``, ``chunks_per_step`` per update.

        Partitioned, each part's pairs are chunked on their own (a chunk's negatives are from its
        part) and the parts' chunks follow each other in part order.
        """
        schedule = self.config.schedule
        pairs = self._epoch_pairs()
        groups = [(None, pairs)] if self.partition is None else self.partition.group(pairs)
        work: list[tuple[Part | None, np.ndarray]] = []
        for part, own in groups:
            n_chunks = -(-len(own) // schedule.batch_size)
            # even sizes: no small remainder chunk with few negatives
            work += [(part, chunk) for chunk in np.array_split(own, n_chunks)] if n_chunks else []
        per_step = schedule.chunks_per_step or len(work)
        return sum(self._update(work[i : i + per_step]) for i in range(0, len(work), per_step))

    def _epoch_pairs(self) -> np.ndarray:
        """The seeds (a fresh sample of ``max_pairs`` of them when there are more) and a fresh sample of the pseudo pairs, shuffled."""
        schedule = self.config.schedule
        pseudo, seeds = self.pseudo.pairs, self.splits.train
        if schedule.max_pairs and len(seeds) > schedule.max_pairs:
            # Many seeds (bootstrapped from names, or a big seed file) would make every epoch
            # grow with them; a fresh sample each epoch still shows every seed over a few epochs.
            seeds = seeds[np.sort(self.generator.choice(len(seeds), size=schedule.max_pairs, replace=False))]
        room = len(pseudo)
        if schedule.max_pairs:
            room = min(room, max(schedule.max_pairs - len(seeds), len(seeds)))
        if schedule.pseudo_per_seed:
            room = min(room, int(schedule.pseudo_per_seed * len(seeds)))
        if room < len(pseudo):
            # The loss costs O(pairs × batch × width): past the cap, the seeds and a fresh
            # random sample of the pseudo pairs each epoch keeps an epoch's cost flat.
            pseudo = pseudo[self.generator.choice(len(pseudo), size=room, replace=False)]
        pairs = np.concatenate([seeds, pseudo])
        return pairs[self.generator.permutation(len(pairs))]

    def _update(self, work: list[tuple[Part | None, np.ndarray]]) -> float:
        """Each part's forward, its chunks' losses and its backward, then one optimiser step.

        The whole graph is one part (``None``). Under torchrun each rank computes its share of
        the chunks (and skips the parts it has none of); the gradients are summed after.
        """
        self.model.train()
        mine = set(distributed.my_chunks(len(work)))
        total, start = 0.0, 0
        while start < len(work):
            part = work[start][0]
            end = start
            while end < len(work) and work[end][0] is part:
                end += 1
            if self.partition is None or mine & set(range(start, end)):
                total += self._part_loss(part, [chunk for _, chunk in work[start:end]], {i - start for i in mine})
            start = end
        if distributed.active() and self.partition is not None:
            # A rank that skipped every part has no gradients; the sum needs every rank's tensors.
            for parameter in self.model.parameters():
                if parameter.requires_grad and parameter.grad is None:
                    parameter.grad = torch.zeros_like(parameter)
        total = distributed.all_reduce_gradients(self.model.parameters(), total, self.device)
        self.optimizer.step()
        # Dropped now, not before the next step: the search and validation that may follow
        # need the room (the entity table's gradient is N × d, 0.8 GB at 1M entities a side).
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def _part_loss(self, part: Part | None, chunks: list[np.ndarray], mine: set[int]) -> float:
        """The forward over ``part`` (or the whole graph), the losses of chunks ``mine``, the backward."""
        schedule = self.config.schedule
        if part is None:
            blocks = self.model.forward_blocks(self.inputs.matrices, self.inputs.graph)
        else:
            entities = torch.from_numpy(part.entities).to(self.device)
            blocks = self.model.forward_blocks(part.matrices, part.graph, entities)
            chunks = [part.local(chunk) for chunk in chunks]
        # Gather every row the loss needs once per block: each gather's backward zero-fills an
        # N × d gradient, so one gather per block instead of one per block, side and chunk.
        # index_select, not indexing: its backward adds the rows (index_add) where indexing's
        # runs a slower accumulating index_put; with unique rows both give the same bits.
        rows, local = np.unique(np.concatenate(chunks), return_inverse=True)
        local = torch.from_numpy(local.reshape(-1, 2)).to(self.device)
        index = torch.from_numpy(rows).to(self.device)
        table = torch.cat([b.index_select(0, index) for b in blocks], dim=1)
        if schedule.dropout:
            table = torch.nn.functional.dropout(table, schedule.dropout)
        # Each chunk's loss is differentiated right away and its graph freed, then one backward
        # runs through the model: the same gradient as one backward of the summed loss, without
        # every chunk's B × B logits alive at once. A chunk's rows are leaves of their own whose
        # gradients are added into one table-sized buffer: differentiating through the gather
        # instead zero-fills and adds a whole table-sized gradient per chunk and side.
        source = table.detach().to(self.precision.dtype)
        grad = torch.zeros_like(table)
        total, start = 0.0, 0
        for i, size in enumerate(len(c) for c in chunks):
            chunk = local[start : start + size]
            start += size
            if i not in mine:
                continue
            sides = [source.index_select(0, chunk[:, side]).requires_grad_() for side in (0, 1)]
            loss = self.loss_fn(*sides, schedule.tau).float()
            loss.backward()
            for side, leaf in zip((0, 1), sides):
                grad.index_add_(0, chunk[:, side], leaf.grad.to(grad.dtype))
            total += float(loss.detach())
        table.backward(grad)
        return total

    # -- embeddings and validation -----------------------------------------------------
    @torch.no_grad()
    def embeddings(self) -> torch.Tensor:
        """L2-normalised embeddings of every entity (float32, on the CPU).

        The whole-graph forward sets partitioned training's peak, so its output is laid out
        first and each block is copied into its columns as soon as the model yields it, then
        dropped: the forward holds the output, the block the next layer reads and that layer's
        temporaries, not every block and their concatenation (at 1M entities a side each
        block is 0.8 GB, the output 4.8 GB). Rows are normalised in place (the same arithmetic
        as ``normalize``).
        """
        self.model.eval()
        joined = torch.empty(self.inputs.n_entities, self.model.width, device=self.device)
        start = 0
        for block in self.model.iter_blocks(self.inputs.matrices, self.inputs.graph):
            joined[:, start : start + block.shape[1]] = block
            start += block.shape[1]
            del block
        joined.div_(joined.norm(2, 1, keepdim=True).clamp_min(1e-12))
        return joined.float().cpu()

    def output_embeddings(self) -> torch.Tensor:
        """The embeddings with the selected direct-block weight, if the model has a direct block."""
        embeddings = self.embeddings()
        weight = self.selector.output_weight
        if weight is None or not self.model.direct_width:
            return embeddings
        return self.model.reweight_direct(embeddings, weight)

    def unpaired_lists(self, embeddings: torch.Tensor) -> UnpairedLists:
        """The unpaired entities' lists, long enough for Sinkhorn and the pseudo-pair search."""
        length = max(self.config.ranking.sinkhorn_lists, self.pseudo.list_length)
        return unpaired_lists(embeddings, self.splits.train, self.inputs.n1, length, self.precision.dtype)

    def measure(self, embeddings: torch.Tensor, lists: UnpairedLists | None = None) -> Metrics:
        """Validation metrics of ``embeddings`` by the run's reading; ``lists``: their
        :meth:`unpaired_lists`, when at hand."""
        config = self.config
        return read_validation(self.reading, embeddings, self.splits, self.inputs.n1, config.ranking,
                               config.selection.csls, self.precision.dtype, lists)

    def validate(self, embeddings: torch.Tensor, lists: UnpairedLists | None = None) -> tuple[Metrics, float | None]:
        """Validation metrics at the direct block's best output weight, and that weight
        (:meth:`Selector.validate`); ``lists``: :meth:`unpaired_lists` of ``embeddings``, when at hand."""
        def measure(candidate: torch.Tensor) -> Metrics:
            return self.measure(candidate, lists if candidate is embeddings else None)

        reweight = self.model.reweight_direct if self.model.direct_width else None
        return self.selector.validate(embeddings, measure, reweight)

    # -- the loop ----------------------------------------------------------------------
    def _check(self, epoch: int, loss: float, started: float, evaluate: bool, search: bool) -> tuple[float | None, str | None]:
        """After ``epoch``: the whole-graph forward, the validation and the pseudo-pair search due.

        Returns the validation H@1 when validated and why training stops now, if it does.
        Validation runs before the search so that the epoch the stopping rule ends training at
        skips the search: nothing trains on its pairs, unless ``hand_over`` passes them to the
        next member. (The budget's last epoch still searches: its checkpoint stays the one a
        longer budget would have written there.) Rank 0 alone searches and validates; the
        other ranks take its pairs and metrics. The forward and validation allocate their big
        buffers once, and take them from mmap so they leave no heap fragments; the search
        allocates a buffer per block, which the heap serves warm (from mmap every block
        page-faults anew).
        """
        main = distributed.is_main()
        with returning_freed_memory():
            embeddings = self.embeddings() if main else None
        h1, reason, extra, lists = None, None, {}, None
        if evaluate:
            with returning_freed_memory():
                if main and self.reading is Reading.SINKHORN:
                    lists = self.unpaired_lists(embeddings)
                metrics, weight = distributed.broadcast_object(self.validate(embeddings, lists) if main else None)
            h1 = metrics["hits@1"]
            extra = {"reading": self.reading.value, **({} if weight is None else {"direct_weight": weight})}
            if self.selector.observe(epoch, metrics, weight) and main:
                atomic_save_tensors(self.folder / BEST, self.model.state_dict())
            reason = self.selector.stop_reason(epoch)
        if search and (self.hand_over or not reason):
            if main:
                part_of = None if self.partition is None else self.partition.part_of
                self.pseudo.update(embeddings, epoch, self.splits.train, self.inputs.n1, self.inputs.n_entities,
                                   self.splits.test, part_of, lists)
            self.pseudo.pairs, self.pseudo.recent = distributed.broadcast_object((self.pseudo.pairs, self.pseudo.recent))
        self.epoch = epoch
        if evaluate and main:
            append_jsonl(self.folder / METRICS, {"epoch": epoch, "split": "valid", "loss": loss, "pseudo_pairs": len(self.pseudo.pairs),
                                                 "seconds": round(time.perf_counter() - started, 2), **extra, **metrics})
            save_checkpoint(self)
        distributed.sync_torch_rng()
        return h1, reason

    def fit(self) -> tuple[int, float]:
        """Train until the epoch budget or early stopping; returns (epochs run now, seconds).

        A member resumed from the checkpoint of the epoch it stopped at (interrupted before its
        summary was written) trains no further.
        """
        epochs = self.config.schedule.epochs
        start_epoch, started = self.epoch, time.perf_counter()
        last_h1 = float("nan")
        stopped = self.selector.stop_reason(self.epoch) if self.epoch else None
        if stopped:
            self.reporter.info(f"it had stopped at epoch {self.epoch}: {stopped}")
            return 0, 0.0
        with self.reporter.progress("training", total=epochs) as task:
            task.advance(self.epoch)
            while self.epoch < epochs:
                loss = self.step()
                epoch = self.epoch + 1
                evaluate, search = self.selector.due(epoch, epochs), self.pseudo.due(epoch)
                reason = None
                if evaluate or search:
                    # The check does not stack on the steps' fragments, nor the steps on the
                    # check's, where they are large; small ones stay warm (allocator.py).
                    release_freed_memory(keep_free=True)
                    h1, reason = self._check(epoch, loss, started, evaluate, search)
                    release_freed_memory(keep_free=True)
                    last_h1 = last_h1 if h1 is None else h1
                self.epoch = epoch
                task.advance(1, loss=round(loss, 4), valid_h1=last_h1, pseudo=len(self.pseudo.pairs))
                if reason:
                    self.reporter.info(f"early stop at epoch {epoch}: {reason}")
                    break
        return self.epoch - start_epoch, time.perf_counter() - started
