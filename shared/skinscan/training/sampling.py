"""Which photos go into each training batch.

Two things the data needs and plain shuffling does not give:

* **balance across classes and photo types**: nevus dermoscopy outnumbers
  Tinea 150 to 1 and camera photos are 15% of the set, so classes are drawn
  with probability proportional to ``count ** class_power`` and, inside a
  class that has both photo types, camera photos make up at least
  ``clinical_share`` of the draws;
* **two views of one lesion**: MILK10k photographed every lesion with a
  camera *and* a dermoscope. The first ``pairs`` slots of a batch hold the
  camera views of ``pairs`` such lesions and the next ``pairs`` slots their
  dermoscopic views, so the loss can ask both views for the same answer.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .data import Sample


class BatchSampler:
    def __init__(self, samples: list[Sample], n_classes: int, *, batch_size: int, pairs: int = 4,
                 class_power: float = 0.35, clinical_share: float = 0.35) -> None:
        if 2 * pairs > batch_size:
            raise ValueError("a batch must have room for both views of every pair")
        self.batch_size = batch_size
        labels = np.array([s.label for s in samples])
        clinical = np.array([s.photo_type == "clinical" for s in samples])
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        class_weight = np.where(counts > 0, counts ** class_power, 0.0)
        class_weight /= class_weight.sum()
        weights = np.zeros(len(samples))
        for c in np.flatnonzero(counts):
            members = labels == c
            n_clinical = int((members & clinical).sum())
            n_other = int(members.sum()) - n_clinical
            share = max(n_clinical / members.sum(), clinical_share) if n_clinical and n_other else (
                1.0 if n_clinical else 0.0)
            if n_clinical:
                weights[members & clinical] = class_weight[c] * share / n_clinical
            if n_other:
                weights[members & ~clinical] = class_weight[c] * (1 - share) / n_other
        self.weights = weights / weights.sum()
        self.class_share = {int(c): float(class_weight[c]) for c in np.flatnonzero(counts)}

        views: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, sample in enumerate(samples):
            if sample.lesion_id and sample.photo_type:
                views[sample.lesion_id][sample.photo_type].append(i)
        self.pairs_by_lesion = [(v["clinical"], v["dermoscopic"]) for _, v in sorted(views.items())
                                if v.get("clinical") and v.get("dermoscopic")]
        self.pairs = pairs if self.pairs_by_lesion else 0
        if self.pairs:
            pair_labels = np.array([labels[c[0]] for c, _ in self.pairs_by_lesion])
            pair_counts = np.bincount(pair_labels, minlength=n_classes)
            pair_weight = class_weight[pair_labels] / pair_counts[pair_labels]
            self.pair_weights = pair_weight / pair_weight.sum()

    def batch(self, rng: np.random.Generator) -> np.ndarray:
        """Indices for one batch: ``pairs`` camera views, their dermoscopic views, then the rest."""
        first, second = [], []
        if self.pairs:
            for lesion in rng.choice(len(self.pairs_by_lesion), self.pairs, replace=False, p=self.pair_weights):
                camera, dermoscope = self.pairs_by_lesion[lesion]
                first.append(camera[rng.integers(len(camera))])
                second.append(dermoscope[rng.integers(len(dermoscope))])
        rest = rng.choice(len(self.weights), self.batch_size - 2 * self.pairs, p=self.weights)
        return np.concatenate([np.array(first + second, dtype=np.int64), rest.astype(np.int64)])
