"""From candidate features to a calibrated probability that a link is right, fitted on validation pairs.

The run's validation pairs are the only labels ``link`` may use (test pairs and gold are for
measuring). They say two things, in two simulated worlds (see :mod:`mmalign.links.linker`):

- *matched*: a validation entity searched among candidates holding its gold target: is the
  decided candidate the gold one?
- *unmatched*: the same entity searched with the validation targets removed: its decided
  candidate is always wrong, as it is for an entity with no counterpart at all.

Two logistic models read the features of :mod:`mmalign.links.candidates`:

- ``counterpart``: P(the entity has a counterpart | x), matched (1) against unmatched (0);
- ``correct``: P(the decided candidate is right | x, the entity has a counterpart).

The confidence is their product, P(correct | x) = P(correct | x, M) · P(M | x, d), after
P(M | x) is moved from the fitting mix (half unmatched) to the pair's own prior P(M | d) =
κ · h(d): ``h`` the shape the seeds give the share with a counterpart by degree
(:mod:`mmalign.links.prior`; uniform without it), κ its scale, unknown, which
:func:`estimate_scale` fits on the linked entities' (unlabelled) features by maximum
likelihood (with a uniform shape, what the EM of Saerens, Latinne & Decaestecker, 2002 finds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmalign.errors import MMAlignError
from mmalign.links.prior import PairShape

RIDGE = 1.0
"""L2 penalty on the standardised weights: a few hundred validation pairs, kept from overfitting."""
SCALE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Logistic:
    """A logistic model on standardised features, fitted by Newton's method (deterministic)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> "Logistic":
        """Maximum penalised likelihood; ``y`` may be soft targets in [0, 1]. The intercept is
        not penalised, so the mean prediction equals the mean target (calibration in the large)."""
        mean = x.mean(0)
        scale = x.std(0)
        scale[scale == 0] = 1.0
        z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
        penalty = np.diag([0.0] + [ridge] * x.shape[1])
        w = np.zeros(z.shape[1])
        for _ in range(100):
            p = _sigmoid(z @ w)
            gradient = z.T @ (p - y) + penalty @ w
            hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty + 1e-9 * np.eye(len(w))
            step = np.linalg.solve(hessian, gradient)
            w -= step
            if np.abs(step).max() < 1e-10:
                break
        return cls(mean, scale, w[1:].copy(), float(w[0]))

    def probability(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.intercept + ((x - self.mean) / self.scale) @ self.coef)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Logistic":
        return cls(*(np.asarray(data[key], dtype=np.float64) for key in ("mean", "scale", "coef")), float(data["intercept"]))


