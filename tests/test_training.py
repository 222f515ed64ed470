"""Training, calibration, evaluation and the metrics behind them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from skinscan import metrics
from skinscan.labels import LABELS
from skinscan.manifest import manifest_path_for, read_manifest, sha256_file


def test_metrics_on_a_case_with_a_known_answer():
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    assert metrics.confusion_matrix(truth, predicted, 3).tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 2]]
    assert metrics.balanced_accuracy(truth, predicted, 3) == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    rows = metrics.per_class(truth, predicted, 3)
    assert rows[0]["precision"] == pytest.approx(3 / 4) and rows[1]["recall"] == pytest.approx(1 / 2)
    assert rows[2]["f1"] == pytest.approx(1.0)
    probabilities = np.eye(3)[predicted] * 0.7 + 0.1
    assert metrics.top_k_accuracy(truth, probabilities, 1) == pytest.approx(6 / 8)
    assert metrics.top_k_accuracy(truth, probabilities, 3) == pytest.approx(1.0)


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy():
    truth = np.array([0, 0, 0, 1])            # 75% of predictions right at 75% confidence
    probabilities = np.tile([0.75, 0.25], (4, 1))
    assert metrics.expected_calibration_error(truth, probabilities) == pytest.approx(0.0)
    overconfident = np.tile([0.99, 0.01], (4, 1))
    assert metrics.expected_calibration_error(truth, overconfident) == pytest.approx(0.24)


def test_temperature_fit_softens_overconfident_predictions():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (3000, 3))
    honest = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = np.array([rng.choice(3, p=p) for p in honest])  # outcomes drawn from the honest odds
    overconfident = metrics.softmax_with_temperature(honest, 0.25)
    assert metrics.fit_temperature(truth, overconfident) == pytest.approx(4.0, rel=0.1)


def test_stratified_split_is_seeded_and_keeps_every_class(tmp_path):
    from skinscan.training.data import Sample, stratified_split

    samples = [Sample(f"{label}/{i}.jpg", c) for c, label in enumerate(LABELS) for i in range(20)]
    first, again = stratified_split(samples, seed=3), stratified_split(samples, seed=3)
    assert first == again
    assert {s.label for s in first["test"]} == set(range(9)) == {s.label for s in first["val"]}
    assert len(first["train"]) + len(first["val"]) + len(first["test"]) == len(samples)
    assert not {s.path for s in first["train"]} & {s.path for s in first["test"]}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Nine folders of generated photos; each class has its own colour and pattern."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for c, label in enumerate(LABELS):
        (root / label).mkdir()
        for i in range(8):
            base = np.array([40 + 22 * c, 200 - 15 * c, 90 + (c % 3) * 50], np.float32)
            yy, xx = np.mgrid[0:48, 0:48]
            pattern = 40 * np.sin((xx * (c + 1) + yy) / 4.0)[..., None]
            pixels = np.clip(base + pattern + rng.normal(0, 10, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.jpg", quality=95)
    return root


@pytest.mark.slow
def test_train_calibrate_evaluate_end_to_end_on_a_tiny_dataset(tiny_dataset, tmp_path):
    from skinscan.training.calibrate import calibrate
    from skinscan.classifier import Classifier
    from skinscan.training.evaluate import evaluate
    from skinscan.training.train import TrainConfig, train

    out = tmp_path / "tiny.h5"
    summary = train(TrainConfig(data=tiny_dataset, out=out, image_size=32, epochs=1, batch_size=16,
                                verbose=0))
    assert out.is_file() and summary["epochs_run"] == 1 and summary["finished_schedule"]
    manifest = read_manifest(manifest_path_for(out))
    assert manifest["sha256"] == sha256_file(out)
    assert manifest["preprocessing"]["size"] == 32
    split = json.loads(out.with_name("tiny.split.json").read_text())
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 72

    report = calibrate(out, tiny_dataset, out.with_name("tiny.split.json"))
    manifest = read_manifest(manifest_path_for(out))
    assert manifest["calibration"]["temperature"] == pytest.approx(report["temperature"])
    assert 0 < manifest["triage"]["urgent_malignant_probability"] <= 0.6
    assert manifest["ood"]["method"] == "mahalanobis-subspace" and "threshold" in manifest["ood"]

    classifier = Classifier.load(out)
    assert classifier.model_info.sha256 == sha256_file(out)
    evaluation = evaluate(out, tiny_dataset, out.with_name("tiny.split.json"), "test", tmp_path / "report")
    assert evaluation["count"] == len(split["test"])
    assert 0.0 <= evaluation["top1_accuracy"] <= evaluation["top4_accuracy"] <= 1.0
    assert (tmp_path / "report" / "confusion_matrix.png").stat().st_size > 1000
    assert "top-1" in (tmp_path / "report" / "evaluation.txt").read_text()


@pytest.mark.slow
def test_a_calibrated_pair_is_served_through_both_fast_forms_and_answers_like_keras(tiny_dataset, keras_model,
                                                                                   tmp_path):
    """issue 18, item 4 end to end on real Keras networks: a teacher's entry joins the model's manifest at
    calibration, both networks get verified LiteRT forms, and serving runs the pair on them."""
    import shutil

    from skinscan.classifier import Classifier
    from skinscan.imaging import Preprocessing
    from skinscan.training.architecture import build_cnn
    from skinscan.training.calibrate import calibrate
    from skinscan.training.data import discover, stratified_split
    from skinscan.training.evaluate import evaluate
    from skinscan.training.fastpath import derive, sample_batches

    model = tmp_path / "served" / "pair.h5"
    model.parent.mkdir()
    shutil.copy(keras_model, model)
    shutil.copy(manifest_path_for(keras_model), manifest_path_for(model))
    teacher = tmp_path / "teacher-run" / "teacher.h5"
    teacher.parent.mkdir()
    build_cnn(40).save(teacher, include_optimizer=False)  # any Keras network with pooled "features" will do
    entry = {"role": "teacher", "architecture": "the seed's small CNN, standing in for the teacher",
             "file": teacher.name, "sha256": sha256_file(teacher),
             "preprocessing": Preprocessing(40, mean=(0.5,) * 3, std=(0.5,) * 3).to_dict()}
    manifest_path_for(teacher).write_text(json.dumps(entry))
    split = stratified_split(discover(tiny_dataset), seed=0)
    split_file = tmp_path / "tiny.split.json"
    split_file.write_text(json.dumps({"labels": list(LABELS)} | {part: [s.path for s in samples]
                                                                 for part, samples in split.items()}))

    summary = calibrate(model, tiny_dataset, split_file, companion=teacher, companion_weight=0.4)
    manifest = read_manifest(manifest_path_for(model))
    assert manifest["companion"]["weight"] == 0.4 and manifest["companion"]["sha256"] == entry["sha256"]
    assert (model.parent / "teacher.h5").is_file()  # copied beside the model, where serving looks
    assert "averaged with the teacher's" in summary["probabilities"]

    reference = Classifier.load(model, backend="keras")
    assert reference.model_info.backend == "keras-h5+teacher-keras-h5"
    report = evaluate(model, tiny_dataset, split_file, "test")
    assert report["count"] == len(split["test"])

    for record in (derive(model, sample_batches(Preprocessing(32), None, None, limit=8)),
                   derive(model, sample_batches(Preprocessing(40, mean=(0.5,) * 3, std=(0.5,) * 3), None, None,
                                                limit=8), companion=True)):
        assert record["verified"]["accepted"], record
    fast = Classifier.load(model)
    assert fast.model_info.backend == "litert-float32+teacher-litert-float32"
    for photo in sorted(tiny_dataset.glob("*/0.jpg"))[:4]:
        a, b = fast.classify_bytes(photo.read_bytes()), reference.classify_bytes(photo.read_bytes())
        assert [p.label for p in a.predictions] == [p.label for p in b.predictions]
        assert np.allclose([p.probability for p in a.predictions], [p.probability for p in b.predictions], atol=1e-4)


@pytest.mark.slow
def test_a_run_stopped_by_its_time_budget_resumes_where_it_stopped(tiny_dataset, tmp_path):
    from skinscan.training.train import TrainConfig, checkpoint_dir, train

    out = tmp_path / "cnn.h5"
    config = dict(data=tiny_dataset, out=out, image_size=32, epochs=2, batch_size=16, architecture="cnn",
                  verbose=0)
    first = train(TrainConfig(**config, time_budget_minutes=1e-4))
    assert first["epochs_run"] == 1 and not first["finished_schedule"]
    state = json.loads((checkpoint_dir(out) / "state.json").read_text())
    assert state["epoch"] == 1 and (checkpoint_dir(out) / "last.weights.h5").is_file()

    second = train(TrainConfig(**config, resume=checkpoint_dir(out) / "last.weights.h5"))
    assert second["epochs_run"] == 2 and second["finished_schedule"]
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert read_manifest(manifest_path_for(out))["sha256"] == sha256_file(out)


def test_roc_auc_counts_ties_half_and_needs_both_sides():
    assert metrics.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert metrics.roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert metrics.roc_auc(np.array([0.9, 0.2]), np.array([1, 1])) is None


def test_photos_from_the_v2_mirrors_are_named_by_collection_and_the_rest_is_the_seed_archive(tmp_path):
    from skinscan.training.data import SEED_ARCHIVE, photo_sources

    (tmp_path / "SOURCES.csv").write_text(
        "class,file,source_repository,source_path,source_sha256\n"
        "Melanoma,a.jpg,pbanavara/milk10k,x,0\nMelanoma,b.jpg,someone/seed-mirror,y,0\n")
    assert photo_sources(tmp_path) == {"Melanoma/a.jpg": "MILK10k", "Melanoma/b.jpg": SEED_ARCHIVE}
    assert photo_sources(tmp_path / "missing") == {}
