"""What "referred" means, once, for calibration and evaluation alike.

A photo counts as referred when the product would tell its owner to see a
doctor (level ``urgent`` or ``soon``) *and* the photo was recognised. A photo
rejected as "not recognised" gets retake advice, not a referral, so it counts
as **not** referred: a model cannot reach its referral target by rejecting
the hard photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..labels import BENIGN, LABELS, MALIGNANT
from ..triage import REFERRAL_LEVELS, recommend

MALIGNANT_IDS = [LABELS.index(label) for label in MALIGNANT]
BENIGN_IDS = [LABELS.index(label) for label in BENIGN]


def levels(probabilities: np.ndarray, thresholds: dict[str, Any] | Sequence[dict[str, Any]]) -> np.ndarray:
    """The triage level of every photo's probabilities: one set of rules for all, or one per photo."""
    per_photo = [thresholds] * len(probabilities) if isinstance(thresholds, dict) else list(thresholds)
    return np.array([recommend(dict(zip(LABELS, map(float, p), strict=True)), rules).level
                     for p, rules in zip(probabilities, per_photo, strict=True)])


def referred(photo_levels: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    return np.isin(photo_levels, list(REFERRAL_LEVELS)) & ~np.asarray(rejected, dtype=bool)


def rates(is_referred: np.ndarray, truth: np.ndarray) -> dict[str, float | None]:
    """Share of malignant and of benign photos referred (None when a group is absent)."""
    malignant, benign = np.isin(truth, MALIGNANT_IDS), np.isin(truth, BENIGN_IDS)
    return {"malignant_referral": float(is_referred[malignant].mean()) if malignant.any() else None,
            "benign_referral": float(is_referred[benign].mean()) if benign.any() else None}


def referral_rates(probabilities: np.ndarray, truth: np.ndarray, thresholds: dict[str, Any],
                   rejected: np.ndarray | None = None) -> dict[str, float | None]:
    rejected = np.zeros(len(truth), dtype=bool) if rejected is None else rejected
    return rates(referred(levels(probabilities, thresholds), rejected), truth)


def malignant_probability(probabilities: np.ndarray) -> np.ndarray:
    return probabilities[:, MALIGNANT_IDS].sum(axis=1)