@dataclass(frozen=True)
class Calibrator:
    """Confidence = P(correct | x, M) · P(M | x) with the prior P(M | d) = ``scale`` · h(d)."""

    counterpart: Logistic
    correct: Logistic
    fit_unmatched: float
    """Share of unmatched examples in ``counterpart``'s fitting data (the prior it learnt)."""
    shape: PairShape
    scale: float
    """Share with a counterpart where the shape is 1 (the best-connected entities)."""

    def confidence(self, x: np.ndarray, h: np.ndarray | float) -> np.ndarray:
        """For decided pairs' features ``x`` and their shape ``h`` (:meth:`PairShape.of`)."""
        return self.correct.probability(x) * shift_prior(self.counterpart.probability(x), self.fit_unmatched, self.unmatched(h))

    def unmatched(self, h: np.ndarray | float) -> np.ndarray | float:
        """The prior share without a counterpart at shape ``h``."""
        return 1.0 - self.scale * h

    def to_dict(self) -> dict[str, Any]:
        return {"counterpart": self.counterpart.to_dict(), "correct": self.correct.to_dict(),
                "fit_unmatched": self.fit_unmatched, "shape": self.shape.to_dict(), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibrator":
        return cls(Logistic.from_dict(data["counterpart"]), Logistic.from_dict(data["correct"]),
                   float(data["fit_unmatched"]), PairShape.from_dict(data["shape"]), float(data["scale"]))


def shift_prior(matched: np.ndarray, fit_unmatched: float, unmatched: np.ndarray | float) -> np.ndarray:
    """P(M | x) learnt at unmatched share ``fit_unmatched``, moved to share ``unmatched`` (Bayes; per row or one)."""
    w_matched, w_unmatched = (1 - unmatched) / (1 - fit_unmatched), unmatched / fit_unmatched
    numerator = w_matched * matched
    return numerator / np.maximum(numerator + w_unmatched * (1 - matched), 1e-300)


def estimate_scale(matched: np.ndarray, fit_unmatched: float, h: np.ndarray) -> tuple[float, int]:
    """The scale κ in [0, 1] of the prior κ · h that best explains the unlabelled P(M | x) (maximum likelihood).

    Each entity's likelihood ratio r = odds(P(M | x)) / odds at the fitting mix; the
    log-likelihood Σ log(1 + κ h (r − 1)) is concave in κ, so its derivative is bisected.
    Returns κ and the bisection steps taken (0 at a bound).
    """
    p = np.clip(matched, 1e-12, 1 - 1e-12)
    excess = h * (p / (1 - p) * fit_unmatched / (1 - fit_unmatched) - 1)

    def slope(kappa: float) -> float:
        return float((excess / (1 + kappa * excess)).sum())

    if len(excess) == 0 or slope(1.0) >= 0:
        return 1.0, 0
    if slope(0.0) <= 0:
        return 0.0, 0
    low, high, steps = 0.0, 1.0, 0
    while high - low > SCALE_TOLERANCE:
        middle = 0.5 * (low + high)
        low, high = (middle, high) if slope(middle) > 0 else (low, middle)
        steps += 1
    return 0.5 * (low + high), steps


def fit(matched_x: np.ndarray, matched_correct: np.ndarray, unmatched_x: np.ndarray, population_x: np.ndarray,
        shape: PairShape, population_h: np.ndarray) -> tuple[Calibrator, int]:
    """The calibrator from the two validation worlds, its scale estimated on ``population_x`` (shape ``population_h``).

    Returns it and the bisection steps taken.
    """
    if len(matched_x) < 2 or len(unmatched_x) < 2:
        raise MMAlignError(
            f"too few validation pairs with a candidate to calibrate on ({len(matched_x)}); "
            "link needs a run with validation pairs (train with --valid FILE or --valid-fraction)"
        )
    fit_unmatched = len(unmatched_x) / (len(matched_x) + len(unmatched_x))
    counterpart = Logistic.fit(np.vstack([matched_x, unmatched_x]),
                               np.concatenate([np.ones(len(matched_x)), np.zeros(len(unmatched_x))]))
    correct = Logistic.fit(matched_x, platt_targets(matched_correct))
    scale, steps = estimate_scale(counterpart.probability(population_x), fit_unmatched, population_h)
    return Calibrator(counterpart, correct, fit_unmatched, shape, scale), steps


def platt_targets(labels: np.ndarray) -> np.ndarray:
    """Platt's smoothed targets: (n₊ + 1) / (n₊ + 2) for positives, 1 / (n₋ + 2) for negatives.

    A validation set on which every decided candidate is right would otherwise fit a
    probability of exactly 1 (the intercept grows without bound). Only the ``correct`` model
    needs them: the ``counterpart`` model always sees both classes, and the ridge bounds it.
    """
    positives = float(labels.sum())
    return np.where(labels, (positives + 1) / (positives + 2), 1 / (len(labels) - positives + 2))


def accept_threshold(calibrator: Calibrator, matched_x: np.ndarray, matched_correct: np.ndarray,
                     unmatched_x: np.ndarray, population_h: np.ndarray, precision: float) -> dict[str, float | None]:
    """The lowest confidence whose links reach ``precision`` on validation, weighted to the expected mix.

    The linked entities fall into levels of the shape (``population_h``); at each, a share
    ``unmatched(h)`` has no counterpart. Every validation entity stands for each level in turn
    (its features with that level's prior; features and degree independent given M), weighted
    by the level's share of the linked entities times the matched or unmatched share there, so
    the precision is the one expected on the entities linked. Returns ``{"accept", "precision",
    "recall"}`` (recall: of the matched validation entities, over the levels); accept is 1.0 and
    precision None when no cut reaches the precision.
    """
    levels, counts = np.unique(population_h, return_counts=True)
    level_weight = counts / counts.sum()
    confidence, right, weight, matched_world = [], [], [], []
    for h, w in zip(levels.tolist(), level_weight.tolist()):
        share = calibrator.unmatched(h)
        confidence += [calibrator.confidence(matched_x, h), calibrator.confidence(unmatched_x, h)]
        right += [matched_correct.astype(np.float64), np.zeros(len(unmatched_x))]
        weight += [np.full(len(matched_x), w * (1 - share) / len(matched_x)),
                   np.full(len(unmatched_x), w * share / len(unmatched_x))]
        matched_world.append(np.r_[np.ones(len(matched_x)), np.zeros(len(unmatched_x))])
    order = np.argsort(-np.concatenate(confidence), kind="stable")
    confidence, right, weight, matched_world = (np.concatenate(a)[order] for a in (confidence, right, weight, matched_world))
    correct_weight, all_weight = np.cumsum(weight * right), np.cumsum(weight)
    # A cut falls between distinct confidences only: equal confidences are accepted together.
    last = np.r_[confidence[1:] != confidence[:-1], True]
    cut_precision = np.where(all_weight > 0, correct_weight / np.maximum(all_weight, 1e-300), 1.0)
    good = np.nonzero(last & (cut_precision >= precision))[0]
    if len(good) == 0:
        return {"accept": 1.0, "precision": None, "recall": 0.0}
    cut = good[-1]
    recall = float((weight * right)[: cut + 1].sum() / max(float((weight * matched_world).sum()), 1e-300))
    return {"accept": float(confidence[cut]), "precision": float(cut_precision[cut]), "recall": recall}


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * t))
