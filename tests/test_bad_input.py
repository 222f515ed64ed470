"""Bad, odd and hostile input never gets a 5xx, and every way in keeps serving.

The corpus (``tests/bad_inputs.py``, generated, nothing committed) goes through
the classify function (functions-framework's test client and real HTTP on
loopback), the Lambda handler, the page's no-JavaScript form and the bot
(Bot API emulator). Each kind has one expected answer: a clear 4xx JSON error
with its code, or a 200 result where the input really is an image. Hypothesis
then throws arbitrary bytes and content types at the decoder and the request
parser.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import time
import warnings
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from functions_framework import create_app as create_function_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

import bad_inputs
from bad_inputs import LIMIT, OK, FileCase, files, fixture_service, multipart, requests, served  # noqa: F401
from conftest import REPO
from fakes import LAMBDA_CONTEXT, function_url_event
from functions import http_api
from skinscan.imaging import MAX_PIXELS, ImageError, decode

RESULT_STATUSES = ("ok", "not_recognised")


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture
def client(fixture_service):
    return create_function_app("classify", str(REPO / "functions" / "main.py")).test_client()


def check_answer(label: str, status: int, body: bytes, want_status: int, want_code: str | None,
                 problems: list[str]) -> None:
    """One answer against its expectation; problems are collected so one run reports them all."""
    try:
        payload = json.loads(body)
    except ValueError:
        problems.append(f"{label}: {status}, not JSON: {body[:120]!r}")
        return
    if status >= 500:
        problems.append(f"{label}: {status} {payload}")
        return
    if status != want_status:
        problems.append(f"{label}: expected {want_status} {want_code}, got {status} {payload}")
        return
    if want_code is OK:
        if payload.get("status") not in RESULT_STATUSES:
            problems.append(f"{label}: 200 without a result: {payload}")
        return
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or error.get("code") != want_code:
        problems.append(f"{label}: expected code {want_code}, got {payload}")
    elif not (isinstance(error.get("message"), str) and len(error["message"]) > 10):
        problems.append(f"{label}: no readable message: {payload}")


def http_post(url: str, body: bytes, content_type: str | None, headers: dict[str, str] | None = None,
              method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        connection.request(method, parts.path or "/", body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def raw_http(url: str, head: bytes, body: bytes = b"", half_close: bool = False,
             timeout: float = 20.0) -> tuple[int, bytes, float]:
    """Send bytes exactly as given on a socket; ``(status, body, seconds to the answer)``."""
    parts = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                head_part, _, rest = answer.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(rest) >= length[0]:
                    break
    elapsed = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2], elapsed


def good_photo_still_works(post) -> None:
    status, body = post(bad_inputs.jpeg((320, 240)), "image/jpeg")
    assert status == 200 and json.loads(body)["status"] == "ok", body[:300]


lambda_event = function_url_event


def test_the_corpus_has_at_least_30_kinds_and_covers_every_required_kind():
    names = " ".join(bad_inputs.kinds()).lower()
    assert len(bad_inputs.kinds()) >= 30
    for needed in ("empty", "random bytes", "cut in half", "text", "html", "pdf", "zip", "content type",
                   "without the image field", "two images", "bomb", "aspect ratio", "1 x 1", "cmyk",
                   "16-bit", "palette png with transparency", "animated gif", "webp", "exif-rotated",
                   "10 mb + 1"):
        assert needed in names, needed


# -- the function ----------------------------------------------------------------------------------
def run_function_corpus(post_raw, post_multipart) -> tuple[int, list[str]]:
    problems: list[str] = []
    sent = 0
    for case in files():
        status, body = post_raw(case.data, case.mime)
        check_answer(f"raw {case.name}", status, body, case.status, case.code, problems)
        status, body = post_multipart(case)
        check_answer(f"form {case.name}", status, body, case.status, case.code, problems)
        sent += 2
    for case in requests():
        status, body = post_raw(case.body, case.content_type)
        check_answer(case.name, status, body, case.status, case.code, problems)
        sent += 1
    return sent, problems


def test_function_corpus_through_the_test_client(client):
    def post_raw(body, content_type):
        kwargs = {"content_type": content_type} if content_type is not None else {}
        response = client.post("/", data=body, **kwargs)
        return response.status_code, response.data

    def post_multipart(case: FileCase):
        response = client.post("/", data={"image": (io.BytesIO(case.data), case.filename, case.mime)},
                               content_type="multipart/form-data")
        return response.status_code, response.data

    sent, problems = run_function_corpus(post_raw, post_multipart)
    assert not problems, "\n".join(problems)
    big = client.post("/", data=bad_inputs.big_camera_file(), content_type="image/jpeg")
    assert big.status_code == 413 and big.get_json()["error"]["code"] == "too_large"
    good_photo_still_works(post_raw)
    print(f"\nfunction (test client): {len(bad_inputs.kinds())} kinds, {sent + 1} bad requests, 0 5xx")


def test_function_corpus_over_real_http(served):
    def post_raw(body, content_type):
        status, _, data = http_post(served, body, content_type)
        return status, data

    def post_multipart(case: FileCase):
        body, content_type = multipart([("image", case.filename, case.data, case.mime)])
        return post_raw(body, content_type)

    sent, problems = run_function_corpus(post_raw, post_multipart)
    assert not problems, "\n".join(problems)
    good_photo_still_works(post_raw)
    status, _, data = http_post(served, b"", None, method="GET")
    assert status == 200 and json.loads(data)["labels"]  # the readiness probe still answers
    print(f"\nfunction (HTTP): {len(bad_inputs.kinds())} kinds, {sent} bad requests, 0 5xx")


def test_a_50mb_upload_is_refused_from_its_content_length_before_the_body_is_read(served):
    """Only 64 KB of the declared 50 MB is ever sent: the answer cannot have waited for the body."""
    declared = 50 * 1024 * 1024
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {declared}\r\n\r\n"
            ).encode()
    status, body, seconds = raw_http(served, head, b"\xff" * 65536)
    assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
    assert seconds < 10


def chunked(head_lines: str, body: bytes, piece: int = 256 * 1024) -> bytes:
    out = [head_lines.encode() + b"Transfer-Encoding: chunked\r\n\r\n"]
    for start in range(0, len(body), piece):
        block = body[start:start + piece]
        out.append(f"{len(block):x}\r\n".encode() + block + b"\r\n")
    out.append(b"0\r\n\r\n")
    return b"".join(out)


@pytest.mark.parametrize("form", [False, True], ids=["raw", "multipart"])
def test_an_upload_without_content_length_is_cut_off_at_the_limit(client, form):
    """Chunked uploads declare no length; the limit must hold while reading (in-process: bytes counted)."""
    class Endless(io.RawIOBase):
        """An upload that never ends, counting what the server reads."""

        def __init__(self, prefix: bytes) -> None:
            self.prefix, self.read_bytes = prefix, 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            size = min(len(buffer), 1 << 20)
            chunk = (self.prefix + b"\0" * size)[:size] if self.read_bytes == 0 else b"\0" * size
            buffer[:size] = chunk
            self.read_bytes += size
            assert self.read_bytes < 4 * LIMIT, "the server keeps reading past the limit"
            return size

    if form:
        prefix = (b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
                  b"Content-Type: image/jpeg\r\n\r\n")
        content_type = "multipart/form-data; boundary=xyz"
    else:
        prefix, content_type = b"\xff\xd8", "image/jpeg"
    stream = Endless(prefix)
    environ = EnvironBuilder(method="POST").get_environ()
    environ.update({"wsgi.input": io.BufferedReader(stream), "wsgi.input_terminated": True,
                    "CONTENT_TYPE": content_type})
    environ.pop("CONTENT_LENGTH", None)
    response = http_api.respond(Request(environ))
    assert response.status_code == 413 and json.loads(response.get_data())["error"]["code"] == "too_large"
    assert stream.read_bytes <= LIMIT + 2 * (1 << 20)


@pytest.mark.parametrize("form", [False, True], ids=["raw", "multipart"])
def test_a_chunked_upload_over_the_limit_gets_413_over_http(served, form):
    data = b"\xff\xd8" + b"\0" * (LIMIT + 100)
    if form:
        body, content_type = multipart([("image", "big.jpg", data, "image/jpeg")])
    else:
        body, content_type = data, "image/jpeg"
    status, answer, _ = raw_http(served, chunked(
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n", body))
    assert status == 413 and json.loads(answer)["error"]["code"] == "too_large"
    good = bad_inputs.jpeg()
    status, answer, _ = raw_http(served, chunked(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n", good, piece=1000))
    assert status == 200 and json.loads(answer)["status"] in RESULT_STATUSES  # chunked itself is fine


@pytest.mark.parametrize("form", [False, True], ids=["raw", "multipart"])
def test_a_broken_upload_that_stops_early_is_a_400_not_a_500(served, form):
    """The client promises more bytes than it sends, then stops sending (connection half-closed)."""
    photo = bad_inputs.jpeg()
    if form:
        body, content_type = multipart([("image", "a.jpg", photo, "image/jpeg")])
    else:
        body, content_type = photo, "image/jpeg"
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) + 5000}\r\n\r\n").encode()
    status, answer, _ = raw_http(served, head, body[: len(body) // 2], half_close=True)
    assert status == 400, answer
    assert json.loads(answer)["error"]["code"] in ("bad_request", "corrupt_image")
    good_photo_still_works(lambda b, t: http_post(served, b, t)[::2])


def test_phone_sized_photos_are_accepted_as_form_uploads(served):
    """Regression: the form parser's 64 KB memory cap refused every multipart photo over ~64 KB
    as "over the 10 MB limit" -- and the page and the bot both send multipart."""
    import asyncio

    from skinscan_client import FunctionClient
    from web.app import create_app

    photo = bad_inputs.save(bad_inputs.photo((3000, 2250)), "JPEG", quality=92)
    assert 1024 * 1024 < len(photo) < LIMIT
    body, content_type = multipart([("image", "IMG_0001.jpg", photo, "image/jpeg")])
    status, _, answer = http_post(served, body, content_type)
    assert status == 200 and json.loads(answer)["status"] in RESULT_STATUSES, answer[:200]
    page = create_app(served).test_client().post(
        "/", data={"image": (io.BytesIO(photo), "IMG_0001.jpg", "image/jpeg")}, content_type="multipart/form-data")
    assert page.status_code == 200
    result = asyncio.run(FunctionClient(served, timeout=60).aclassify(photo, filename="photo.jpg",
                                                                      content_type="image/jpeg"))
    assert result.status in RESULT_STATUSES


# -- the Lambda handler ----------------------------------------------------------------------------
def test_lambda_corpus(fixture_service):
    from functions.lambda_handler import handler


    def post_raw(body, content_type):
        answer = handler(lambda_event(body, content_type), LAMBDA_CONTEXT)
        return answer["statusCode"], answer["body"].encode()

    def post_multipart(case: FileCase):
        body, content_type = multipart([("image", case.filename, case.data, case.mime)])
        return post_raw(body, content_type)

    sent, problems = run_function_corpus(post_raw, post_multipart)
    # Lambda-only oddities: the event itself is malformed.
    odd_events = [
        ("base64 garbage", {**lambda_event(b"", "image/jpeg"), "body": "%%% not base64 !!!"}, 400, "bad_request"),
        ("base64 with a bad length", {**lambda_event(b"", "image/jpeg"), "body": "QUJDR"}, 400, "bad_request"),
        ("base64 of nothing useful", lambda_event(b"\0\1\2", "image/png"), 400, "not_an_image"),
        ("binary sent as text", lambda_event(bad_inputs.jpeg(), "image/jpeg", base64_encoded=False), 400, None),
        ("no body", {**lambda_event(b"", "image/jpeg"), "body": None}, 400, "empty_image"),
        ("not a dict", ["an", "array"], 400, "bad_request"),
        ("REST v1 event", {"httpMethod": "POST", "path": "/", "headers": {"Content-Type": "image/jpeg"},
                           "body": base64.b64encode(bad_inputs.jpeg()).decode(), "isBase64Encoded": True},
         200, OK),
        ("PUT", lambda_event(b"x", "image/jpeg", method="PUT"), 405, "method_not_allowed"),
    ]
    for label, event, status, code in odd_events:
        answer = handler(event, LAMBDA_CONTEXT)
        if code is None and answer["statusCode"] == 400:  # any clear 4xx code will do
            code = json.loads(answer["body"])["error"]["code"]
        check_answer(f"lambda {label}", answer["statusCode"], answer["body"].encode(), status, code, problems)
        sent += 1
    assert not problems, "\n".join(problems)
    good_photo_still_works(post_raw)
    print(f"\nlambda: {len(bad_inputs.kinds()) + len(odd_events)} kinds, {sent} bad events, 0 5xx")


# -- the page (no-JavaScript form post) ------------------------------------------------------------
def test_page_corpus_gets_friendly_pages_never_a_500(served):
    from web.app import ERROR_MESSAGES, LEVEL_HEADINGS, create_app

    page = create_app(served).test_client()
    friendly = [message.replace("'", "&#39;") for message in ERROR_MESSAGES.values()]
    problems: list[str] = []

    def check(label: str, response, want_status: int, want_result: bool) -> None:
        html = response.get_data(as_text=True)
        if response.status_code >= 500:
            problems.append(f"{label}: {response.status_code}")
        elif response.status_code != want_status:
            problems.append(f"{label}: expected {want_status}, got {response.status_code}")
        elif response.mimetype != "text/html" or "Content-Security-Policy" not in response.headers:
            problems.append(f"{label}: not the page, or no CSP")
        elif want_result and not any(h.replace("'", "&#39;") in html for h in LEVEL_HEADINGS.values()):
            problems.append(f"{label}: no result shown")
        elif not want_result and not any(message in html for message in friendly):
            problems.append(f"{label}: no friendly message")
        if "Traceback" in html or "internal_error" in html:
            problems.append(f"{label}: leaks internals")

    for case in files():
        response = page.post("/", data={"image": (io.BytesIO(case.data), case.filename, case.mime)},
                             content_type="multipart/form-data")
        check(case.name, response, case.status, case.is_image)
    good = bad_inputs.jpeg()
    odd_requests = [
        ("no image field", {"data": {"photo": (io.BytesIO(good), "a.jpg")},
                            "content_type": "multipart/form-data"}, 400, False),
        ("two files: the first is used", {"data": {"image": [(io.BytesIO(good), "a.jpg"),
                                                             (io.BytesIO(b"junk"), "b.jpg")]},
                                          "content_type": "multipart/form-data"}, 200, True),
        ("raw JPEG body", {"data": good, "content_type": "image/jpeg"}, 400, False),
        ("no content type", {"data": good}, 400, False),
        ("multipart without a boundary", {"data": good, "content_type": "multipart/form-data"}, 400, False),
        ("file just over 10 MB", {"data": {"image": (io.BytesIO(b"\xff" * (LIMIT + 1)), "a.jpg")},
                                  "content_type": "multipart/form-data"}, 413, False),
        ("50 MB camera file", {"data": {"image": (io.BytesIO(bad_inputs.big_camera_file()), "big.jpg")},
                               "content_type": "multipart/form-data"}, 413, False),
    ]
    for label, kwargs, status, is_result in odd_requests:
        check(label, page.post("/", **kwargs), status, is_result)
    assert not problems, "\n".join(problems)
    ok = page.post("/", data={"image": (io.BytesIO(bad_inputs.jpeg((320, 240))), "ok.jpg")},
                   content_type="multipart/form-data")
    assert ok.status_code == 200
    print(f"\npage: {len(files()) + len(odd_requests)} kinds, 0 5xx")


# -- the bot ---------------------------------------------------------------------------------------
@pytest.mark.slow  # the whole corpus through the Telegram emulator: ~20 s
def test_bot_answers_every_bad_file_and_keeps_working(served):
    from bot import replies
    from telegram_emulator import TelegramEmulator
    from test_bot import converse, make_app

    unreadable, too_big = replies.UNREADABLE_IMAGE, replies.too_big_to_analyse(LIMIT)
    with TelegramEmulator() as emulator:
        app = make_app(emulator, served, rate_limit_per_minute=10_000)
        updates, expected = [], []
        for case in files():
            updates.append(emulator.send_document(1, case.data, case.filename, case.mime))
            if not case.mime.startswith("image/"):
                expected.append((case.name, {replies.NOT_AN_IMAGE_FILE}))
            elif case.is_image:
                expected.append((case.name, "result"))
            else:
                expected.append((case.name, {unreadable}))
        updates.append(emulator.send_document(1, b"\xff" * (LIMIT + 1), "big.jpg", "image/jpeg"))
        expected.append(("just over 10 MB", {too_big}))
        for case in files():  # odd but real JPEGs also arrive as Telegram "photos"
            if case.is_image and case.mime == "image/jpeg" and "bomb" not in case.name:
                updates.append(emulator.send_photo(1, case.data))
                expected.append((f"photo: {case.name}", "result"))
        updates.append(emulator.send_photo(1, bad_inputs.jpeg((320, 240))))
        expected.append(("a good photo afterwards", "ok"))
        converse(app, *updates)
        texts = emulator.texts(1)

    assert len(texts) == len(expected), f"{len(texts)} replies to {len(expected)} messages"
    problems = []
    for (label, want), text in zip(expected, texts, strict=True):
        is_result = text.startswith("This photo looks most like:") or text.startswith("We could not recognise")
        if want == "result" and not is_result:
            problems.append(f"{label}: {text[:80]!r}")
        elif want == "ok" and not text.startswith("This photo looks most like:"):
            problems.append(f"{label}: {text[:80]!r}")
        elif isinstance(want, set) and text not in want:
            problems.append(f"{label}: {text[:80]!r}")
    assert not problems, "\n".join(problems)
    assert replies.TRY_AGAIN_LATER not in texts  # the function never failed on bad input
    print(f"\nbot: {len(expected)} messages, {len(texts)} replies")


# -- EXIF orientation: classified upright ----------------------------------------------------------
# How to store an upright picture so that a viewer applying each EXIF orientation shows it upright.
STORE_FOR_ORIENTATION = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_90],     # shown rotated 90 degrees clockwise
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


def stored_with_orientation(upright: Image.Image, orientation: int, fmt: str) -> bytes:
    stored = upright
    for step in STORE_FOR_ORIENTATION[orientation]:
        stored = stored.transpose(step)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return bad_inputs.save(stored, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


@pytest.mark.parametrize("orientation", sorted(STORE_FOR_ORIENTATION))
def test_exif_rotated_photos_decode_to_the_upright_pixels(orientation):
    upright = bad_inputs.photo((96, 64))
    data = stored_with_orientation(upright, orientation, "PNG")  # lossless: pixels must match exactly
    assert Image.open(io.BytesIO(data)).size != upright.size or orientation in (2, 3, 4)
    assert np.array_equal(np.asarray(decode(data)), np.asarray(upright))
    # and the stored transform is really what the orientation undoes (Pillow agrees)
    assert np.array_equal(np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")),
                          np.asarray(upright))


def test_an_exif_rotated_photo_gets_the_same_result_as_the_upright_photo(client):
    upright = bad_inputs.photo((320, 240), seed=3)

    def predictions(data: bytes) -> list[dict[str, Any]]:
        response = client.post("/", data=data, content_type="image/jpeg")
        assert response.status_code == 200, response.data
        body = response.get_json()
        assert body["status"] == "ok", body
        return body["predictions"]

    reference = predictions(bad_inputs.save(upright, "PNG"))
    for orientation in (3, 6, 8):
        lossless = predictions(stored_with_orientation(upright, orientation, "PNG"))
        assert lossless == reference, orientation
        # As phones send it: JPEG, so compression noise differs a little; same ranking, near-equal values.
        phone = predictions(stored_with_orientation(upright, orientation, "JPEG"))
        assert [p["label"] for p in phone] == [p["label"] for p in reference]
        assert max(abs(a["probability"] - b["probability"]) for a, b in zip(phone, reference, strict=True)) < 0.02
    # The check has teeth: the same pixels sideways, without the tag, give a different answer.
    sideways = predictions(bad_inputs.save(upright.transpose(Image.Transpose.ROTATE_90), "PNG"))
    assert sideways != reference


# -- decompression bombs and the pixel limit -------------------------------------------------------
def test_pillow_bomb_guard_is_set_deliberately():
    from skinscan import configure_process

    configure_process()  # what every entry point does at start (importing skinscan changes nothing)
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS == 80_000_000
    side = int(MAX_PIXELS ** 0.5) + 10  # just over the limit, under Pillow's 2x hard error
    for data in (bad_inputs.png_bomb(side, side, complete=False), bad_inputs.png_bomb(side, side)):
        with pytest.raises(ImageError) as caught:
            decode(data)
        assert caught.value.code == "image_too_large"
    small = bad_inputs.png_bomb(4000, 4000)  # 16 MP is a normal photo
    assert decode(small).size == (4000, 4000)


def test_pillow_warns_on_hostile_files_and_decode_still_answers():
    """The suite silences these two warnings (pyproject.toml); here, where they are the point, they are asserted."""
    with pytest.warns(UserWarning, match="Corrupt EXIF data"):
        image = decode(bad_inputs.corrupt_exif_jpeg(), draft_size=512)
    assert image.mode == "RGB" and image.size == (160, 120)  # the pixels are fine: the photo is read
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageError) as caught:
        decode(bad_inputs.png_bomb(10000, 9000, complete=False))  # 90 MP: Pillow only warns; we refuse
    assert caught.value.code == "image_too_large"


def test_the_pixel_limit_does_not_depend_on_global_warning_filters(monkeypatch):
    """Warning filters are process-wide; ``catch_warnings`` in another thread can drop ours.

    Pillow only *warns* between 1x and 2x ``MAX_IMAGE_PIXELS``; if the filter that turns the
    warning into an error is gone, an 81-160 MP image would be decoded (hundreds of MB).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what a racing thread can leave behind
        monkeypatch.setattr(warnings, "simplefilter", lambda *args, **kwargs: None)
        monkeypatch.setattr(warnings, "filterwarnings", lambda *args, **kwargs: None)
        with pytest.raises(ImageError) as caught:
            decode(bad_inputs.png_bomb(10000, 9000))
    assert caught.value.code == "image_too_large"


