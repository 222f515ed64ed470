"""The model the product ships: present, the seed architecture, verified, and as good as its card says
(overall and for camera and dermoscopic photos apart)."""

from __future__ import annotations

import json

import pytest

from conftest import SKIN9, needs_skin9
from skinscan.labels import LABELS
from skinscan.manifest import manifest_path_for, read_manifest, sha256_file
from skinscan.store import SHIPPED_MODEL
from skinscan.triage import BY_PHOTO_TYPE

CARD_FIGURES = SHIPPED_MODEL.with_name(SHIPPED_MODEL.stem + ".evaluation.json")
TOLERANCE = 0.02


@pytest.mark.slow
def test_the_shipped_model_is_the_seed_architecture_and_matches_its_manifest():
    import keras

    manifest = read_manifest(manifest_path_for(SHIPPED_MODEL))
    assert manifest["sha256"] == sha256_file(SHIPPED_MODEL)
    assert manifest["labels"] == list(LABELS)
    model = keras.models.load_model(SHIPPED_MODEL, compile=False)
    assert model.count_params() == 7_046_729
    assert [layer.__class__.__name__ for layer in model.layers[-3:]] == [
        "GlobalAveragePooling2D", "Dropout", "Dense"]
    assert model.input_shape[1] == manifest["preprocessing"]["size"]


def test_the_shipped_model_was_trained_and_calibrated_not_left_at_random_weights():
    manifest = read_manifest(manifest_path_for(SHIPPED_MODEL))
    assert manifest["training"]["epochs_run"] >= 10
    assert manifest["training"]["split_counts"]["train"] > 9000  # skin9 v2, lesion-grouped
    assert manifest["ood"]["method"] == "mahalanobis-subspace"
    assert manifest["calibration"]["summary"]["fitted_on"]["temperature"] == "val"
    figures = json.loads(CARD_FIGURES.read_text())
    assert figures["top1_accuracy"] > 0.3  # random weights score ~0.11 on nine classes


def test_the_shipped_densenet121_was_trained_by_the_pytorch_trainer_and_exported_within_tolerance():
    training = read_manifest(manifest_path_for(SHIPPED_MODEL))["training"]
    assert training["trainer"].startswith("PyTorch")
    assert training["export_check"]["photos"] >= 32 and training["export_check"]["max_abs_difference"] <= 1e-4


def test_a_shipped_companion_is_verified_calibrated_with_and_has_its_fast_form():
    manifest = read_manifest(manifest_path_for(SHIPPED_MODEL))
    if "companion" not in manifest:
        pytest.skip("the shipped model answers alone")
    companion = manifest["companion"]
    assert sha256_file(SHIPPED_MODEL.with_name(companion["file"])) == companion["sha256"]
    fast = companion["fast_path"]
    assert sha256_file(SHIPPED_MODEL.with_name(fast["file"])) == fast["sha256"]
    assert fast["derived_from"] == companion["sha256"] and fast["verified"]["accepted"]
    assert companion["training"]["export_check"]["max_abs_difference"] <= 1e-4
    assert "averaged with the teacher's" in manifest["calibration"]["summary"]["probabilities"]


def test_the_shipped_triage_has_a_threshold_per_photo_type_that_met_the_referral_target_on_validation():
    manifest = read_manifest(manifest_path_for(SHIPPED_MODEL))
    summary = manifest["calibration"]["summary"]
    chosen = summary["photo_type"]["urgent_thresholds"]
    assert manifest["triage"][BY_PHOTO_TYPE] == chosen["thresholds"]
    assert set(chosen["thresholds"]) == {"clinical", "dermoscopic"} and manifest["photo_type"]["weights"]
    assert min(chosen["malignant_referral"].values()) >= summary["referral_target"] >= 0.95


@pytest.mark.slow
@needs_skin9
def test_held_out_figures_are_at_least_what_the_model_card_claims_for_each_photo_type():
    from skinscan.training.evaluate import evaluate

    claimed = json.loads(CARD_FIGURES.read_text())
    report = evaluate(SHIPPED_MODEL, SKIN9, SHIPPED_MODEL.with_name(SHIPPED_MODEL.stem + ".split.json"), "test")
    assert report["count"] == claimed["count"]
    assert report["non_skin_rejected"] >= claimed["non_skin_rejected"] - TOLERANCE
    groups = [("all", report, claimed)] + [
        (name, report["by_group"][name], claimed["by_group"][name]) for name in ("clinical", "dermoscopic")]
    for name, measured, card in groups:
        assert measured["count"] == card["count"], name
        for key in ("top1_accuracy", "balanced_accuracy", "top4_accuracy", "malignant_referral"):
            assert measured[key] >= card[key] - TOLERANCE, (name, key, measured[key], card[key])
        for key in ("benign_referral", "skin_rejected"):
            assert measured[key] <= card[key] + TOLERANCE, (name, key, measured[key], card[key])
