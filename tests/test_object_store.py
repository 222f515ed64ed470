"""The model from S3: a real moto S3 server over HTTP, publish-model, verification, faults."""

from __future__ import annotations

import boto3
import pytest
from functions_framework import create_app

from conftest import REPO
from skinscan.cli import main as cli
from skinscan.training.publish import PublishError, publish_model
from skinscan.store import ModelUnavailable, resolve


@pytest.fixture
def bucket(moto_s3):
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    return client


def test_publish_then_serve_from_s3(bucket, fixture_model, use_model, photo, capsys):
    assert cli(["publish-model", str(fixture_model), "s3://models/skinscan/"]) == 0
    uri = "s3://models/skinscan/fixture.h5"
    assert f"SKINSCAN_MODEL_URI={uri}" in capsys.readouterr().out
    keys = sorted(o["Key"] for o in bucket.list_objects_v2(Bucket="models")["Contents"])
    assert keys == ["skinscan/fixture.h5", "skinscan/fixture.json"]

    use_model(uri)
    client = create_app("classify", str(REPO / "functions" / "main.py")).test_client()
    response = client.post("/", data=photo, content_type="image/jpeg")
    assert response.status_code == 200, response.data
    assert response.get_json()["model"]["version"] == "fixture-random-weights"


def test_model_is_cached_and_reused_after_the_first_download(bucket, fixture_model, tmp_path):
    uri = publish_model(fixture_model, "s3://models/m/")
    first = resolve(uri)
    assert first.path.is_file() and str(tmp_path) in str(first.path)
    mtime = first.path.stat().st_mtime_ns
    second = resolve(uri)
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime


def test_a_swapped_model_object_is_refused(bucket, fixture_model, use_model, photo):
    uri = publish_model(fixture_model, "s3://models/m/")
    bucket.put_object(Bucket="models", Key="m/fixture.h5", Body=fixture_model.read_bytes()[:-1] + b"!")
    with pytest.raises(ModelUnavailable, match="sha256"):
        resolve(uri)
    use_model(uri)
    client = create_app("classify", str(REPO / "functions" / "main.py")).test_client()
    response = client.post("/", data=photo, content_type="image/jpeg")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "model_unavailable"


def test_a_tampered_upload_is_detected_and_removed(bucket, fixture_model, monkeypatch):
    client = boto3.client("s3")
    real_upload = client.upload_file

    def tampering_upload(filename, bucket_name, key, ExtraArgs=None):
        if key.endswith(".h5"):
            client.put_object(Bucket=bucket_name, Key=key, Body=b"not the model")
            return None
        return real_upload(filename, bucket_name, key, ExtraArgs=ExtraArgs)

    monkeypatch.setattr(client, "upload_file", tampering_upload)
    with pytest.raises(PublishError, match="altered"):
        publish_model(fixture_model, "s3://models/t/", client=client)
    assert "Contents" not in bucket.list_objects_v2(Bucket="models", Prefix="t/")


def test_missing_objects_are_a_clear_model_unavailable(bucket):
    with pytest.raises(ModelUnavailable, match="manifest"):
        resolve("s3://models/nothing/here.h5")
    with pytest.raises(ModelUnavailable):
        resolve("s3://no-such-bucket/x.h5")
