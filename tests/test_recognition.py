"""The "not recognised" rule: distance from the skin classes, joined where it pays by a linear
"skin or not" discriminant, chosen on non-skin photos it is judged on only by cross-validation."""

from __future__ import annotations

import numpy as np

from skinscan import novelty
from skinscan.training import recognition


def skin_and_everyday_features(rng: np.random.Generator, dims: int = 24):
    """Skin in nine classes; everyday photos near the skin classes but off along one direction."""
    centres = rng.normal(0, 3, (9, dims))
    labels = np.repeat(np.arange(9), 60)
    skin = centres[labels] + rng.normal(0, 1, (len(labels), dims))
    near = centres[rng.integers(0, 9, 120)] + rng.normal(0, 1, (120, dims))
    near[:, 0] += 6.0  # the cue a distance to the centroids hardly sees, but a direction does
    return skin, labels, near


def test_a_photo_is_novel_when_either_the_distance_or_the_discriminant_says_so():
    rng = np.random.default_rng(0)
    skin, labels, everyday = skin_and_everyday_features(rng)
    spec = novelty.fit(skin, labels, 9, dims=8)
    distance_only = novelty.NoveltyScorer({**spec, "threshold": 1e9})
    assert not distance_only.is_novel(everyday).any()
    joined = novelty.NoveltyScorer({**spec, "threshold": 1e9, "discriminant": {
        **novelty.fit_discriminant(skin, everyday), "threshold": 0.0}})
    assert joined.is_novel(everyday).mean() > 0.9
    assert joined.is_novel(skin).mean() < 0.1


def test_every_crop_of_one_source_photo_shares_a_fold():
    names = ["skimage/cat.png#0", "skimage/cat.png#1", "skimage/cup.png#0", "document-tune-0",
             "document-tune-1", "skimage/cat.png#2"]
    folds = recognition.source_folds(names, folds=3)
    assert folds[0] == folds[1] == folds[5]
    assert len(set(folds)) == 3


def test_the_chosen_rule_keeps_each_photo_type_within_its_rejection_share_and_adds_the_discriminant_when_it_pays():
    rng = np.random.default_rng(1)
    skin, labels, everyday = skin_and_everyday_features(rng)
    val_skin, _, tune_everyday = skin_and_everyday_features(np.random.default_rng(1))  # same classes
    val_skin = val_skin + rng.normal(0, 0.3, val_skin.shape)
    types = np.where(rng.random(len(val_skin)) < 0.3, "clinical", "dermoscopic")
    masks = [types == "clinical", types == "dermoscopic"]
    names = [f"everyday-{i // 3}#{i % 3}" for i in range(len(tune_everyday))]
    rule, figures = recognition.choose_rule(skin, labels, 9, val_skin, masks, tune_everyday, names,
                                            np.zeros(len(tune_everyday), dtype=bool), 0.025)
    assert "discriminant" in rule
    assert max(figures.values()) == max(v for k, v in figures.items() if "discriminant" in k)
    rejected = novelty.NoveltyScorer(rule).is_novel(val_skin)
    assert all(rejected[m].mean() <= 0.025 for m in masks)
    fresh = skin_and_everyday_features(np.random.default_rng(1))[2] + rng.normal(0, 0.3, tune_everyday.shape)
    assert novelty.NoveltyScorer(rule).is_novel(fresh).mean() > 0.8
