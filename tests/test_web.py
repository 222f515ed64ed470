"""The upload page's Flask app: page, config, the no-JavaScript form upload against the real function."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from conftest import free_port, image_bytes
from skinscan.contract import ContractError, Result
from skinscan_client import FunctionClient, FunctionError, percent
from web.app import ERROR_MESSAGES, LEVEL_HEADINGS, MAX_UPLOAD_BYTES, create_app, render_page, result_view

STATIC = Path(__file__).resolve().parents[1] / "web" / "static"


def result_region(html: str) -> str:
    """The server-rendered result section only (the page also carries empty <template> copies)."""
    match = re.search(r'<section class="result-region" id="result"[^>]*>(.*?)</section>\s*<template',
                      html, re.S)
    assert match, "result region not found"
    return match.group(1)


def flat_png(size: int = 120) -> bytes:
    """A flat-colour photo: the real function answers not_recognised (too blurry)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (180, 140, 120)).save(buffer, "PNG")
    return buffer.getvalue()


def post_image(client, data: bytes, filename: str = "photo.jpg", mimetype: str = "image/jpeg"):
    return client.post("/", data={"image": (io.BytesIO(data), filename, mimetype)},
                       content_type="multipart/form-data")


@pytest.fixture
def down_client():
    """The page pointed at a port where nothing listens."""
    return create_app(f"http://127.0.0.1:{free_port()}/").test_client()


@pytest.fixture
def client(function_server):
    return create_app(function_server).test_client()


def test_page_explains_and_offers_a_photo_picker(down_client):
    response = down_client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "What it is not" in html and "Not a diagnosis" in html
    assert re.search(r'<form [^>]*method="post"[^>]*enctype="multipart/form-data"', html)
    inputs = re.findall(r"<input [^>]*>", html)
    assert any('type="file"' in i and 'accept="image/*"' in i and 'name="image"' in i for i in inputs)
    assert any('type="file"' in i and "capture=" in i and 'accept="image/*"' in i for i in inputs)
    assert re.search(r'<label [^>]*for="photo"', html) and re.search(r'<label [^>]*for="camera"', html)
    assert 'aria-live="polite"' in html
    assert "skinscan gives suggestions, not diagnoses" in html  # the standing disclaimer
    # every script is an external file (or a JSON data block): nothing inline to allow in the CSP
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'src="' in tag or 'type="application/json"' in tag, tag
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external resources"


def test_config_js_carries_the_function_url(monkeypatch):
    client = create_app("https://fn.example.net/classify").test_client()
    response = client.get("/config.js")
    assert response.status_code == 200 and "javascript" in response.mimetype
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    config = json.loads(re.fullmatch(r"window\.SKINSCAN_CONFIG = (\{.*\});\n", body, re.S).group(1))
    assert config == {"functionUrl": "https://fn.example.net/classify"}
    assert "connect-src https://fn.example.net;" in response.headers["Content-Security-Policy"]

    monkeypatch.setenv("SKINSCAN_FUNCTION_URL", 'http://127.0.0.1:9999/"</script>')
    body = create_app().test_client().get("/config.js").get_data(as_text=True)
    assert '\\"</script>' in body  # JSON-escaped, so the quote cannot end the string


def test_static_files_are_a_complete_static_site():
    """web/static is what a bucket hosts: the page, its script, style and a default config.js."""
    for name in ("index.html", "app.js", "style.css", "config.js", "favicon.svg"):
        assert (STATIC / name).is_file(), name
    assert "window.SKINSCAN_CONFIG" in (STATIC / "config.js").read_text()
    index = (STATIC / "index.html").read_text(encoding="utf-8")
    assert index == render_page(static_site=True), "stale: run `python -m web --render-index`"
    assert '<meta http-equiv="Content-Security-Policy"' in index
    assert "innerHTML" not in (STATIC / "app.js").read_text()


