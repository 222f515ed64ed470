"""The derived LiteRT form: verified against the .h5, preferred when present, refused when altered."""

from __future__ import annotations

import json
import shutil

import boto3
import numpy as np
import pytest

from conftest import FIXTURE_SIZE, SKIN9, needs_skin9
from skinscan.classifier import Classifier
from skinscan.imaging import Preprocessing
from skinscan.training.fastpath import derive, sample_batches
from skinscan.manifest import manifest_path_for, read_manifest
from skinscan.store import resolve

pytest.importorskip("ai_edge_litert", reason="the LiteRT runtime (skinscan[serve]) is not installed")
pytestmark = pytest.mark.slow  # derives the fast form with TensorFlow from a real Keras model


@pytest.fixture(scope="module")
def fast_model(keras_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast")
    model = folder / keras_model.name
    shutil.copy(keras_model, model)
    shutil.copy(manifest_path_for(keras_model), manifest_path_for(model))
    record = derive(model, sample_batches(Preprocessing(FIXTURE_SIZE), None, None))
    assert record["verified"]["accepted"], record
    return model


def test_the_fast_form_matches_the_h5_and_is_recorded_in_the_manifest(fast_model):
    fast = read_manifest(manifest_path_for(fast_model))["fast_path"]
    assert fast["kind"] == "litert-float32"
    assert fast["verified"]["top1_agreement"] == 1.0
    assert fast["verified"]["max_abs_difference"] <= 1e-4
    assert (fast_model.parent / fast["file"]).is_file()


def test_serving_prefers_the_fast_form_and_answers_like_keras(fast_model, photo):
    fast = Classifier.load(fast_model)
    reference = Classifier.load(fast_model, backend="keras")
    assert fast.backend.name == "litert-float32" and reference.backend.name == "keras-h5"
    a, b = fast.classify_bytes(photo), reference.classify_bytes(photo)
    assert [p.label for p in a.predictions] == [p.label for p in b.predictions]
    assert np.allclose([p.probability for p in a.predictions], [p.probability for p in b.predictions], atol=1e-4)


def test_an_altered_fast_form_is_ignored_and_the_h5_serves(fast_model, tmp_path):
    folder = tmp_path / "altered"
    shutil.copytree(fast_model.parent, folder)
    fast_file = folder / read_manifest(manifest_path_for(fast_model))["fast_path"]["file"]
    fast_file.write_bytes(fast_file.read_bytes()[:-8] + b"tampered")
    assert Classifier.load(folder / fast_model.name).backend.name == "keras-h5"


def test_from_s3_only_the_verified_fast_form_is_downloaded(moto_s3, fast_model, tmp_path):
    from skinscan.training.publish import publish_model

    boto3.client("s3").create_bucket(Bucket="models")
    uri = publish_model(fast_model, "s3://models/v1/")
    resolved = resolve(uri)
    cached = sorted(p.name for p in resolved.path.parent.iterdir())
    assert cached == sorted([resolved.path.with_suffix(".json").name,
                             read_manifest(manifest_path_for(fast_model))["fast_path"]["file"]])
    assert Classifier.load(resolved.path, resolved.manifest).backend.name == "litert-float32"


@needs_skin9
def test_shipped_fast_forms_agree_with_their_h5_on_real_photos():
    """The shipped DenseNet121's fast form, and its companion's when the model serves a pair."""
    from skinscan.training.fastpath import agreement
    from skinscan.store import SHIPPED_MODEL

    if not SHIPPED_MODEL.exists():
        pytest.skip("no shipped model in this checkout")
    manifest = read_manifest(manifest_path_for(SHIPPED_MODEL))
    networks = [(SHIPPED_MODEL, manifest)]
    if "companion" in manifest:
        networks.append((SHIPPED_MODEL.with_name(manifest["companion"]["file"]), manifest["companion"]))
    split = SHIPPED_MODEL.with_name(SHIPPED_MODEL.stem + ".split.json")
    for h5, entry in networks:
        assert "fast_path" in entry, f"{h5.name} must ship with its verified fast form"
        batches = sample_batches(Preprocessing.from_dict(entry["preprocessing"]), SKIN9, split, limit=60)
        check = agreement(h5, SHIPPED_MODEL.with_name(entry["fast_path"]["file"]), batches)
        assert check["images"] == 60
        assert check["top1_agreement"] == 1.0
        assert check["max_abs_difference"] <= entry["fast_path"]["verified"]["tolerance"]
        print(h5.name, json.dumps(check))