def test_decode_refuses_bombs_in_a_process_that_never_configured_pillow():
    """Pillow's own default limit (89 MP, warning only up to 179 MP) is not what protects us."""
    import subprocess
    import sys

    from conftest import REPO

    probe = ("import sys; sys.path.insert(0, 'tests'); import bad_inputs; from PIL import Image; "
             "from skinscan.imaging import ImageError, decode\n"
             "assert Image.MAX_IMAGE_PIXELS != 80_000_000\n"
             "for side in (9200, 10000):\n"
             "    try:\n        decode(bad_inputs.png_bomb(side, side, complete=False))\n"
             "    except ImageError as error:\n        print(error.code)\n")
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.stdout.split() == ["image_too_large", "image_too_large"], result.stderr[-2000:]


def test_size_limit_is_enforced_before_decoding(client, monkeypatch):
    import skinscan.classifier

    decoded: list[int] = []
    real_decode = skinscan.classifier.decode

    def spy(data, **kwargs):
        decoded.append(len(data))
        return real_decode(data, **kwargs)

    monkeypatch.setattr(skinscan.classifier, "decode", spy)
    over = bad_inputs.jpeg() + b"\0" * LIMIT
    assert client.post("/", data=over, content_type="image/jpeg").status_code == 413
    body, content_type = multipart([("image", "a.jpg", over, "image/jpeg")])
    assert client.post("/", data=body, content_type=content_type).status_code == 413
    assert decoded == []
    assert client.post("/", data=bad_inputs.jpeg(), content_type="image/jpeg").status_code == 200
    assert len(decoded) == 1