def test_security_headers_and_no_cookies(down_client):
    response = down_client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert re.search(r"connect-src http://127\.0\.0\.1:\d+;", csp)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in response.headers
    upload = post_image(down_client, b"x")
    assert "Set-Cookie" not in upload.headers and upload.headers["Cache-Control"] == "no-store"
    assert "Content-Security-Policy" in upload.headers


def test_form_upload_renders_predictions_and_recommendation(client):
    response = post_image(client, image_bytes(size=(320, 240)))
    assert response.status_code == 200
    region = result_region(response.get_data(as_text=True))
    assert region.count('data-part="prediction"') == 4
    assert len(re.findall(r'data-slot="percent">(\d{1,3}%|&lt;1%)<', region)) == 4
    assert re.search(r'<meter class="prediction-bar" min="0" max="1" value="[0-9.e-]+"', region)
    heading = re.search(r'data-slot="heading">([^<]+)<', region).group(1)
    assert heading.replace("&#39;", "'") in LEVEL_HEADINGS.values()
    assert re.search(r'data-slot="message">[^<]{20,}<', region)
    assert 'data-part="top"' in region and re.search(r'data-slot="top-description">[^<]{10,}<', region)
    assert "skinscan is not a diagnosis" in region
    assert "Photo: <span" in region and "photo.jpg" in region


def test_unusable_photo_gets_retake_advice(client):
    response = post_image(client, flat_png(), "flat.png", "image/png")
    assert response.status_code == 200
    region = result_region(response.get_data(as_text=True))
    assert "level-retake" in region and LEVEL_HEADINGS["retake"] in region
    assert "How to take a better photo" in region and "in focus" in region.lower()
    assert 'data-part="prediction"' not in region and 'data-part="top"' not in region


def test_not_an_image_gets_a_friendly_message(client):
    response = post_image(client, b"this is a text file, not a photo\n", "notes.jpg")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    region = result_region(html)
    assert ERROR_MESSAGES["not_an_image"] in region.replace("&#39;", "'")
    assert "see a doctor" in region
    assert "Traceback" not in html and "not an image format we can read" not in html  # not the raw API text


def test_function_down_says_unavailable_try_again(down_client):
    response = post_image(down_client, image_bytes())
    assert response.status_code == 503
    region = result_region(response.get_data(as_text=True))
    assert "unavailable" in region and "try again" in region.lower()


def test_no_file_asks_for_one(down_client):
    for data in ({}, {"image": (io.BytesIO(b""), "")}):
        response = down_client.post("/", data=data, content_type="multipart/form-data")
        assert response.status_code == 400
        assert ERROR_MESSAGES["missing_image"] in result_region(response.get_data(as_text=True))
    empty = post_image(down_client, b"", "empty.jpg")
    assert empty.status_code == 400 and "Please choose a photo" in empty.get_data(as_text=True)
    not_multipart = down_client.post("/", data="image=abc", content_type="application/x-www-form-urlencoded")
    assert not_multipart.status_code == 400


def test_too_large_is_refused_before_calling_the_function(down_client):
    response = post_image(down_client, b"\xff" * (MAX_UPLOAD_BYTES + 1))
    assert response.status_code == 413
    assert ERROR_MESSAGES["too_large"] in result_region(response.get_data(as_text=True))
    huge = post_image(down_client, b"\xff" * (MAX_UPLOAD_BYTES + 512 * 1024))  # over the request limit
    assert huge.status_code == 413 and "larger than 10 MB" in huge.get_data(as_text=True)


def test_uploads_stay_in_memory(down_client, monkeypatch):
    import werkzeug.formparser

    def no_disk(*_args, **_kwargs):
        raise AssertionError("an upload was spooled to disk")

    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", no_disk)
    monkeypatch.setattr(werkzeug.formparser, "TemporaryFile", no_disk, raising=False)
    response = post_image(down_client, b"\xff" * (2 * 1024 * 1024))
    assert response.status_code == 503  # reached the (closed) function: parsed without touching disk


