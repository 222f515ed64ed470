"""The DenseNet121 served with a companion (issue 18, item 4): probabilities averaged, every file verified.

Both networks run on the fake backend; what is pinned here is the pairing: which network decides
what, and that the companion is fetched, verified and refused exactly like the model itself.
"""

from __future__ import annotations

import json
import shutil

import boto3
import numpy as np
import pytest

from conftest import FIXTURE_SIZE
from fakes import COMPANION_SIZE, FakeBackend, write_fake_pair
from photos import photo_bytes
from skinscan.classifier import Classifier
from skinscan.imaging import Preprocessing, decode, square_pixels, to_model_input
from skinscan.manifest import ManifestError, manifest_path_for, read_companion, read_manifest
from skinscan.metrics import softmax_with_temperature
from skinscan.store import ModelUnavailable, resolve
from skinscan.training.publish import publish_model


@pytest.fixture
def pair(tmp_path):
    folder = tmp_path / "pair-model"
    folder.mkdir()
    return write_fake_pair(folder, FIXTURE_SIZE)


def test_the_pair_answers_the_average_of_both_networks(pair, photo):
    classifier = Classifier.load(pair)
    assert classifier.companion is not None and classifier.companion.weight == 0.5

    image = decode(photo)
    _, densenet = FakeBackend().run(to_model_input(image, Preprocessing(FIXTURE_SIZE)))
    teacher_input = Preprocessing(COMPANION_SIZE, mean=(0.5,) * 3, std=(0.5,) * 3).normalize(
        square_pixels(image, COMPANION_SIZE).astype(np.float32))[np.newaxis]
    _, teacher = FakeBackend().run(teacher_input)
    assert not np.allclose(densenet, teacher, atol=1e-3)  # the two answers differ, so the average is visible
    expected = softmax_with_temperature(0.5 * densenet + 0.5 * teacher, classifier.temperature)[0]

    result = classifier.classify_bytes(photo)
    assert result.status == "ok"
    answered = {p.label: p.probability for p in result.predictions}
    assert answered == {label: pytest.approx(float(expected[i]), abs=1e-4)
                        for i, label in enumerate(classifier.info()["labels"]) if label in answered}


def test_not_recognised_and_the_photo_type_are_the_densenets_alone(pair, photo):
    paired = Classifier.load(pair)
    alone = Classifier(FakeBackend(), {k: v for k, v in paired.manifest.items() if k != "companion"})
    for seed, shade in ((0, 1.0), (1, 1.6), (2, 0.7)):
        image = decode(photo_bytes(seed=seed)).point([min(255, int(value * shade)) for value in range(256)] * 3)
        assert paired.classify_image(image).photo_type == alone.classify_image(image).photo_type is not None

    calls = paired.companion.backend.calls
    dark = decode(photo).point(lambda value: value // 20)  # too dark to read: the quality rule says retake
    assert paired.classify_image(dark).status == "not_recognised"
    assert paired.companion.backend.calls == calls  # the companion never ran on a photo that was turned away


def test_the_answer_names_both_networks(pair, photo):
    result = Classifier.load(pair).classify_bytes(photo)
    assert result.model.backend == "fake+teacher-fake"
    assert result.model.sha256 == read_manifest(manifest_path_for(pair))["sha256"]


def test_a_companion_that_is_not_the_published_file_is_refused(pair):
    teacher = pair.with_name("teacher.h5")
    teacher.write_bytes(teacher.read_bytes() + b"\0")
    with pytest.raises(ManifestError, match="teacher.h5"):
        Classifier.load(pair)
    teacher.unlink()
    with pytest.raises(ManifestError, match="not found"):
        Classifier.load(pair)


def test_a_classifier_serves_both_networks_or_neither(pair, fake_classifier):
    from skinscan.companion import Companion

    manifest = read_manifest(manifest_path_for(pair))
    with pytest.raises(ValueError, match="both or neither"):
        Classifier(FakeBackend(), manifest)
    companion = Companion(FakeBackend(), Preprocessing(COMPANION_SIZE), 0.5)
    with pytest.raises(ValueError, match="both or neither"):
        Classifier(FakeBackend(), fake_classifier.manifest, companion)


SHA = "ab" * 32


@pytest.mark.parametrize("change, complaint", [
    ({"file": "../teacher.h5"}, "plain file name"),
    ({"file": "/etc/teacher.h5"}, "plain file name"),
    ({"sha256": "x"}, "hex digest"),
    ({"weight": 0}, "share"), ({"weight": 1.0}, "share"), ({"weight": "0.5"}, "share"), ({"weight": True}, "share"),
    ({"preprocessing": {"size": 192}}, "size, mean and std"),
    ({"fast_path": {"file": "../t.tflite", "sha256": SHA}}, "companion.fast_path.file"),
])
def test_a_companion_entry_that_does_not_fit_is_refused(pair, tmp_path, change, complaint):
    manifest = json.loads(manifest_path_for(pair).read_text())
    manifest["companion"].update(change)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=complaint):
        read_manifest(path)


def test_only_a_teachers_export_joins_as_a_companion(pair, fixture_model):
    with pytest.raises(ManifestError, match="not a teacher's entry"):
        read_companion(manifest_path_for(fixture_model), 0.5)  # a DenseNet121's manifest is not a companion
    with pytest.raises(ManifestError, match="share"):
        read_companion(manifest_path_for(pair.with_name("teacher.h5")), 1.5)


def test_from_s3_both_networks_are_fetched_and_verified(moto_s3, pair, use_model, photo):
    boto3.client("s3").create_bucket(Bucket="models")
    uri = publish_model(pair, "s3://models/pair/")
    keys = sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="models")["Contents"])
    assert keys == ["pair/pair.h5", "pair/pair.json", "pair/teacher.h5"]

    resolved = resolve(uri)
    assert sorted(p.name for p in resolved.path.parent.iterdir()) == ["pair.h5", "pair.json", "teacher.h5"]
    from skinscan import service

    use_model(uri)
    assert service.get_classifier().classify_bytes(photo).model.backend == "fake+teacher-fake"


def test_a_swapped_companion_object_is_refused(moto_s3, pair, tmp_path, monkeypatch):
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    uri = publish_model(pair, "s3://models/pair/")
    client.put_object(Bucket="models", Key="pair/teacher.h5", Body=b"someone else's network")
    monkeypatch.setenv("SKINSCAN_CACHE_DIR", str(tmp_path / "fresh-cache"))
    with pytest.raises(ModelUnavailable, match="teacher.h5 does not match"):
        resolve(uri)


def test_publishing_refuses_a_pair_whose_companion_changed(moto_s3, pair, tmp_path):
    from skinscan.training.publish import PublishError

    boto3.client("s3").create_bucket(Bucket="models")
    copy = tmp_path / "copy"
    shutil.copytree(pair.parent, copy)
    (copy / "teacher.h5").write_bytes(b"retrained, not re-calibrated")
    with pytest.raises(PublishError, match="teacher.h5"):
        publish_model(copy / pair.name, "s3://models/pair/")
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket="models")
