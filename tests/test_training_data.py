"""The data side of training: lesion-grouped splits, balanced two-view batches, style
augmentation and the one referral definition. numpy and Pillow only: no TensorFlow."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from skinscan.labels import LABELS
from skinscan.training import referral
from skinscan.training.augment import AugmentConfig, augment
from skinscan.training.calibrate import choose_urgent_threshold, referred_at_each_threshold, threshold_table
from skinscan.training.data import Sample, discover, load_split, save_split, stratified_split
from skinscan.training.sampling import BatchSampler

MELANOMA, NEVUS, TINEA = LABELS.index("Melanoma"), LABELS.index("Melanocytic nevus"), LABELS.index(
    "Tinea Ringworm Candidiasis")


def two_view_samples(lesions_per_class: int = 12) -> list[Sample]:
    """Every lesion photographed twice (camera + dermoscope), plus camera-only rashes."""
    samples = []
    for label in range(len(LABELS)):
        for i in range(lesions_per_class):
            lesion = f"L{label}-{i}"
            if label == TINEA:
                samples.append(Sample(f"{LABELS[label]}/{i}.jpg", label, lesion, "clinical"))
                continue
            samples.append(Sample(f"{LABELS[label]}/{i}c.jpg", label, lesion, "clinical"))
            samples.append(Sample(f"{LABELS[label]}/{i}d.jpg", label, lesion, "dermoscopic"))
    return samples


def test_a_lesion_never_spans_two_splits_and_every_split_has_both_photo_types():
    split = stratified_split(two_view_samples(), seed=5)
    lesions = {name: {s.lesion_id for s in part} for name, part in split.items()}
    assert not lesions["train"] & lesions["test"]
    assert not lesions["train"] & lesions["val"] and not lesions["val"] & lesions["test"]
    for part in split.values():
        assert {s.photo_type for s in part} == {"clinical", "dermoscopic"}
        assert {s.label for s in part} == set(range(len(LABELS)))
    assert split == stratified_split(two_view_samples(), seed=5)
    assert split != stratified_split(two_view_samples(), seed=6)


def test_a_warm_start_keeps_every_lesion_its_parent_saw_in_train():
    samples = two_view_samples()
    parent_saw = {s.lesion_id for s in samples if s.lesion_id.endswith(("-1", "-2", "-3"))}
    split = stratified_split(samples, seed=5, train_only=parent_saw)
    assert parent_saw <= {s.lesion_id for s in split["train"]}
    held_out = {s.lesion_id for s in split["val"] + split["test"]}
    assert held_out and not held_out & parent_saw


def test_a_class_the_parent_nearly_used_up_still_reaches_validation_and_test():
    # 20 Tinea lesions, 16 of them seen by the parent: the 4 left are shared, not all given to validation.
    samples = two_view_samples(lesions_per_class=20)
    parent_saw = {s.lesion_id for s in samples if s.label == TINEA and int(s.lesion_id.split("-")[1]) < 16}
    split = stratified_split(samples, seed=5, train_only=parent_saw)
    tinea = {name: {s.lesion_id for s in part if s.label == TINEA} for name, part in split.items()}
    assert len(tinea["val"]) == 2 and len(tinea["test"]) == 2
    assert tinea["train"] == parent_saw


def test_photos_without_a_lesion_id_are_their_own_lesion():
    samples = [Sample(f"{LABELS[c]}/{i}.jpg", c) for c in range(len(LABELS)) for i in range(10)]
    split = stratified_split(samples, seed=1)
    assert sum(len(part) for part in split.values()) == len(samples)
    assert {s.label for s in split["test"]} == set(range(len(LABELS)))


def test_metadata_travels_with_the_split(tmp_path):
    for c, label in enumerate(LABELS[:2]):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (100 + c, 80, 60)).save(tmp_path / label / f"{i}.jpg")
    with (tmp_path / "METADATA.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "file", "lesion_id", "image_type", "source", "skin_tone_class"])
        for label in LABELS[:2]:
            for i in range(3):
                writer.writerow([label, f"{i}.jpg", f"{label[:3]}{i // 2}", "clinical" if i else "dermoscopic",
                                 "test", "4" if i == 2 else ""])
    samples = discover(tmp_path)
    assert {s.lesion_id for s in samples} == {"Act0", "Act1", "Ato0", "Ato1"}
    assert sum(s.skin_tone == 4 for s in samples) == 2
    split = stratified_split(samples, seed=0)
    save_split(split, tmp_path / "split.json", seed=0)
    again = load_split(tmp_path / "split.json", tmp_path)
    assert again == split
    assert all(s.lesion_id == "" for s in load_split(tmp_path / "split.json")["train"])  # no root, no metadata


def test_batches_put_both_views_of_a_lesion_side_by_side():
    samples = two_view_samples()
    sampler = BatchSampler(samples, len(LABELS), batch_size=16, pairs=3)
    batch = sampler.batch(np.random.default_rng(0))
    assert len(batch) == 16
    for i in range(3):
        camera, dermoscope = samples[batch[i]], samples[batch[3 + i]]
        assert (camera.photo_type, dermoscope.photo_type) == ("clinical", "dermoscopic")
        assert camera.lesion_id == dermoscope.lesion_id


def test_sampling_balances_classes_and_lifts_the_rare_photo_type():
    samples = [Sample(f"n/{i}", NEVUS, f"n{i}", "dermoscopic") for i in range(900)]
    samples += [Sample(f"c/{i}", NEVUS, f"c{i}", "clinical") for i in range(30)]
    samples += [Sample(f"t/{i}", TINEA, f"t{i}", "clinical") for i in range(10)]
    sampler = BatchSampler(samples, len(LABELS), batch_size=64, pairs=0, class_power=0.0, clinical_share=0.4)
    drawn = np.concatenate([sampler.batch(np.random.default_rng(seed)) for seed in range(60)])
    labels = np.array([samples[i].label for i in drawn])
    assert abs(np.mean(labels == TINEA) - 0.5) < 0.05  # power 0: every class equally often
    nevus_camera = np.mean([samples[i].photo_type == "clinical" for i in drawn if samples[i].label == NEVUS])
    assert abs(nevus_camera - 0.4) < 0.05  # natural share would be 3%


def test_augmentation_keeps_shape_and_type_and_is_reproducible():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    first = augment(pixels, np.random.default_rng(3))
    assert first.shape == pixels.shape and first.dtype == np.uint8
    assert np.array_equal(first, augment(pixels, np.random.default_rng(3)))
    assert not np.array_equal(first, augment(pixels, np.random.default_rng(4)))


def test_the_dermoscope_vignette_blackens_the_corners_and_can_be_switched_off():
    pixels = np.full((64, 64, 3), 180, dtype=np.uint8)
    only_vignette = AugmentConfig(zoom_in=0, zoom_out=0, vignette=1.0, blur=0, noise=0, jpeg=0, grey_world=0)
    out = augment(pixels, np.random.default_rng(1), only_vignette)
    assert out[0, 0].max() < 20 and out[32, 32].min() > 60
    plain = augment(pixels, np.random.default_rng(1), AugmentConfig(style=False, zoom_in=0))
    assert plain[0, 0].min() > 60  # no style transforms: corners untouched


def test_a_photo_rejected_as_not_recognised_is_never_counted_as_referred():
    melanoma_certain = np.eye(len(LABELS))[[MELANOMA, MELANOMA, NEVUS, NEVUS]]
    truth = np.array([MELANOMA, MELANOMA, NEVUS, NEVUS])
    rules = {"urgent_malignant_probability": 0.3, "soon_risk_probability": 1.01, "confident_probability": 0.5}
    assert referral.referral_rates(melanoma_certain, truth, rules)["malignant_referral"] == 1.0
    rejected = np.array([True, False, False, False])
    assert referral.referral_rates(melanoma_certain, truth, rules, rejected) == {
        "malignant_referral": 0.5, "benign_referral": 0.0}


def test_the_urgent_threshold_meets_the_target_on_every_photo_type():
    rng = np.random.default_rng(0)
    n = 400
    truth = rng.choice([MELANOMA, NEVUS], n)
    types = ["clinical" if i % 2 else "dermoscopic" for i in range(n)]
    malignant_p = np.where(truth == MELANOMA, rng.uniform(0.2, 0.9, n), rng.uniform(0.0, 0.4, n))
    malignant_p[np.array(types) == "clinical"] *= 0.6  # camera photos look less malignant to the model
    probabilities = np.zeros((n, len(LABELS)))
    probabilities[:, MELANOMA] = malignant_p
    probabilities[:, NEVUS] = 1 - malignant_p
    table = threshold_table(referred_at_each_threshold(probabilities, np.zeros(n, dtype=bool)), truth, types)
    chosen = choose_urgent_threshold(table, 0.95)
    row = next(r for r in table if r["threshold"] == chosen)
    assert row["clinical"]["malignant_referral"] >= 0.95 and row["dermoscopic"]["malignant_referral"] >= 0.95
    higher = [r for r in table if r["threshold"] > chosen]
    assert all(min(r["clinical"]["malignant_referral"], r["dermoscopic"]["malignant_referral"]) < 0.95
               for r in higher)


def test_referral_rates_are_none_for_an_absent_group():
    assert referral.rates(np.array([True, False]), np.array([NEVUS, NEVUS])) == {
        "malignant_referral": None, "benign_referral": 0.5}