def test_html_in_filename_is_escaped(client):
    response = post_image(client, image_bytes(size=(320, 240)), '<img src=x onerror=alert(1)>.jpg')
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;.jpg" in html


def test_function_text_is_escaped_and_odd_answers_are_handled():
    hostile = "<script>alert(1)</script>"
    answer = {"status": "ok", "predictions": [{"label": hostile, "probability": 0.9}],
              "recommendation": {"level": "soon", "see_doctor": True, "message": hostile},
              "top_condition": {"label": hostile, "description": hostile}, "disclaimer": hostile,
              "model": {"name": hostile, "version": "1", "sha256": "0" * 64, "backend": "fake"}}
    region = result_region(render_page(result=result_view(Result.from_wire(answer), filename=hostile)))
    assert "<script>" not in region and region.count("&lt;script&gt;") >= 6
    for odd in ({"status": "weird"}, [], {"status": "ok"},  # not results: the client refuses them (502 page)
                {"status": "ok", "predictions": [], "recommendation": {"level": "new"}}):
        with pytest.raises(ContractError):
            Result.from_wire(odd)
    assert [percent(p) for p in (0.412, 0.004, 0, 1, 0.995, "x")] == ["41%", "<1%", "0%", "100%", "100%", ""]
    assert percent(0.125) == "13%"  # halves round up, on the page (server and script) and in the bot


