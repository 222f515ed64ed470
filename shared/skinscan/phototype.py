"""Camera photo or dermoscope image? Told apart from the same pooled features.

Why it matters: the network is weaker on camera photos, so the malignant
probability that keeps 95 % of melanomas referred is much lower for a
dermoscopic image than for a phone photo. With one threshold for both, almost
every phone photo of a mole is sent to a doctor. Knowing the photo type lets
triage use the threshold calibrated for it.

The rule is a Fisher linear discriminant (:mod:`.linear`). Calibration chooses
the per-type thresholds *with* this rule's mistakes included, so a dermoscopic
melanoma mistaken for a camera photo already counts against the referral target.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .contract import PHOTO_TYPES, PhotoType
from .linear import fisher_discriminant, linear_score

CLINICAL, DERMOSCOPIC = PHOTO_TYPES  # the wire's words: an ordinary camera or phone, a dermoscope


def fit(features: np.ndarray, is_dermoscopic: np.ndarray, shrinkage: float = 0.1) -> dict[str, Any]:
    return {"method": "fisher-discriminant", **fisher_discriminant(features, is_dermoscopic, shrinkage), "cut": 0.0}


class PhotoTypeScorer:
    """Scores features: about -1 for a typical camera photo, +1 for a typical dermoscope image."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.cut = float(spec.get("cut", 0.0))

    def score(self, features: np.ndarray) -> np.ndarray:
        return linear_score(self.spec, features)

    def photo_types(self, features: np.ndarray) -> list[PhotoType]:
        return [CLINICAL if s < self.cut else DERMOSCOPIC for s in self.score(features)]
