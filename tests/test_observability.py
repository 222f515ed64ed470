"""Issue 14: one clean JSON log line and one EMF metrics line per request, nothing private in them.

Uploads carry unique markers in the file name, the EXIF ImageDescription and UserComment, the
JPEG comment, and GPS fields; answer fields carry one in their name. Each request through the
function (functions-framework's test client and Lambda) and each webhook delivery must produce
exactly one parseable JSON log line with the operator's fields, and exactly one EMF line, and
no marker anywhere in stdout, stderr or the log records. Fake backend: no TensorFlow.
(The wider no-trace checks, on disk and through the page and bot, are in tests/test_privacy.py.)
"""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid

import pytest
from functions_framework import create_app
from PIL import Image

import bad_inputs
from conftest import REPO
from fakes import LambdaContext, function_url_event

MARK = "SKNSCN-OBS-" + uuid.uuid4().hex[:12]
NAME = f"{MARK}-name.jpg"
GPS = {1: "N", 2: (48.0, 51.0, 29.61), 3: "E", 4: (2.0, 17.0, 40.2)}
REQUEST_FIELDS = {"request_id", "route", "outcome", "http_status", "latency_ms", "cold_start",
                  "model_version", "model_backend"}


def marked_photo(size=(320, 240), dark: bool = False) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = f"{MARK}-description"                              # ImageDescription
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + f"{MARK}-comment".encode()  # UserComment
    exif[0x8825] = GPS                                                  # GPS position
    image = bad_inputs.photo(size)
    if dark:
        image = image.point(lambda v: v // 20)
    return bad_inputs.save(image, "JPEG", quality=90, exif=exif, comment=f"{MARK}-jpeg".encode())


PHOTO = marked_photo()
assert MARK.encode() in PHOTO


def needles() -> list[str]:
    return [MARK, MARK.encode().hex(), base64.b64encode(PHOTO)[:40].decode(), "48.0, 51.0", "29.61"]


def lines(text: str) -> tuple[list[dict], list[dict], list[str]]:
    """(log lines, EMF lines, other lines) of captured output."""
    logs, emf, other = [], [], []
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        (emf if isinstance(data, dict) and "_aws" in data else logs).append(data)
    return logs, emf, other


def assert_clean(captured, caplog) -> None:
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records)
    for where, text in (("stdout", captured.out), ("stderr", captured.err), ("log records", logged)):
        for needle in needles():
            assert needle not in text, f"{needle[:20]!r} in {where}"


@pytest.fixture
def client(fake_service):
    """The function, probed once (as a load balancer would): it has seen its model."""
    app = create_app("classify", str(REPO / "functions" / "main.py")).test_client()
    assert app.get("/").status_code == 200
    return app


