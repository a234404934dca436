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

The confidence is their product, P(correct | x) = P(correct | x, M) · P(M | x), after P(M | x)
is moved from the fitting mix (half unmatched) to the unmatched share of the entities being
linked. That share is unknown; :func:`estimate_unmatched` estimates it on their (unlabelled)
features by EM (Saerens, Latinne & Decaestecker, 2002).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmalign.errors import MMAlignError

RIDGE = 1.0
"""L2 penalty on the standardised weights: a few hundred validation pairs, kept from overfitting."""
EM_TOLERANCE = 1e-6
EM_MAX_ITERATIONS = 1000


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
    """Confidence = P(correct | x, M) · P(M | x) at the unmatched share ``unmatched``."""

    counterpart: Logistic
    correct: Logistic
    fit_unmatched: float
    """Share of unmatched examples in ``counterpart``'s fitting data (the prior it learnt)."""
    unmatched: float
    """Estimated share of entities without a counterpart among those linked."""

    def confidence(self, x: np.ndarray) -> np.ndarray:
        return self.correct.probability(x) * shift_prior(self.counterpart.probability(x), self.fit_unmatched, self.unmatched)

    def to_dict(self) -> dict[str, Any]:
        return {"counterpart": self.counterpart.to_dict(), "correct": self.correct.to_dict(),
                "fit_unmatched": self.fit_unmatched, "unmatched": self.unmatched}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibrator":
        return cls(Logistic.from_dict(data["counterpart"]), Logistic.from_dict(data["correct"]),
                   float(data["fit_unmatched"]), float(data["unmatched"]))


def shift_prior(matched: np.ndarray, fit_unmatched: float, unmatched: float) -> np.ndarray:
    """P(M | x) learnt at unmatched share ``fit_unmatched``, moved to share ``unmatched`` (Bayes)."""
    w_matched, w_unmatched = (1 - unmatched) / (1 - fit_unmatched), unmatched / fit_unmatched
    numerator = w_matched * matched
    return numerator / np.maximum(numerator + w_unmatched * (1 - matched), 1e-300)


def estimate_unmatched(matched: np.ndarray, fit_unmatched: float) -> tuple[float, int]:
    """The unmatched share that explains the unlabelled P(M | x): EM (Saerens et al., 2002).

    Each step sets the share to the mean posterior of being unmatched under the current share.
    Returns the share and the number of steps taken.
    """
    share = fit_unmatched
    for step in range(1, EM_MAX_ITERATIONS + 1):
        new = float(1 - shift_prior(matched, fit_unmatched, share).mean()) if len(matched) else share
        if abs(new - share) < EM_TOLERANCE:
            return new, step
        share = new
    return share, EM_MAX_ITERATIONS


def fit(matched_x: np.ndarray, matched_correct: np.ndarray, unmatched_x: np.ndarray, population_x: np.ndarray
        ) -> tuple[Calibrator, int]:
    """The calibrator from the two validation worlds, its unmatched share estimated on ``population_x``.

    Returns it and the EM steps taken.
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
    unmatched, steps = estimate_unmatched(counterpart.probability(population_x), fit_unmatched)
    return Calibrator(counterpart, correct, fit_unmatched, unmatched), steps


def platt_targets(labels: np.ndarray) -> np.ndarray:
    """Platt's smoothed targets: (n₊ + 1) / (n₊ + 2) for positives, 1 / (n₋ + 2) for negatives.

    A validation set on which every decided candidate is right would otherwise fit a
    probability of exactly 1 (the intercept grows without bound). Only the ``correct`` model
    needs them: the ``counterpart`` model always sees both classes, and the ridge bounds it.
    """
    positives = float(labels.sum())
    return np.where(labels, (positives + 1) / (positives + 2), 1 / (len(labels) - positives + 2))


def accept_threshold(calibrator: Calibrator, matched_x: np.ndarray, matched_correct: np.ndarray,
                     unmatched_x: np.ndarray, precision: float) -> dict[str, float | None]:
    """The lowest confidence whose links reach ``precision`` on validation, weighted to the estimated mix.

    Validation holds as many simulated unmatched entities as matched ones; weighting them
    by the estimated unmatched share makes the precision the one expected on the entities
    linked. Returns ``{"accept", "precision", "recall"}`` (recall: of the matched validation
    entities); accept is 1.0 and precision None when no cut reaches the precision.
    """
    share = calibrator.unmatched
    confidence = np.concatenate([calibrator.confidence(matched_x), calibrator.confidence(unmatched_x)])
    right = np.concatenate([matched_correct.astype(np.float64), np.zeros(len(unmatched_x))])
    weight = np.concatenate([np.full(len(matched_x), (1 - share) / len(matched_x)),
                             np.full(len(unmatched_x), share / len(unmatched_x))])
    order = np.argsort(-confidence, kind="stable")
    confidence, right, weight = confidence[order], right[order], weight[order]
    correct_weight, all_weight = np.cumsum(weight * right), np.cumsum(weight)
    # A cut falls between distinct confidences only: equal confidences are accepted together.
    last = np.r_[confidence[1:] != confidence[:-1], True]
    cut_precision = np.where(all_weight > 0, correct_weight / np.maximum(all_weight, 1e-300), 1.0)
    good = np.nonzero(last & (cut_precision >= precision))[0]
    if len(good) == 0:
        return {"accept": 1.0, "precision": None, "recall": 0.0}
    cut = good[-1]
    recall = float(right[: cut + 1].sum() / max(len(matched_x), 1))
    return {"accept": float(confidence[cut]), "precision": float(cut_precision[cut]), "recall": recall}


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * t))
