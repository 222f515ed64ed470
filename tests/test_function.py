"""The classify function through functions-framework's own test client, and its Lambda twin."""

from __future__ import annotations

import io
import json

import pytest
from functions_framework import create_app

from conftest import REPO, SKIN9, image_bytes, needs_skin9
from fakes import LAMBDA_CONTEXT, function_url_event
from skinscan.labels import LABELS


@pytest.fixture
def client(fixture_model, use_model):
    use_model(fixture_model)
    return create_app("classify", str(REPO / "functions" / "main.py")).test_client()


def error_code(response) -> str:
    assert response.is_json, response.data[:200]
    return response.get_json()["error"]["code"]


def test_get_is_a_readiness_probe_with_labels_and_model(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.get_json()
    assert body["labels"] == list(LABELS)
    assert body["model"]["version"] == "fixture-random-weights"
    assert len(body["model"]["sha256"]) == 64


def test_multipart_upload_returns_a_result(client, photo):
    response = client.post("/", data={"image": (io.BytesIO(photo), "spot.jpg")},
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert body["status"] == "ok" and len(body["predictions"]) == 4
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_raw_image_body_returns_a_result(client, photo):
    response = client.post("/", data=photo, content_type="image/jpeg")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_cors_preflight_is_answered(client):
    response = client.options("/", headers={"Origin": "https://page.example",
                                             "Access-Control-Request-Method": "POST"})
    assert response.status_code == 204
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_an_empty_cors_origin_sends_no_cors_headers_as_deployed_on_aws(client, photo, monkeypatch):
    """On AWS the page is same-origin and integrators call from servers: no browser elsewhere may call."""
    monkeypatch.setenv("SKINSCAN_CORS_ORIGIN", "")
    answers = [client.post("/", data=photo, content_type="image/jpeg"),
               client.post("/", data=b"", content_type="image/jpeg"),
               client.options("/", headers={"Origin": "https://elsewhere.example",
                                            "Access-Control-Request-Method": "POST"})]
    assert [a.status_code for a in answers] == [200, 400, 204]
    for answer in answers:
        assert not [name for name in answer.headers.keys() if name.lower().startswith("access-control-")]


@pytest.mark.parametrize("kwargs,status,code", [
    ({"data": b"not an image at all", "content_type": "image/jpeg"}, 400, "not_an_image"),
    ({"data": image_bytes()[:300], "content_type": "image/jpeg"}, 400, "corrupt_image"),
    ({"data": b"", "content_type": "image/png"}, 400, "empty_image"),
    ({"data": {"photo": (io.BytesIO(b"x"), "a.jpg")}, "content_type": "multipart/form-data"}, 400, "missing_image"),
    ({"data": b'{"image": 1}', "content_type": "application/json"}, 415, "unsupported_media_type"),
    ({"data": b"hello"}, 415, "unsupported_media_type"),
    ({"data": b"\0" * (10 * 1024 * 1024 + 1), "content_type": "image/jpeg"}, 413, "too_large"),
])
def test_bad_requests_get_a_clear_json_error(client, kwargs, status, code):
    response = client.post("/", **kwargs)
    assert response.status_code == status
    assert error_code(response) == code


def test_two_images_in_one_form_are_refused(client, photo):
    response = client.post("/", data={"image": [(io.BytesIO(photo), "a.jpg"), (io.BytesIO(photo), "b.jpg")]},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and error_code(response) == "too_many_images"


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_405(client, method):
    response = getattr(client, method)("/")
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"


def test_missing_model_gives_503_and_recovers_when_it_appears(use_model, tmp_path, fixture_model, photo):
    missing = tmp_path / "models" / "fixture.h5"
    use_model(missing)
    client = create_app("classify", str(REPO / "functions" / "main.py")).test_client()
    response = client.post("/", data=photo, content_type="image/jpeg")
    assert response.status_code == 503 and error_code(response) == "model_unavailable"
    missing.parent.mkdir()
    missing.write_bytes(fixture_model.read_bytes())
    missing.with_suffix(".json").write_bytes(fixture_model.with_suffix(".json").read_bytes())
    assert client.post("/", data=photo, content_type="image/jpeg").status_code == 200


def test_corrupted_local_model_is_refused_with_503(use_model, tmp_path, fixture_model, photo):
    broken = tmp_path / "fixture.h5"
    broken.write_bytes(fixture_model.read_bytes()[:-10] + b"0123456789")
    broken.with_suffix(".json").write_bytes(fixture_model.with_suffix(".json").read_bytes())
    use_model(broken)
    client = create_app("classify", str(REPO / "functions" / "main.py")).test_client()
    response = client.post("/", data=photo, content_type="image/jpeg")
    assert response.status_code == 503


@needs_skin9
def test_a_real_photo_is_classified(client):
    photo = next((SKIN9 / "Melanoma").glob("*.jpg")).read_bytes()
    response = client.post("/", data={"image": (io.BytesIO(photo), "melanoma.jpg")},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    assert response.get_json()["status"] in ("ok", "not_recognised")


def test_lambda_function_url_event_with_a_photo(fixture_model, use_model, photo):
    from functions.lambda_handler import handler

    use_model(fixture_model)
    response = handler(function_url_event(photo, "image/jpeg"), LAMBDA_CONTEXT)
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["status"] == "ok" and len(body["predictions"]) == 4
    assert response["headers"]["content-type"] == "application/json"


def test_lambda_multipart_event_and_readiness_probe(fixture_model, use_model, photo):
    from functions.lambda_handler import handler

    use_model(fixture_model)
    boundary = "----skinscan"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    response = handler(function_url_event(body, f"multipart/form-data; boundary={boundary}"), LAMBDA_CONTEXT)
    assert response["statusCode"] == 200, response["body"]
    probe = handler(function_url_event(b"", "text/plain", method="GET", base64_encoded=False), LAMBDA_CONTEXT)
    assert probe["statusCode"] == 200 and json.loads(probe["body"])["labels"] == list(LABELS)


def test_lambda_base64_garbage_is_a_400(fixture_model, use_model):
    from functions.lambda_handler import handler

    use_model(fixture_model)
    event = function_url_event(b"", "image/jpeg")
    event["body"] = "!!not base64!!"
    response = handler(event, LAMBDA_CONTEXT)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "bad_request"