# name -> (test client call kwargs, status, outcome, triage level)
REQUESTS = {
    "ok, form with answers": ({"path": "/", "data": {"image": (io.BytesIO(PHOTO), NAME), "changed_size": "yes",
                                                     "irregular_shape": "yes"},
                               "content_type": "multipart/form-data"}, 200, "ok", "urgent"),
    "ok, raw with query answers": ({"path": "/?oozing=yes", "data": PHOTO, "content_type": "image/jpeg"},
                                   200, "ok", None),
    "not recognised": ({"path": "/", "data": {"image": (io.BytesIO(marked_photo(dark=True)), NAME)},
                        "content_type": "multipart/form-data"}, 200, "not_recognised", "retake"),
    "not an image, marker inside": ({"path": "/", "data": {"image": (io.BytesIO(f"text {MARK}".encode() * 50), NAME)},
                                     "content_type": "multipart/form-data"}, 400, "not_an_image", None),
    "bad answer, marker as the field": ({"path": "/", "data": {"image": (io.BytesIO(PHOTO), NAME), MARK: "yes"},
                                         "content_type": "multipart/form-data"}, 400, "bad_answer", None),
    "bad answer, marker as the value": ({"path": "/?changed_size=" + MARK, "data": PHOTO,
                                         "content_type": "image/jpeg"}, 400, "bad_answer", None),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_one_request_one_clean_json_log_line_and_one_metrics_line(name, client, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    kwargs, status, outcome, level = REQUESTS[name]
    capfd.readouterr()
    response = client.post(**kwargs)
    assert response.status_code == status, response.data[:300]
    captured = capfd.readouterr()
    logs, emf, _ = lines(captured.out)
    assert len(logs) == 1, captured.out
    line = logs[0]
    assert line["message"] == "request" and line["service"] == "skinscan-classify"
    assert REQUEST_FIELDS <= set(line), sorted(REQUEST_FIELDS - set(line))
    assert line["request_id"] == response.headers["X-Request-Id"]
    assert line["http_status"] == status and line["outcome"] == outcome
    assert isinstance(line["latency_ms"], float) and isinstance(line["cold_start"], bool)
    assert line["model_backend"] == "fake" and line["model_version"] == "fixture-fake-backend"
    if status == 200:
        assert line["status"] == outcome
    else:
        assert line["code"] == outcome and "field" not in line
        assert response.get_json()["error"]["message"] not in captured.out
    if level:
        assert line["triage_level"] == level
    if "answers" in name and "form" in name:
        assert line["checklist_score"] == 4 and line["checklist_level"] == "urgent"
    assert len(emf) == 1, captured.out
    metrics = emf[0]
    definition = metrics["_aws"]["CloudWatchMetrics"][0]
    assert definition["Namespace"] == "skinscan"
    assert ["service"] in definition["Dimensions"] and ["service", "outcome"] in definition["Dimensions"]
    names = {m["Name"] for m in definition["Metrics"]}
    assert {"Requests", "Latency"} <= names and metrics["outcome"] == outcome
    assert ("Errors" in names) == (status >= 400)
    assert ("NotRecognised" in names) == (outcome == "not_recognised")
    if level:
        assert metrics["triage_level"] == level and ["service", "triage_level"] in definition["Dimensions"]
    assert_clean(captured, caplog)


def test_lambda_invocation_logs_lambdas_request_id(fake_service, capfd, caplog):
    from functions.lambda_handler import handler

    caplog.set_level(logging.DEBUG)
    event = function_url_event(PHOTO, "image/jpeg", query="irregular_colour=yes")
    capfd.readouterr()
    answer = handler(event, LambdaContext(aws_request_id="c0ffee-1234"))
    assert answer["statusCode"] == 200 and answer["headers"]["x-request-id"] == "c0ffee-1234"
    captured = capfd.readouterr()
    logs, emf, _ = lines(captured.out)
    emf = [m for m in emf if "ColdStart" not in m]  # Powertools' own line, on the container's first invocation
    assert len(logs) == 1 and len(emf) == 1, captured.out
    assert isinstance(logs[0]["cold_start"], bool) and logs[0]["function_request_id"] == "c0ffee-1234"
    assert logs[0]["request_id"] == "c0ffee-1234" and logs[0]["route"] == "classify"
    assert logs[0]["checklist_level"] == "soon"
    assert_clean(captured, caplog)


def test_the_document_and_the_probe_are_logged_too(client, capfd):
    capfd.readouterr()
    client.get("/openapi.json")
    client.get("/")
    client.put("/")
    logs, emf, _ = lines(capfd.readouterr().out)
    assert [(line["route"], line["outcome"]) for line in logs] == [
        ("openapi", "openapi"), ("info", "ready"), ("other", "method_not_allowed")]
    assert len(emf) == 3


def test_preloading_the_model_is_timed(fake_service, fixture_model, monkeypatch, capfd):
    from functions import observability

    monkeypatch.setenv("SKINSCAN_MODEL_URI", str(fixture_model))
    observability.preload_model.cache_clear()
    capfd.readouterr()
    observability.preload_model()
    observability.preload_model()  # once per process
    logs, emf, _ = lines(capfd.readouterr().out)
    assert [line["message"] for line in logs] == ["model loaded"]
    assert logs[0]["model_load_ms"] >= 0 and logs[0]["model_version"] == "fixture-random-weights"
    assert [m["Name"] for m in emf[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == ["ModelLoadTime"]


def test_an_event_that_is_not_http_is_one_clean_line_without_warnings(fake_service, capfd):
    """apig-wsgi cannot read it: 400, and still one log line and one metrics line (no empty flush)."""
    from functions.lambda_handler import handler

    handler(function_url_event(b"", method="GET", base64_encoded=False), LambdaContext())  # warm
    capfd.readouterr()
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")  # not even a warning
        answer = handler(["not", "an", "event"], LambdaContext())
    assert answer["statusCode"] == 400
    logs, emf, _ = lines(capfd.readouterr().out)
    assert [(line["route"], line["outcome"]) for line in logs] == [("invalid", "bad_request")] and len(emf) == 1


def test_the_webhook_logs_update_type_outcome_and_latency_never_the_chat(capfd, caplog):
    from bot import webhook
    from bot.app import BotSettings

    caplog.set_level(logging.DEBUG)
    secret = "s3cret-value_0123456789abcdef0123"  # the webhook refuses fewer than 32 characters
    processor = webhook.WebhookProcessor(BotSettings(token="1:x", function_url="http://127.0.0.1:9/"), secret)
    text_update = {"update_id": 7, "message": {"message_id": 1, "text": f"my mole {MARK}",
                                               "chat": {"id": 99, "type": "private", "first_name": MARK}}}
    capfd.readouterr()
    try:
        answers = [
            webhook.handle_webhook({"X-Telegram-Bot-Api-Secret-Token": "wrong"}, json.dumps(text_update), processor),
            webhook.handle_webhook({"X-Telegram-Bot-Api-Secret-Token": secret}, b"[]", processor),
        ]
    finally:
        processor.close()
    assert answers == [(403, b"forbidden"), (200, b"ignored")]
    captured = capfd.readouterr()
    logs, emf, _ = lines(captured.out)
    webhook_lines = [line for line in logs if line.get("message") == "webhook"]
    assert [(line["update_type"], line["outcome"], line["http_status"]) for line in webhook_lines] == [
        ("unauthorised", "forbidden", 403), ("invalid", "ignored", 200)]
    assert all(isinstance(line["latency_ms"], float) for line in webhook_lines)
    assert len(emf) == 2 and emf[0]["service"] == "skinscan-bot"
    assert_clean(captured, caplog)
    assert secret not in captured.out + captured.err


def test_update_types_are_names_from_our_lists():
    from bot.telemetry import update_type

    assert update_type(json.dumps({"update_id": 1, "message": {"photo": [{"file_id": MARK}]}})) == "message.photo"
    assert update_type(json.dumps({"update_id": 1, "message": {MARK: 1}})) == "message.other"
    assert update_type(json.dumps({"update_id": 1, "callback_query": {"data": MARK}})) == "callback_query"
    assert update_type(json.dumps({"update_id": 1, MARK: {}})) == "other"
    assert update_type(b"\xff not json") == "invalid"


def test_the_cleanliness_check_has_teeth(capfd, caplog):
    """A marker that did reach the log (here on purpose) is found, in JSON escaping too."""
    from functions import observability

    capfd.readouterr()
    observability.logger.info("request", extra={"file": NAME})
    captured = capfd.readouterr()
    assert lines(captured.out)[0][0]["file"] == NAME
    with pytest.raises(AssertionError):
        assert_clean(captured, caplog)
