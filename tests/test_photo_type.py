"""Camera photo or dermoscope image, and the urgent threshold calibrated for each.

One threshold for both photo types sent almost every phone photo of a mole to a doctor,
because the dermoscopic melanomas set it. These tests pin down the photo-type rule, that
triage applies the threshold of the photo's type, and that calibration picks the pair of
thresholds with the rule's own mistakes counted against the referral target."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import image_bytes
from skinscan import triage
from skinscan.labels import LABELS
from skinscan.phototype import PhotoTypeScorer, fit
from skinscan.training import referral
from skinscan.training.calibrate import choose_thresholds_by_photo_type, referred_at_each_threshold

MELANOMA, NEVUS = LABELS.index("Melanoma"), LABELS.index("Melanocytic nevus")
RULES = {**triage.DEFAULT_THRESHOLDS, "urgent_malignant_probability": 0.07,
         triage.BY_PHOTO_TYPE: {"clinical": 0.15, "dermoscopic": 0.07}}


def two_clusters(rng: np.random.Generator, n: int = 300, dims: int = 20) -> tuple[np.ndarray, np.ndarray]:
    is_dermoscopic = rng.random(n) < 0.7
    features = rng.normal(0, 1, (n, dims)) + np.where(is_dermoscopic[:, None], 1.5, -1.5) * np.eye(dims)[0]
    return features, is_dermoscopic


def test_the_rule_tells_the_two_photo_types_apart_and_scores_their_means_near_minus_and_plus_one():
    rng = np.random.default_rng(0)
    features, is_dermoscopic = two_clusters(rng)
    scorer = PhotoTypeScorer(fit(features, is_dermoscopic))
    fresh, fresh_truth = two_clusters(rng)
    kinds = np.array(scorer.photo_types(fresh))
    assert np.mean((kinds == "dermoscopic") == fresh_truth) > 0.9
    assert scorer.score(features[~is_dermoscopic].mean(axis=0))[0] == pytest.approx(-1.0, abs=0.05)
    assert scorer.score(features[is_dermoscopic].mean(axis=0))[0] == pytest.approx(1.0, abs=0.05)


def test_the_rule_refuses_to_fit_on_one_photo_type():
    with pytest.raises(ValueError):
        fit(np.ones((10, 4)), np.ones(10, dtype=bool))


def test_triage_applies_the_threshold_of_the_photo_type_and_the_shared_one_otherwise():
    assert triage.thresholds_for(RULES, "clinical")["urgent_malignant_probability"] == 0.15
    assert triage.thresholds_for(RULES, "dermoscopic")["urgent_malignant_probability"] == 0.07
    assert triage.thresholds_for(RULES, None)["urgent_malignant_probability"] == 0.07
    without = {k: v for k, v in RULES.items() if k != triage.BY_PHOTO_TYPE}
    assert triage.thresholds_for(without, "clinical") == without


def test_a_ten_percent_melanoma_is_urgent_through_a_dermoscope_but_not_on_a_phone_photo(fake_classifier):
    fake_classifier.thresholds = RULES
    probabilities = np.full(len(LABELS), 0.1 / 7)
    probabilities[MELANOMA], probabilities[NEVUS] = 0.10, 0.80
    dermoscopic = fake_classifier.result_from_probabilities(probabilities, "dermoscopic")
    camera = fake_classifier.result_from_probabilities(probabilities, "clinical")
    assert dermoscopic.recommendation.level == "urgent" and dermoscopic.photo_type == "dermoscopic"
    assert camera.recommendation.level == "monitor" and camera.photo_type == "clinical"
    assert "photo_type" not in fake_classifier.result_from_probabilities(probabilities).to_wire()


@pytest.mark.parametrize("bias,kind", [(-5.0, "clinical"), (5.0, "dermoscopic")])
def test_a_classified_photo_reports_the_photo_type_its_features_show(fake_classifier, bias, kind):
    fake_classifier.photo_type = PhotoTypeScorer({"weights": [0.0] * 12, "bias": bias})
    assert fake_classifier.classify_bytes(image_bytes()).photo_type == kind


def synthetic_validation(rng: np.random.Generator, n: int = 2000):
    """Camera photos look less malignant to the model; the photo-type rule errs on 5 %."""
    truth = rng.choice([MELANOMA, NEVUS], n)
    true_types = np.where(rng.random(n) < 0.3, "clinical", "dermoscopic")
    malignant_p = np.where(truth == MELANOMA, rng.uniform(0.05, 0.9, n), rng.uniform(0.0, 0.5, n))
    camera = true_types == "clinical"
    malignant_p[camera] = np.where(truth[camera] == MELANOMA, rng.uniform(0.12, 0.9, camera.sum()),
                                   rng.uniform(0.0, 0.3, camera.sum()))
    probabilities = np.zeros((n, len(LABELS)))
    probabilities[:, MELANOMA], probabilities[:, NEVUS] = malignant_p * 0.99, 1 - malignant_p * 0.99
    mistaken = rng.random(n) < 0.05
    other = {"clinical": "dermoscopic", "dermoscopic": "clinical"}
    predicted = [other[t] if m else t for t, m in zip(true_types, mistaken, strict=True)]
    return probabilities, truth, list(true_types), predicted


def test_calibration_picks_per_type_thresholds_that_keep_the_target_on_every_true_type():
    probabilities, truth, true_types, predicted = synthetic_validation(np.random.default_rng(1))
    rejected = np.zeros(len(truth), dtype=bool)
    chosen = choose_thresholds_by_photo_type(referred_at_each_threshold(probabilities, rejected), truth,
                                             true_types, predicted, 0.95)
    assert chosen is not None
    per_photo = [triage.thresholds_for({**RULES, triage.BY_PHOTO_TYPE: chosen["thresholds"]}, kind)
                 for kind in predicted]
    referred = referral.referred(referral.levels(probabilities, per_photo), rejected)
    kinds = np.array(true_types)
    for kind in ("clinical", "dermoscopic"):
        rates = referral.rates(referred[kinds == kind], truth[kinds == kind])
        assert rates["malignant_referral"] >= 0.95
        assert rates["malignant_referral"] == pytest.approx(chosen["malignant_referral"][kind], abs=1e-4)
        assert rates["benign_referral"] == pytest.approx(chosen["benign_referral"][kind], abs=1e-4)
    # Camera photos get the higher threshold, so fewer of their moles are sent to a doctor.
    assert chosen["thresholds"]["clinical"] > chosen["thresholds"]["dermoscopic"]


def test_calibration_gives_up_on_per_type_thresholds_when_no_pair_meets_the_target():
    probabilities, truth, true_types, predicted = synthetic_validation(np.random.default_rng(2))
    rejected = np.asarray(truth == MELANOMA) & (np.random.default_rng(3).random(len(truth)) < 0.2)
    assert choose_thresholds_by_photo_type(referred_at_each_threshold(probabilities, rejected), truth,
                                           true_types, predicted, 0.95) is None