@pytest.fixture
def fake_function():
    """A stand-in function on loopback whose answer each test sets: (status, body, delay)."""
    answer = {"status": 200, "body": b"{}", "delay": 0.0, "forms": []}

    @Request.application
    def app(request):
        answer["forms"].append(dict(request.form))
        time.sleep(answer["delay"])
        return Response(answer["body"], status=answer["status"], mimetype="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", answer
    finally:
        server.shutdown()


def test_function_failures_become_friendly_messages(fake_function):
    url, answer = fake_function
    client = create_app(url).test_client()
    cases = [
        (503, {"error": {"code": "model_unavailable", "message": "x"}}, 503, "model_unavailable"),
        (413, {"error": {"code": "too_large", "message": "x"}}, 413, "too_large"),
        (415, {"error": {"code": "unsupported_media_type", "message": "x"}}, 415, "not_an_image"),
        (500, b"<html>Internal Server Error</html>", 503, "unavailable"),
        (400, {"error": {"code": "bad_answer", "message": "x", "field": "oozing"}}, 400, "bad_answer"),
        (502, b"Bad gateway", 503, "unavailable"),
        (200, b"not json at all", 502, "unexpected"),
        (200, {"status": "ok"}, 502, "unexpected"),
    ]
    for status, body, expected_status, key in cases:
        answer.update(status=status, body=body if isinstance(body, bytes) else json.dumps(body).encode())
        response = post_image(client, image_bytes())
        html = response.get_data(as_text=True)
        assert response.status_code == expected_status, (status, body)
        assert ERROR_MESSAGES[key] in result_region(html).replace("&#39;", "'"), (status, body)
        assert "Internal Server Error" not in html and "Bad gateway" not in html


@pytest.mark.parametrize("declared", [False, True], ids=["streamed", "declared"])
def test_an_endless_answer_is_read_no_further_than_the_answer_limit(declared):
    """Whatever answers megabytes is not the function: the client stops reading (both clients)."""
    import asyncio

    import httpx

    from skinscan_client import MAX_ANSWER_BYTES

    sent = [0]

    def endless():
        while True:
            sent[0] += 65536
            yield b"{" * 65536

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Length": str(50 * MAX_ANSWER_BYTES)} if declared else {}
        return httpx.Response(200, headers=headers, content=endless())

    async def aendless():
        for chunk in endless():
            yield chunk

    def aanswer(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Length": str(50 * MAX_ANSWER_BYTES)} if declared else {}
        return httpx.Response(200, headers=headers, content=aendless())

    with pytest.raises(FunctionError) as caught:
        FunctionClient("http://function.invalid/", transport=httpx.MockTransport(answer)).classify(image_bytes())
    assert caught.value.code == "unexpected" and sent[0] <= MAX_ANSWER_BYTES + 65536
    sent[0] = 0
    with pytest.raises(FunctionError) as caught:
        asyncio.run(FunctionClient("http://function.invalid/", async_transport=httpx.MockTransport(aanswer))
                    .aclassify(image_bytes()))
    assert caught.value.code == "unexpected" and sent[0] <= MAX_ANSWER_BYTES + 65536


def test_slow_function_times_out(fake_function):
    url, answer = fake_function
    answer["delay"] = 2.0
    started = time.monotonic()
    with pytest.raises(FunctionError) as caught:
        FunctionClient(url, timeout=0.3).classify(image_bytes(), content_type="image/jpeg")
    assert caught.value.code == "timeout" and time.monotonic() - started < 1.5


RAISED = {"status": "ok", "predictions": [{"label": "Melanocytic nevus", "probability": 0.125}],
          "recommendation": {"level": "urgent", "see_doctor": True, "photo_level": "monitor",
                             "raised_by": "checklist",
                             "message": "Please see a doctor or dermatologist soon, ideally within 2 weeks."},
          "checklist": {"score": 4, "answered": 3, "yes": ["changed_size", "irregular_colour"], "unsure": [],
                        "level": "urgent"},
          "disclaimer": "skinscan is not a diagnosis.",
          "model": {"name": "m", "version": "1", "sha256": "0" * 64, "backend": "fake"}}


def test_the_form_offers_the_seven_questions_as_radio_groups(down_client):
    html = down_client.get("/").get_data(as_text=True)
    assert "Answer 7 quick questions for better advice" in html and "NICE guideline NG12" in html
    form = html[html.index('<form id="upload-form"'):html.index("</form>")]
    assert form.count("<fieldset") == 7 and form.count("<legend>") == 7
    for field in ("changed_size", "irregular_shape", "irregular_colour", "diameter_7mm", "inflamed", "oozing",
                  "sensation"):
        for value in ("yes", "no", "unsure"):
            assert f'<input type="radio" id="{field}-{value}" name="{field}" value="{value}">' in form
            assert f'<label for="{field}-{value}">' in form
    assert "checked" not in form  # nothing pre-answered: unanswered questions are not sent


def test_form_answers_go_to_the_function_and_the_effect_is_shown(fake_function):
    url, answer = fake_function
    answer["body"] = json.dumps(RAISED).encode()
    client = create_app(url).test_client()
    response = client.post("/", data={"image": (io.BytesIO(image_bytes()), "spot.jpg", "image/jpeg"),
                                      "changed_size": "yes", "irregular_colour": "yes", "oozing": "no"},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    assert answer["forms"][-1] == {"changed_size": "yes", "irregular_colour": "yes", "oozing": "no"}
    region = result_region(response.get_data(as_text=True))
    assert "Your answers raised this to: see a doctor within 2 weeks." in region
    assert "The photo alone suggested: <span data-slot=\"photo-alone\">Keep an eye on it</span>" in region
    assert ">13%<" in region
    post_image(client, image_bytes())
    assert answer["forms"][-1] == {}  # no answers: none sent


def test_answers_that_do_not_raise_say_so():
    calm = {**RAISED, "recommendation": {"level": "monitor", "see_doctor": False, "message": "Keep an eye on it."},
            "checklist": {"score": 1, "answered": 7, "yes": ["oozing"], "unsure": [], "level": None}}
    region = result_region(render_page(result=result_view(Result.from_wire(calm))))
    assert "did not raise the photo&#39;s suggestion" in region and "photo-alone" not in region
    plain = result_view(Result.from_wire({**calm, "checklist": None}))
    assert plain["checklist"] is None
    assert 'data-part="checklist"' not in result_region(render_page(result=plain))
