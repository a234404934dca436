"""Alignment losses over a batch of seed pairs (rows of ``left``/``right`` are aligned)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn.functional import cross_entropy, normalize

from mmalign.settings import Choice
from mmalign.sparse import SparsePattern, csr_times


class Loss(Choice):
    """The alignment loss (``--loss``); see the functions of the same names."""

    # Dual-AMN's normalised hard-sample loss. On zh_en (structure only, 30% seeds, 150 epochs)
    # higher test H@1 than the paper's InfoNCE, at the same width (docs/benchmarks.md, "Early choices").
    NHS = "nhs"
    INFONCE = "infonce"  # the paper's
    INFONCE_SYM = "infonce_sym"
    ICL = "icl"  # ablation "repl. ICL"


def _cross_logits(left: torch.Tensor, right: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine logits of every left row against every right row, and the diagonal labels."""
    logits = normalize(left, dim=1) @ normalize(right, dim=1).T / tau
    return logits, torch.arange(len(left), device=left.device)


def infonce(left: torch.Tensor, right: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Paper Eq. 15 / the code: one-directional in-batch InfoNCE, cross-KG negatives only."""
    logits, labels = _cross_logits(left, right, tau)
    return cross_entropy(logits, labels)


def infonce_sym(left: torch.Tensor, right: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """InfoNCE in both directions over the same logits: KG2 rows are anchors too, at no extra product."""
    logits, labels = _cross_logits(left, right, tau)
    return 0.5 * (cross_entropy(logits, labels) + cross_entropy(logits.T, labels))


def icl(left: torch.Tensor, right: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Ablation "repl. ICL" (MCLEA/MEAformer): both directions, plus intra-KG in-batch negatives."""
    left, right = normalize(left, dim=1), normalize(right, dim=1)
    n = len(left)
    labels = torch.arange(n, device=left.device)
    mask = torch.eye(n, dtype=torch.bool, device=left.device)
    cross = left @ right.T / tau
    intra_left = (left @ left.T / tau).masked_fill(mask, float("-inf"))
    intra_right = (right @ right.T / tau).masked_fill(mask, float("-inf"))
    forward = cross_entropy(torch.cat([cross, intra_left], dim=1), labels)
    backward = cross_entropy(torch.cat([cross.T, intra_right], dim=1), labels)
    return 0.5 * (forward + backward)


PRODUCT_COLUMNS = 256
"""Columns of the similarity matrix computed per matrix product on the CPU (see :func:`_similarities`)."""


def _similarities(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left @ right.T``, on the CPU a block of :data:`PRODUCT_COLUMNS` right rows at a time,
    each product written into its columns of the one output.

    A square B × B product from width-d rows runs below this CPU's float32 GEMM rate; the
    same dot products as tall B × 256 products ran faster at the loss's chunk sizes
    (docs/benchmarks.md, "Seconds per phase of a late epoch").
    """
    if left.device.type != "cpu":
        return left @ right.T
    sims = left.new_empty(len(left), len(right))
    for start in range(0, len(right), PRODUCT_COLUMNS):
        stop = start + PRODUCT_COLUMNS
        torch.mm(left, right[start:stop].T, out=sims[:, start:stop])
    return sims


FLOOR_LOGIT = -80.0
"""Each standardised logit, shifted by its anchor's largest, is raised to at least this before
``exp``: ``exp`` is several times slower on far-negative inputs on the CPU. The floor is part of
the loss's gradient, not only of its speed: an anchor whose positive lies more than ``-FLOOR_LOGIT``
above every negative has all its negatives at the floor, and so pushes them all equally (the
normalised weights of an all-floor anchor are uniform); computing the shift from the negatives
alone, which keeps only the hardest, trained DBP15K zh_en to a lower H@1 (docs/benchmarks.md,
"The loss's gradient, sparse")."""

NEGLIGIBLE = math.exp(-20.0)
"""A negative whose weight is below this share of its anchor's summed weights (and above the
floor) is left out of the gradient: the weights of each anchor change by at most
``B · NEGLIGIBLE`` of their sum (below 1e-5 at B = 7,000). What is left is a few entries per
anchor, so the backward's two B × B × d products become sparse ones (same section)."""

DENSE_SHARE = 0.02
"""Above this share of a direction's B × B entries above the floor (an untrained model's
first epochs, whose similarities are not yet spread), the gradient is kept whole and the
backward runs the two dense products: the sparse form's extraction and products then cost
more than they save (same section)."""


class _HardSample(torch.autograd.Function):
    """Dual-AMN's normalised hard-sample loss over one chunk, gradient formed in the forward.

    For a left anchor i and every right row j != i: z_ij = λ (S_ij − mean_j S_ij) / std_j S_ij
    with the statistics held constant, and the loss is logsumexp_j z_ij; the positive enters
    through d(S_ij − S_ii), so its gradient is −λ/std_i whatever its rank (no saturation once
    it ranks first, unlike InfoNCE). The same along columns for right anchors.

    The B × B gradient is kept whole only where many negatives lie above the floor
    (:data:`DENSE_SHARE`). Otherwise it is kept as each direction's weights, which are the
    floor's share for every negative (:data:`FLOOR_LOGIT`: the same for all of an anchor's
    negatives) plus the part above it (a few hard negatives per anchor, :data:`NEGLIGIBLE`
    left out), and the positives' terms on the diagonal. The floor's share and the diagonal
    multiply the embeddings in O(B × d); the part above the floor is one sparse matrix.
    """

    @staticmethod
    def forward(ctx, left: torch.Tensor, right: torch.Tensor, scale: float) -> torch.Tensor:
        sims = _similarities(left, right)
        sims = sims.float() if sims.dtype in (torch.bfloat16, torch.float16) else sims
        n = len(sims)
        floor = math.exp(FLOOR_LOGIT)
        total = sims.new_zeros(())
        floors, diagonal, entries = [], sims.new_zeros(n), []
        dense: torch.Tensor | None = None  # the whole gradient, where it is not sparse
        # Both directions' statistics first: the column pass's B × B temporary is gone before
        # the weights exist (one block-sized buffer less at the loss's peak).
        stats = {dim: _std_mean(sims, dim) for dim in (1, 0)}
        for dim in (1, 0):
            std, mean = stats[dim]
            factor = scale / std.clamp_min(1e-6)
            top = sims.amax(dim, keepdim=True)
            # z − max z = (S − max S)·factor: the mean only shifts the logsumexp. The last
            # direction overwrites the similarities, which nothing needs after it.
            weights = sims.sub_(top) if dim == 0 else sims - top
            weights.mul_(factor).clamp_min_(FLOOR_LOGIT)
            weights.diagonal().fill_(float("-inf"))  # the positive is not its own negative
            weights.exp_()
            sums = weights.sum(dim, keepdim=True)
            total += (sums.log() + (top - mean) * factor).sum() / n
            # 1/n, the mean over anchors, folded into each anchor's share of its weights.
            share = factor / (sums * n)
            diagonal -= factor.flatten() / n
            if dim == 1 or not ctx.dense:
                flat = _above(weights, (sums * NEGLIGIBLE).clamp_min_(floor))
            if dim == 1:  # the first direction decides for both: their shares are alike
                ctx.dense = len(flat) > DENSE_SHARE * n * n
            if ctx.dense:
                dense = weights.mul_(share) if dense is None else dense.add_(weights.mul_(share))
                continue
            rows, cols = flat // n, flat % n
            anchors = rows if dim == 1 else cols
            entries.append((rows, cols, (weights.view(-1)[flat] - floor) * share.flatten()[anchors]))
            floors.append(share.flatten() * floor)
            del weights
        del sims
        if dense is not None:
            dense.diagonal().add_(diagonal)
            ctx.save_for_backward(left, right, dense.to(left.dtype))
            return total
        rows, cols, values = (torch.cat(parts) for parts in zip(*entries))
        ctx.save_for_backward(left, right, rows, cols, values, *floors, diagonal)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if ctx.dense:
            left, right, grad = ctx.saved_tensors
            # Scaled after the products: B × d multiplies instead of B × B (exact for the usual 1).
            scale = grad_output.to(grad.dtype)
            return (grad @ right) * scale, (grad.T @ left) * scale, None
        left, right, rows, cols, values, by_left, by_right, diagonal = ctx.saved_tensors
        n = len(left)
        pattern = SparsePattern(rows, cols, n, n).to(left.device)
        # Off the diagonal every entry (i, j) holds by_left[i] + by_right[j]: the floors' share.
        own = (diagonal - by_left - by_right)[:, None]
        scale = grad_output.to(values.dtype)
        grads = []
        for matrix, other, mine, theirs in ((pattern.matrix(values), right, by_left, by_right),
                                            (pattern.matrix_t(values), left, by_right, by_left)):
            other = other.to(values.dtype)  # float32 for bfloat16 inputs, as the forward
            grad = csr_times(matrix, other)
            grad += mine[:, None] * other.sum(0) + theirs @ other + own * other
            grads.append((grad * scale).to(left.dtype))
        return grads[0], grads[1], None


def _above(weights: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
    """Flat positions of the entries of ``weights`` above ``cut`` (broadcast along rows or columns).

    A percent or so of the entries pass: on the CPU numpy's comparison and flatnonzero find
    them faster than torch's comparison and nonzero.
    """
    if weights.device.type != "cpu":
        return torch.nonzero((weights > cut).view(-1)).flatten()
    return torch.from_numpy(np.flatnonzero(weights.numpy() > cut.numpy()))


def _std_mean(sims: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample std and mean along ``dim`` from the sum and the sum of squares.

    ``torch.std_mean`` on a loss chunk's block took several times as long as this on this CPU,
    a large share of the loss's forward (docs/benchmarks.md, "Memory and speed of the training
    step"); cosines are bounded, so the one-pass formula loses nothing that matters in float32.
    Column sums of squares use ``square().sum``: a strided norm is slower.
    """
    n = sims.shape[dim]
    mean = sims.mean(dim, keepdim=True)
    squares = torch.linalg.vector_norm(sims, dim=1, keepdim=True).square_() if dim == 1 else sims.square().sum(0, keepdim=True)
    return ((squares - n * mean.square()) / (n - 1)).clamp_min_(0.0).sqrt_(), mean


def nhs(left: torch.Tensor, right: torch.Tensor, tau: float = 0.1, scale: float = 30.0) -> torch.Tensor:
    """Dual-AMN's normalised hard-sample loss (Mao et al., CIKM 2021) over in-batch candidates.

    Both directions, cross-KG candidates. ``tau`` is unused: each anchor's spread of
    similarities sets its temperature (std / λ, with Dual-AMN's λ = ``scale`` = 30), which
    concentrates the gradient on the hardest negatives. Its margin γ cancels in the
    standardisation, so it has none.
    """
    return _HardSample.apply(normalize(left, dim=1), normalize(right, dim=1), scale)


LOSSES = {Loss.NHS: nhs, Loss.INFONCE: infonce, Loss.INFONCE_SYM: infonce_sym, Loss.ICL: icl}
