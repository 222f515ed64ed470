"""The inference core: labels, architecture, pre-processing, triage, manifests, novelty.

Classifier tests run on the fake backend (tests/fakes.py): the core's behaviour
does not depend on what the weights know.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURE_SIZE, image_bytes
from skinscan import triage
from skinscan.classifier import Classifier
from skinscan.imaging import ImageError, Preprocessing, decode, square_pixels, to_model_input
from skinscan.labels import LABELS
from skinscan.manifest import ManifestError, manifest_path_for, read_manifest, verify_model_file
from skinscan.novelty import NoveltyScorer, fit


def test_nine_labels_spelled_and_ordered_as_the_seed():
    assert LABELS == (
        "Actinic keratosis", "Atopic Dermatitis", "Benign keratosis", "Dermatofibroma",
        "Melanocytic nevus", "Melanoma", "Squamous cell carcinoma", "Tinea Ringworm Candidiasis",
        "Vascular lesion",
    )


@pytest.mark.slow
def test_seed_architecture_has_exactly_7046729_parameters():
    from skinscan.training.architecture import SEED_PARAMETER_COUNT, build_densenet121

    model = build_densenet121(64)
    assert SEED_PARAMETER_COUNT == 7_046_729
    assert model.count_params() == 7_046_729
    assert [layer.__class__.__name__ for layer in model.layers[-3:]] == [
        "GlobalAveragePooling2D", "Dropout", "Dense"]
    assert model.output_shape == (None, 9)


@pytest.mark.parametrize("mode,fmt", [
    ("RGB", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("L", "PNG"), ("LA", "PNG"),
    ("CMYK", "JPEG"), ("I;16", "PNG"), ("I", "TIFF"), ("1", "BMP"), ("RGB", "WEBP"), ("RGB", "GIF"),
])
def test_every_image_mode_becomes_an_rgb_model_input(mode, fmt):
    image = decode(image_bytes(mode, fmt=fmt))
    assert image.mode == "RGB"
    batch = to_model_input(image, Preprocessing(48))
    assert batch.shape == (1, 48, 48, 3) and batch.dtype == np.float32
    assert np.isfinite(batch).all()


def test_sixteen_bit_images_are_scaled_not_clipped_to_white():
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "PNG")
    pixels = np.asarray(decode(buffer.getvalue()))
    assert pixels.min() == 0 and pixels.max() >= 250
    assert 100 < pixels.mean() < 155


def test_transparent_areas_become_white():
    rgba = Image.new("RGBA", (40, 40), (10, 20, 30, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    assert np.asarray(decode(buffer.getvalue()))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (200, 100), (200, 150, 120))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    buffer = io.BytesIO()
    wide.save(buffer, "JPEG", exif=exif)
    assert decode(buffer.getvalue()).size == (100, 200)


def test_centre_square_crop_keeps_the_middle():
    image = Image.new("RGB", (300, 100), (0, 0, 255))
    image.paste((255, 0, 0), (100, 0, 200, 100))
    pixels = square_pixels(image, 10)
    assert pixels.shape == (10, 10, 3)
    assert (pixels[..., 0] > 200).all() and (pixels[..., 2] < 50).all()


def test_normalisation_matches_the_documented_formula():
    spec = Preprocessing(4)
    pixels = np.full((4, 4, 3), 255, dtype=np.float32)
    expected = (1.0 - np.array(spec.mean)) / np.array(spec.std)
    assert np.allclose(spec.normalize(pixels)[0, 0], expected)


@pytest.mark.parametrize("data,code", [
    (b"", "empty_image"), (b"hello, I am text", "not_an_image"),
    (image_bytes()[:200], "corrupt_image"),
])
def test_undecodable_bytes_raise_a_coded_error(data, code):
    with pytest.raises(ImageError) as caught:
        decode(data)
    assert caught.value.code == code


def probabilities(**given: float) -> dict[str, float]:
    rest = (1.0 - sum(given.values())) / (len(LABELS) - len(given))
    return {label: given.get(label, rest) for label in LABELS}


THRESHOLDS = {"urgent_malignant_probability": 0.3, "soon_risk_probability": 0.6}


@pytest.mark.parametrize("top,level", [
    ("Melanoma", "urgent"), ("Squamous cell carcinoma", "urgent"), ("Actinic keratosis", "soon"),
    ("Atopic Dermatitis", "routine"), ("Tinea Ringworm Candidiasis", "routine"),
    ("Melanocytic nevus", "monitor"), ("Benign keratosis", "monitor"), ("Dermatofibroma", "monitor"),
    ("Vascular lesion", "monitor"),
])
def test_triage_level_follows_the_top_condition(top, level):
    advice = triage.recommend(probabilities(**{top: 0.9}), {"urgent_malignant_probability": 0.95,
                                                            "soon_risk_probability": 1.01})
    assert advice.level == level
    assert advice.see_doctor == (level in ("urgent", "soon"))


def test_a_35_percent_melanoma_under_a_40_percent_mole_is_still_urgent():
    advice = triage.recommend(probabilities(**{"Melanocytic nevus": 0.40, "Melanoma": 0.35}), THRESHOLDS)
    assert advice.level == "urgent"
    assert "Melanoma" in advice.message


def test_combined_malignant_probability_escalates_even_when_each_part_is_small():
    advice = triage.recommend(probabilities(**{"Benign keratosis": 0.5, "Melanoma": 0.16,
                                               "Squamous cell carcinoma": 0.16}), THRESHOLDS)
    assert advice.level == "urgent"
    assert advice.malignant_probability == pytest.approx(0.32)


def test_risk_below_the_urgent_threshold_but_above_soon_refers_soon():
    advice = triage.recommend(probabilities(**{"Benign keratosis": 0.35, "Melanoma": 0.2,
                                               "Actinic keratosis": 0.42}), THRESHOLDS)
    assert advice.level == "soon"


def test_an_unsure_benign_answer_still_points_to_a_doctor():
    unsure = triage.recommend(probabilities(**{"Melanocytic nevus": 0.3, "Melanoma": 0.05}),
                              {**THRESHOLDS, "confident_probability": 0.5})
    assert unsure.level == "monitor" and unsure.confident is False
    assert unsure.message.endswith(triage.UNSURE)
    sure = triage.recommend(probabilities(**{"Melanocytic nevus": 0.8}), THRESHOLDS)
    assert sure.confident is True and triage.UNSURE not in sure.message


def test_retake_advice_names_the_problem_and_still_points_to_a_doctor():
    advice = triage.retake("too_dark")
    assert advice.level == "retake"
    assert "too dark" in advice.message and "doctor" in advice.message


def test_a_fast_form_beside_the_manifest_is_accepted(fixture_model, tmp_path):
    manifest = json.loads(manifest_path_for(fixture_model).read_text())
    manifest["fast_path"] = {"kind": "litert-float32", "file": "skinscan-fixture.tflite", "sha256": FAST_SHA}
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(manifest))
    assert read_manifest(path)["fast_path"]["file"] == "skinscan-fixture.tflite"


def test_manifest_round_trip_and_sha256_verification(fixture_model, tmp_path):
    manifest = read_manifest(manifest_path_for(fixture_model))
    assert manifest["labels"] == list(LABELS)
    assert manifest["preprocessing"]["size"] == FIXTURE_SIZE
    assert verify_model_file(fixture_model, manifest) == manifest["sha256"]
    tampered = tmp_path / "tampered.h5"
    tampered.write_bytes(fixture_model.read_bytes() + b"\0")
    with pytest.raises(ManifestError, match="does not match"):
        verify_model_file(tampered, manifest)


FAST_SHA = "ab" * 32


@pytest.mark.parametrize("change", [
    {"labels": list(reversed(LABELS))}, {"format": 99}, {"sha256": "nothex"}, {"triage": None},
    # The fast form's file is joined to the model's folder and S3 key: a path would climb out of them.
    {"fast_path": {"file": "../../outside.tflite", "sha256": FAST_SHA}},
    {"fast_path": {"file": "/etc/cron.d/x", "sha256": FAST_SHA}},
    {"fast_path": {"file": "models/m.tflite", "sha256": FAST_SHA}},
    {"fast_path": {"file": "..", "sha256": FAST_SHA}}, {"fast_path": {"file": "a\\b.tflite", "sha256": FAST_SHA}},
    {"fast_path": {"file": 7, "sha256": FAST_SHA}}, {"fast_path": {"file": "m.tflite", "sha256": "x"}},
    {"fast_path": "m.tflite"},
])
def test_manifests_that_do_not_fit_are_refused(fixture_model, tmp_path, change):
    manifest = json.loads(manifest_path_for(fixture_model).read_text())
    manifest.update(change)
    if change.get("triage", 0) is None:
        del manifest["triage"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ManifestError):
        read_manifest(path)


def test_classifier_returns_top4_descending_with_advice_and_disclaimer(fixture_model, photo):
    classifier = Classifier.load(fixture_model)
    result = classifier.classify_bytes(photo)
    assert result.status == "ok"
    probabilities_ = [p.probability for p in result.predictions]
    assert len(probabilities_) == 4 and probabilities_ == sorted(probabilities_, reverse=True)
    assert {p.label for p in result.predictions} <= set(LABELS)
    assert result.recommendation.level in triage.LEVELS
    assert result.disclaimer == triage.DISCLAIMER
    assert result.model.sha256 == read_manifest(manifest_path_for(fixture_model))["sha256"]
    assert result.top_condition.label == result.predictions[0].label


def test_unusable_photos_are_not_recognised_with_retake_advice(fixture_model):
    classifier = Classifier.load(fixture_model)
    dark = image_bytes(size=(120, 120))
    dark_image = Image.open(io.BytesIO(dark)).point(lambda v: v // 20)
    buffer = io.BytesIO()
    dark_image.save(buffer, "PNG")
    result = classifier.classify_bytes(buffer.getvalue())
    assert result.status == "not_recognised"
    assert result.predictions == ()
    assert result.recommendation.reason == "too_dark"
    flat = io.BytesIO()
    Image.new("RGB", (120, 120), (180, 140, 120)).save(flat, "PNG")
    assert classifier.classify_bytes(flat.getvalue()).recommendation.reason == "too_blurry"
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8), (180, 140, 120)).save(tiny, "PNG")
    assert classifier.classify_bytes(tiny.getvalue()).recommendation.reason == "too_small"


def test_the_fake_backend_is_deterministic_and_sees_the_photo(fake_classifier, photo):
    assert fake_classifier.classify_bytes(photo) == fake_classifier.classify_bytes(photo)
    other = image_bytes(seed=3, size=(120, 160))
    assert fake_classifier.classify_bytes(photo).predictions != fake_classifier.classify_bytes(other).predictions
    assert fake_classifier.model_info.backend == "fake"


def test_a_fake_model_file_loads_through_the_verified_path(fixture_model):
    classifier = Classifier.load(fixture_model)
    assert classifier.backend.name == "fake"
    assert classifier.manifest["sha256"] == read_manifest(manifest_path_for(fixture_model))["sha256"]


def test_novelty_scorer_flags_features_far_from_every_class():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (9, 16))
    labels = np.repeat(np.arange(9), 40)
    features = centres[labels] + rng.normal(0, 1, (len(labels), 16))
    spec = fit(features, labels, 9, dims=8)
    scorer = NoveltyScorer({**spec, "threshold": 3.0})
    inside = centres + rng.normal(0, 1, centres.shape)
    outside = rng.normal(0, 1, (9, 16)) * 30
    assert not scorer.is_novel(inside).any()
    assert scorer.is_novel(outside).all()


def test_classify_command_takes_the_model_explicitly_without_touching_the_environment(fixture_model, tmp_path,
                                                                                        capsys, monkeypatch):
    import os

    from skinscan.cli import main as cli

    monkeypatch.delenv("SKINSCAN_MODEL_URI", raising=False)
    photo_file = tmp_path / "spot.jpg"
    photo_file.write_bytes(image_bytes())
    assert cli(["classify", "--model", str(fixture_model), str(photo_file)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "ok" and answer["model"]["backend"] == "fake"
    assert "SKINSCAN_MODEL_URI" not in os.environ
    assert cli(["classify", "--model", str(tmp_path / "missing.h5"), str(photo_file)]) == 3
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "model_unavailable"