# -- property-based ----------------------------------------------------------------------------------
SEEDS = [bad_inputs.jpeg((48, 40)), bad_inputs.save(bad_inputs.photo((40, 32)), "PNG"),
         bad_inputs.save(bad_inputs.photo((40, 32)), "GIF"), bad_inputs.save(bad_inputs.photo((40, 32)), "WEBP"),
         bad_inputs.save(bad_inputs.photo((40, 32)), "BMP"), bad_inputs.save(bad_inputs.photo((40, 32)), "TIFF"),
         bad_inputs.exif_jpeg(orientation=6), bad_inputs.palette_png_with_transparency(),
         bad_inputs.animated_gif()]


@st.composite
def mutated_images(draw) -> bytes:
    """A real image with some bytes changed, cut short or extended: what broken uploads look like."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.one_of(st.none(), st.integers(1, len(data))))
    if cut is not None:
        data = data[:cut]
    return bytes(data) + draw(st.binary(max_size=64))


ANY_UPLOAD = st.one_of(st.binary(max_size=2048), mutated_images())


@settings(max_examples=150, deadline=None)
@given(ANY_UPLOAD)
def test_decode_only_ever_returns_rgb_or_raises_image_error(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd EXIF; that is not the question here
        try:
            image = decode(data, draft_size=512)
        except ImageError as error:
            assert error.code in ("empty_image", "not_an_image", "corrupt_image", "image_too_large")
            return
    assert image.mode == "RGB" and min(image.size) >= 1
    image.getpixel((0, 0))  # really loaded


CONTENT_TYPES = st.one_of(
    st.sampled_from(["image/jpeg", "image/png", "image/", "application/octet-stream", "multipart/form-data",
                     "multipart/form-data; boundary=b0und4ry", "multipart/form-data; boundary=",
                     "multipart/mixed; boundary=x", "text/plain", "application/json", ""]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
)


@st.composite
def form_bodies(draw) -> bytes:
    parts = [(draw(st.sampled_from(["image", "photo", "", "image[]"])),
              draw(st.one_of(st.none(), st.sampled_from(["a.jpg", "", "../../etc/passwd", "é.png"]))),
              draw(ANY_UPLOAD), draw(st.one_of(st.none(), st.sampled_from(["image/jpeg", "text/plain"]))))
             for _ in range(draw(st.integers(0, 3)))]
    body, _ = multipart(parts)
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(ANY_UPLOAD, form_bodies()), content_type=CONTENT_TYPES,
       method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "OPTIONS"]),
       declared=st.one_of(st.none(), st.integers(-5, 12 * 1024 * 1024)))
def test_respond_never_answers_5xx_to_any_request(client, body, content_type, method, declared):
    environ = EnvironBuilder(method=method, data=body, content_type=content_type or None).get_environ()
    if declared is not None:
        environ["CONTENT_LENGTH"] = str(declared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        response = http_api.respond(Request(environ))
    assert response.status_code < 500, response.get_data()[:300]
    if response.status_code != 204:
        payload = json.loads(response.get_data())
        assert "status" in payload or "labels" in payload or payload["error"]["code"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.text(max_size=200), st.binary(max_size=1024).map(lambda b: base64.b64encode(b).decode())),
       is_base64=st.booleans(), content_type=CONTENT_TYPES,
       method=st.sampled_from(["POST", "GET", "DELETE"]))
def test_lambda_handler_never_answers_5xx_to_any_http_event(client, body, is_base64, content_type, method):
    from functions.lambda_handler import handler

    event = {"version": "2.0", "rawPath": "/", "headers": {"content-type": content_type},
             "requestContext": {"http": {"method": method}}, "body": body, "isBase64Encoded": is_base64}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        answer = handler(event, LAMBDA_CONTEXT)
    assert answer["statusCode"] < 500, answer["body"][:300]
    json.loads(answer["body"])
