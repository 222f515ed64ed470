"""The Telegram bot through python-telegram-bot's real HTTP stack, against a Bot API emulator.

Every outgoing call (getMe, sendMessage, getFile, the file download...) is a
real HTTP request to :mod:`telegram_emulator` on loopback. Most tests feed
updates with ``Application.process_update``; one runs ``skinscan bot`` as a
process that long-polls the emulator. The classify function is the real one
(``function_server``, random-weight fixture model) in the end-to-end tests and
a canned loopback server where a test needs a failure or an exact result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from telegram import Update

from bot import replies
from bot.app import BotSettings, build_application
from bot.handlers import SERVICES, RateLimiter
from bot.webhook import WebhookProcessor, handle_webhook, telegram_webhook
from conftest import REPO, free_port, image_bytes
from fakes import LAMBDA_CONTEXT, function_url_event
from skinscan.contract import ModelInfo, Result
from telegram_emulator import TelegramEmulator

CHAT = 4242
# `skinscan bot`, as the console script runs it (skinscan.cli is a package with no __main__).
RUN_BOT_COMMAND = "import sys; from skinscan.cli import main; sys.exit(main(['bot']))"
SECRET = "s3cret_webhook-token_0123456789abcdef"  # 37 characters: the bot refuses fewer than 32
RESULT_LINE = re.compile(r"^[1-4]\. .+: (<1|\d{1,3})%$")
SAMPLE_RESULT = {
    "status": "ok",
    "predictions": [{"label": "Melanocytic nevus", "probability": 0.41},
                    {"label": "Melanoma", "probability": 0.35},
                    {"label": "Benign keratosis", "probability": 0.12},
                    {"label": "Dermatofibroma", "probability": 0.05}],
    "recommendation": {"level": "urgent", "see_doctor": True, "malignant_probability": 0.37,
                       "message": "Please see a doctor or dermatologist soon, ideally within 2 weeks."},
    "top_condition": {"label": "Melanocytic nevus", "description": "A common mole."},
    "disclaimer": "skinscan is not a diagnosis and not a substitute for a doctor.",
    "model": {"name": "fixture", "version": "1", "sha256": "0" * 64, "backend": "keras-h5"},
}
MODEL = ModelInfo(name="fixture", version="1", sha256="0" * 64, backend="keras-h5")
SAMPLE_REPLY = """This photo looks most like:
1. Melanocytic nevus: 41%
2. Melanoma: 35%
3. Benign keratosis: 12%
4. Dermatofibroma: 5%

What to do: see a doctor soon.
Please see a doctor or dermatologist soon, ideally within 2 weeks.

Melanocytic nevus: A common mole.

skinscan is not a diagnosis and not a substitute for a doctor."""


# -- helpers -------------------------------------------------------------------------------------
class CannedFunction:
    """A stand-in classify function on loopback: a fixed answer, and a log."""

    def __init__(self) -> None:
        self.status, self.payload = 200, SAMPLE_RESULT
        self.uploads: list[dict[str, Any]] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                canned.uploads.append({"content_type": self.headers["Content-Type"], "body": body})
                payload = canned.payload
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(canned.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the bot gave up waiting
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def emulator() -> Iterator[TelegramEmulator]:
    with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
def canned() -> Iterator[CannedFunction]:
    function = CannedFunction()
    yield function
    function.server.shutdown()
    function.server.server_close()


def make_app(emulator: TelegramEmulator, function_url: str, **settings: Any):
    return build_application(BotSettings(token=emulator.token, function_url=function_url,
                                         api_base_url=emulator.url, **settings), with_updater=False)


def converse(app, *updates: dict[str, Any]) -> None:
    """Process updates one after the other, as polling would; every Bot API call is real HTTP."""

    async def run() -> None:
        async with app:
            for update in updates:
                await app.process_update(Update.de_json(update, app.bot))

    asyncio.run(run())


def assert_is_result(text: str, disclaimer: str) -> None:
    lines = text.splitlines()
    assert lines[0] == "This photo looks most like:"
    assert all(RESULT_LINE.match(line) for line in lines[1:5]), lines[1:5]
    assert lines[5] == "" and lines[6].startswith("What to do:")
    assert lines[-1] == disclaimer


def classify_directly(function_url: str, data: bytes, name: str, mime: str) -> dict[str, Any]:
    response = httpx.post(function_url, files={"image": (name, data, mime)}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


# -- end to end: `skinscan bot` polling the emulator, with the real classify function -------------
def test_conversation_over_polling_with_the_real_function(emulator, function_server, photo, tmp_path):
    """One process, as a user would run it: deleteWebhook, getUpdates, getFile, the function, replies."""
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": emulator.token, "TELEGRAM_API_BASE_URL": emulator.url,
           "SKINSCAN_FUNCTION_URL": function_server, "SKINSCAN_LOG_LEVEL": "DEBUG"}
    log_file = tmp_path / "bot.log"  # a file, not a pipe: DEBUG logs would fill a pipe and block the bot
    with log_file.open("wb") as log_stream:
        process = subprocess.Popen([sys.executable, "-c", RUN_BOT_COMMAND], env=env, cwd=REPO,
                                   stdout=log_stream, stderr=subprocess.STDOUT)
    png = image_bytes(fmt="PNG", size=(200, 150), seed=3)
    try:
        emulator.wait_for_method("getUpdates", timeout=30)
        conversation = [lambda: emulator.send_text(CHAT, "/start"),
                        lambda: emulator.send_photo(CHAT, photo),
                        lambda: emulator.send_document(CHAT, png, "spot.png", "image/png"),
                        lambda: emulator.send_document(CHAT, flat_png(), "flat.png", "image/png"),
                        lambda: emulator.send_text(CHAT, "is it bad?"),
                        lambda: emulator.send_text(CHAT, "/privacy")]
        updates = []
        for sent, user_says in enumerate(conversation, 1):  # one at a time, like a person chatting
            updates.append(user_says())
            emulator.wait_for_messages(sent, timeout=40)
        failure = None
    except TimeoutError as error:
        failure = error
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output = log_file.read_text(errors="replace")
    transcript = emulator.transcript
    recorded = tmp_path / "conversation.txt"
    recorded.write_text("\n".join(transcript) + "\n", encoding="utf-8")
    if os.environ.get("SKINSCAN_TRANSCRIPT_DIR"):
        target = Path(os.environ["SKINSCAN_TRANSCRIPT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(recorded, target / "conversation.txt")
    assert failure is None, f"{failure}\n" + "\n".join(transcript) + "\n" + output[-6000:]
    assert process.returncode == 0, output[-3000:]

    start, photo_reply, file_reply, retake_reply, text_reply, privacy = emulator.texts(CHAT)
    assert start == replies.START
    expected = classify_directly(function_server, photo, "photo.jpg", "image/jpeg")
    assert photo_reply == replies.format_result(Result.from_wire(expected))  # exactly what the function said
    assert_is_result(photo_reply, expected["disclaimer"])
    assert_is_result(file_reply, expected["disclaimer"])
    assert retake_reply.startswith("We could not recognise a skin lesion in this photo "
                                   "(the photo is out of focus)")
    assert "Tip: Hold the phone steady" in retake_reply and retake_reply.endswith(expected["disclaimer"])
    assert text_reply == replies.SEND_A_PHOTO and privacy == replies.PRIVACY
    methods = emulator.methods()
    assert methods.index("deleteWebhook") < methods.index("getUpdates") < methods.index("sendMessage")
    assert [c["command"] for c in emulator.commands] == ["help", "privacy"]
    # "analysing…" came before the answer; the largest photo size was used, never the thumbnail.
    reply_line = "bot: " + photo_reply.replace("\n", "\n     ")
    reply_at = next(i for i, line in enumerate(transcript) if line.startswith(reply_line))
    assert transcript.index("bot: [typing…]") < reply_at
    assert transcript[reply_at].endswith(f"[{replies.OFFER_BUTTON}]")  # the questions are offered
    sizes = updates[1]["message"]["photo"]
    assert sizes[-1]["file_id"] in emulator.downloads and sizes[0]["file_id"] not in emulator.downloads
    # Even at DEBUG no image bytes reach the log; from INFO up, not the token (in every Bot API URL).
    assert "Calling Bot API endpoint" in output  # DEBUG logging was really on
    assert not [line for line in output.splitlines() if emulator.token in line and " DEBUG " not in line]
    for data in (photo, png):
        assert data[200:240].hex() not in output and repr(data[200:240])[2:-1] not in output



def flat_png() -> bytes:
    """A flat colour has no detail: the function answers ``not_recognised`` (too_blurry)."""
    buffer = io.BytesIO()
    Image.new("RGB", (120, 120), (180, 140, 120)).save(buffer, "PNG")
    return buffer.getvalue()


# -- the handlers, with a canned function --------------------------------------------------------
def test_a_photo_gets_exactly_one_formatted_reply(emulator, canned, photo):
    update = emulator.send_photo(CHAT, photo)
    converse(make_app(emulator, canned.url), update)
    assert emulator.texts() == [SAMPLE_REPLY]
    (sent,) = emulator.sent_messages
    assert sent["params"]["reply_parameters"]["message_id"] == update["message"]["message_id"]
    assert emulator.messages[(CHAT, sent["message_id"])]["reply_markup"]["inline_keyboard"] == [
        [{"text": replies.OFFER_BUTTON, "callback_data": "cl:"}]]
    assert emulator.chat_actions[0]["action"] == "typing"
    (upload,) = canned.uploads
    assert upload["content_type"].startswith("multipart/form-data") and b'name="image"' in upload["body"]
    assert photo in upload["body"]


def test_an_image_file_is_sent_at_full_quality(emulator, canned):
    big = image_bytes(size=(800, 600), fmt="PNG")
    converse(make_app(emulator, canned.url), emulator.send_document(CHAT, big, "mole.png", "image/png"))
    assert emulator.texts() == [SAMPLE_REPLY]
    assert big in canned.uploads[0]["body"] and b"Content-Type: image/png" in canned.uploads[0]["body"]


@pytest.mark.parametrize("size, expected", [
    (25 * 1024 * 1024, "Telegram only lets bots download files up to 20 MB"),
    (15 * 1024 * 1024, "over the 10 MB I can analyse"),
])
def test_oversize_files_are_refused_before_downloading(emulator, canned, size, expected):
    converse(make_app(emulator, canned.url),
             emulator.send_document(CHAT, None, "huge.jpg", "image/jpeg", file_size=size))
    (text,) = emulator.texts()
    assert expected in text and "send it as a photo" in text
    assert "getFile" not in emulator.methods() and not canned.uploads


def test_anything_that_is_not_an_image_gets_a_helpful_answer(emulator, canned):
    converse(make_app(emulator, canned.url),
             emulator.send_text(CHAT, "/start"), emulator.send_text(CHAT, "/help"),
             emulator.send_text(CHAT, "/privacy"), emulator.send_text(CHAT, "hello"),
             emulator.send_text(CHAT, "/diagnose"), emulator.send_sticker(CHAT),
             emulator.send_document(CHAT, b"%PDF-1.4 ...", "report.pdf", "application/pdf"))
    assert emulator.texts() == [replies.START, replies.HELP, replies.PRIVACY, replies.SEND_A_PHOTO,
                                replies.SEND_A_PHOTO, replies.SEND_A_PHOTO, replies.NOT_AN_IMAGE_FILE]
    assert "not a diagnosis" in replies.HELP and "see a doctor" in replies.HELP
    assert "never stores" in replies.PRIVACY
    assert "getFile" not in emulator.methods() and not canned.uploads


def test_function_down_apologises_and_the_bot_keeps_running(emulator, photo):
    closed = f"http://127.0.0.1:{free_port()}/"
    converse(make_app(emulator, closed), emulator.send_photo(CHAT, photo), emulator.send_text(CHAT, "/help"))
    assert emulator.texts() == [replies.TRY_AGAIN_LATER, replies.HELP]
    assert "try again later" in replies.TRY_AGAIN_LATER


def errors_reaching_the_error_handler(monkeypatch) -> list[BaseException]:
    """What the generic error handler gets from now on (it still answers as it would)."""
    from bot import handlers

    seen: list[BaseException] = []
    original = handlers.on_error

    async def spy(update, context):
        seen.append(context.error)
        await original(update, context)

    monkeypatch.setattr(handlers, "on_error", spy)  # register() looks it up when the app is built
    return seen


def test_a_failed_download_gets_its_own_apology_not_the_error_handler(emulator, canned, photo, monkeypatch):
    """getFile fails (Telegram no longer has the file): one plain apology and the function is never called.

    Regression: the download failure returned a bare string to callers that unpack a pair, so a
    ValueError reached the generic error handler and only its apology came back.
    """
    errors = errors_reaching_the_error_handler(monkeypatch)
    update = emulator.send_photo(CHAT, photo)
    del emulator.files[update["message"]["photo"][-1]["file_id"]]
    converse(make_app(emulator, canned.url), update, emulator.send_text(CHAT, "/help"))
    assert emulator.texts() == [replies.TRY_AGAIN_LATER, replies.HELP]
    assert "getFile" in emulator.methods() and not canned.uploads
    assert errors == []
    assert not emulator.messages[(CHAT, emulator.sent_messages[0]["message_id"])].get("reply_markup")


def test_a_failed_download_at_the_end_of_the_questions_gets_the_apology_too(emulator, canned, photo, monkeypatch):
    """The other caller: the answers are in, the photo is fetched again, and Telegram has lost it."""
    errors = errors_reaching_the_error_handler(monkeypatch)
    photo_update = emulator.send_photo(CHAT, photo)

    def lose_the_photo_then_press(label: str):
        def step():
            del emulator.files[photo_update["message"]["photo"][-1]["file_id"]]
            return emulator.press(CHAT, label)
        return step

    chat(make_app(emulator, canned.url), lambda: photo_update,
         lambda: emulator.press(CHAT, replies.OFFER_BUTTON), lambda: emulator.press(CHAT, "Yes"),
         lose_the_photo_then_press(replies.DONE_BUTTON))
    assert emulator.texts()[0] == SAMPLE_REPLY and emulator.texts()[-1] == replies.TRY_AGAIN_LATER
    assert len(canned.uploads) == 1  # the first answer only: the answers never reached the function
    assert errors == []


def test_slow_function_times_out_with_an_apology(emulator, photo):
    """The function's network times out (a fake one, at once): the apology, no real-time wait."""
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer in time", request=request)

    app = make_app(emulator, "http://function.invalid/", function_timeout_s=0.5)
    app.bot_data[SERVICES] = dataclasses.replace(app.bot_data[SERVICES], transport=httpx.MockTransport(too_slow))
    started = time.monotonic()
    converse(app, emulator.send_photo(CHAT, photo))
    assert emulator.texts() == [replies.TOO_SLOW]
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("status, payload, expected", [
    (503, {"error": {"code": "model_unavailable", "message": "later"}}, replies.TRY_AGAIN_LATER),
    (400, {"error": {"code": "corrupt_image", "message": "damaged"}}, replies.UNREADABLE_IMAGE),
    (413, {"error": {"code": "too_large", "message": "big"}}, replies.too_big_to_analyse(10 * 1024 * 1024)),
    (200, b"<html>proxy error</html>", replies.TRY_AGAIN_LATER),
])
def test_function_errors_become_plain_words(emulator, canned, photo, status, payload, expected):
    canned.status, canned.payload = status, payload
    converse(make_app(emulator, canned.url), emulator.send_photo(CHAT, photo))
    assert emulator.texts() == [expected]


def test_rate_limit_per_chat(emulator, canned, photo):
    app = make_app(emulator, canned.url, rate_limit_per_minute=2)
    converse(app, *(emulator.send_photo(CHAT, photo) for _ in range(3)), emulator.send_photo(7, photo))
    first, second, third = emulator.texts(CHAT)
    assert first == second == SAMPLE_REPLY
    assert third.startswith("You have sent 2 photos in the last minute. Please wait ")
    assert emulator.texts(7) == [SAMPLE_REPLY]  # other chats are not affected
    assert len(canned.uploads) == 3


def test_rate_limiter_window_slides():
    limiter = RateLimiter(limit=2, window_s=60)
    assert limiter.acquire(1, now=0) is None and limiter.acquire(1, now=10) is None
    assert limiter.acquire(1, now=30) == pytest.approx(30)
    assert limiter.acquire(1, now=60) is None  # the first one left the window


def test_retake_and_odd_results_still_point_to_a_doctor(emulator, canned, photo):
    from skinscan.triage import retake as retake_advice

    retake = replies.format_result(Result(status="not_recognised", predictions=(),
                                          recommendation=retake_advice("too_dark"), model=MODEL))
    assert "see a doctor" in retake and "Tip: Use daylight" in retake and retake.endswith(replies.DISCLAIMER)
    # An answer off the contract (no advice, no model) is refused by the client, never shown half-read.
    canned.payload = {"status": "ok", "predictions": [{"label": "X", "probability": 0.001}]}
    converse(make_app(emulator, canned.url), emulator.send_photo(CHAT, photo))
    assert emulator.texts() == [replies.TRY_AGAIN_LATER] and "see a doctor" in replies.TRY_AGAIN_LATER


# -- the webhook entry point ---------------------------------------------------------------------
@pytest.fixture
def processor(emulator, canned) -> Iterator[WebhookProcessor]:
    settings = BotSettings(token=emulator.token, function_url=canned.url, api_base_url=emulator.url)
    processor = WebhookProcessor(settings, SECRET)
    yield processor
    processor.close()


def deliver(processor: WebhookProcessor, update: Any, secret: str | None = SECRET) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    body = update if isinstance(update, bytes) else json.dumps(update).encode()
    return handle_webhook(headers, body, processor)


def test_webhook_refuses_a_wrong_secret_and_processes_nothing(emulator, processor):
    update = emulator.send_text(CHAT, "/start")
    assert deliver(processor, update, secret="wrong")[0] == 403
    assert deliver(processor, update, secret=None)[0] == 403
    assert deliver(processor, update, secret=SECRET[:-1])[0] == 403
    assert emulator.requests == []  # not even getMe: nothing was built or sent
    assert deliver(processor, update) == (200, b"ok")  # the update was not marked as seen
    assert emulator.texts() == [replies.START]


def test_webhook_processes_a_redelivered_update_once(emulator, processor, photo):
    update = emulator.send_photo(CHAT, photo)
    assert deliver(processor, update) == (200, b"ok")
    assert deliver(processor, update) == (200, b"duplicate")
    assert emulator.texts() == [SAMPLE_REPLY]


def test_webhook_ignores_malformed_bodies_and_keeps_working(emulator, processor):
    not_utf8 = "\udcff".encode("utf-8", "surrogatepass")
    for body in (b"{not json", b"", b"[1, 2]", b'{"update_id": "7"}', b'{"update_id": true}', not_utf8):
        assert deliver(processor, body) == (200, b"ignored")
    assert deliver(processor, {"update_id": 99, "message": {"oops": True}}) == (200, b"ok")  # logged
    assert deliver(processor, emulator.send_text(CHAT, "hi")) == (200, b"ok")
    assert emulator.texts() == [replies.SEND_A_PHOTO]


def test_lambda_handler_with_secrets_from_ssm(emulator, canned, monkeypatch):
    from moto import mock_aws

    from bot import webhook

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"),
                        ("TELEGRAM_BOT_TOKEN_PARAM", "/skinscan/bot-token"),
                        ("TELEGRAM_WEBHOOK_SECRET_PARAM", "/skinscan/webhook-secret"),
                        ("SKINSCAN_FUNCTION_URL", canned.url), ("TELEGRAM_API_BASE_URL", emulator.url)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    update = emulator.send_text(CHAT, "/help")
    event = function_url_event(json.dumps(update).encode(), "application/json",
                               headers={"x-telegram-bot-api-secret-token": SECRET})
    webhook.reset()
    try:
        with mock_aws():
            import boto3

            ssm = boto3.client("ssm")
            ssm.put_parameter(Name="/skinscan/bot-token", Value=emulator.token, Type="SecureString")
            ssm.put_parameter(Name="/skinscan/webhook-secret", Value=SECRET, Type="SecureString")
            forged = {**event, "headers": {"x-telegram-bot-api-secret-token": "guess"}}
            assert webhook.handler(forged, LAMBDA_CONTEXT)["statusCode"] == 403
            answer = webhook.handler(event, LAMBDA_CONTEXT)
            assert (answer["statusCode"], answer["body"], answer["isBase64Encoded"]) == (200, "ok", False)
            assert answer["headers"]["content-type"].startswith("text/plain")
            ssm.delete_parameter(Name="/skinscan/bot-token")  # cached per container: no second read
            assert webhook.resolve_secret("TELEGRAM_BOT_TOKEN") == emulator.token
    finally:
        webhook.reset()
    assert emulator.texts() == [replies.HELP]


def test_functions_framework_target(emulator, processor, monkeypatch):
    from flask import Request
    from werkzeug.test import EnvironBuilder

    from bot import webhook

    monkeypatch.setattr(webhook, "_default", processor)
    update = emulator.send_text(CHAT, "/privacy")
    request = Request(EnvironBuilder(method="POST", data=json.dumps(update),
                                     headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}).get_environ())
    assert telegram_webhook(request) == (b"ok", 200, {"Content-Type": "text/plain"})
    assert emulator.texts() == [replies.PRIVACY]


def test_set_webhook_command_registers_url_and_secret(emulator, monkeypatch, capsys):
    from skinscan.cli import main

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", emulator.token)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", emulator.url)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "not a valid secret!")
    assert main(["bot", "set-webhook", "https://bot.example.org/"]) == 2
    assert "setWebhook" not in emulator.methods()
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "short_but_valid_for_Telegram")  # 28: guessable
    assert main(["bot", "set-webhook", "https://bot.example.org/"]) == 2
    assert "32-256 characters" in capsys.readouterr().err and "setWebhook" not in emulator.methods()
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    assert main(["bot", "set-webhook", "https://bot.example.org/"]) == 0
    assert emulator.webhook["url"] == "https://bot.example.org/"
    assert emulator.webhook["secret_token"] == SECRET
    assert emulator.webhook["allowed_updates"] == ["message", "callback_query"]
    # As many deliveries at once as the webhook function may run (botConcurrency): a burst waits at
    # Telegram instead of being throttled by Lambda.
    assert int(emulator.webhook["max_connections"]) == 2
    assert main(["bot", "set-webhook", "https://bot.example.org/", "--max-connections", "4"]) == 0
    assert int(emulator.webhook["max_connections"]) == 4


def test_the_webhook_refuses_to_start_with_a_short_secret(emulator, canned, monkeypatch):
    settings = BotSettings(token=emulator.token, function_url=canned.url, api_base_url=emulator.url)
    for weak in ("", "x", "a" * 31, "not a valid secret at all, spaces!"):
        with pytest.raises(ValueError, match="32-256"):
            WebhookProcessor(settings, weak)
    from bot import webhook

    webhook.reset()
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", emulator.token)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", "a" * 31)
    monkeypatch.setenv("SKINSCAN_FUNCTION_URL", canned.url)
    with pytest.raises(ValueError, match="32-256"):
        webhook.default_processor()
    webhook.reset()


def test_the_bot_checks_and_says_the_limit_of_the_deployment_it_talks_to(emulator, canned, monkeypatch):
    """Behind AWS Lambda the function takes 4 MB of photo (6 MB payload, base64), not its own 10 MB."""
    monkeypatch.setenv("SKINSCAN_BOT_MAX_UPLOAD_BYTES", str(4 * 1024 * 1024))
    settings = BotSettings.from_env(emulator.token, canned.url)
    settings = dataclasses.replace(settings, api_base_url=emulator.url)
    five_mb = image_bytes(size=(40, 30), fmt="PNG") + b"\0" * (5 * 1024 * 1024)
    converse(build_application(settings, with_updater=False),
             emulator.send_document(CHAT, None, "scan.png", "image/png", file_size=len(five_mb)),
             emulator.send_document(CHAT, five_mb[:3 * 1024 * 1024], "ok.png", "image/png"))
    too_big, answered = emulator.texts()
    assert "over the 4 MB I can analyse" in too_big and answered == SAMPLE_REPLY
    assert len(canned.uploads) == 1 and "getFile" in emulator.methods()
    with pytest.raises(ValueError):
        BotSettings(token="t", function_url=canned.url, max_upload_bytes=11 * 1024 * 1024)


# -- the checklist questions: inline buttons, one question at a time ------------------------------
CHECKLIST_RESULT = {
    **SAMPLE_RESULT,
    "recommendation": {"level": "urgent", "see_doctor": True, "photo_level": "monitor", "raised_by": "checklist",
                       "message": "Please see a doctor or dermatologist soon, ideally within 2 weeks. Your "
                                  "answers raised this from the photo's suggestion because it has changed in "
                                  "size and is inflamed or red around it."},
    "checklist": {"score": 3, "answered": 6, "yes": ["changed_size", "inflamed"], "unsure": ["irregular_colour"],
                  "level": "urgent"},
}
FLOW = ["Yes", "No", "Not sure", "Skip", "Yes", "No", "No"]  # the seven questions, in order


def chat(app, *steps) -> None:
    """Like :func:`converse`, but each step (a callable returning an update) runs after the bot has
    answered the previous one, so a step can press a button the bot has just sent."""

    async def run() -> None:
        async with app:
            for step in steps:
                update = step()
                await app.process_update(Update.de_json(update, app.bot))

    asyncio.run(run())


def form_fields(body: bytes) -> dict[str, str]:
    """The text fields of a multipart body (not the image)."""
    fields = re.findall(rb'name="([a-z_0-9]+)"\r\n\r\n([^\r]*)\r\n', body)
    return {name.decode(): value.decode() for name, value in fields}


def test_the_question_flow_sends_the_answers_and_the_combined_advice(emulator, canned, photo):
    def answer(label: str, last: bool = False):
        def step():
            if last:
                canned.payload = CHECKLIST_RESULT
            return emulator.press(CHAT, label)
        return step

    photo_update = emulator.send_photo(CHAT, photo)
    chat(make_app(emulator, canned.url), lambda: photo_update,
         lambda: emulator.press(CHAT, replies.OFFER_BUTTON),
         *(answer(label, last=i == len(FLOW) - 1) for i, label in enumerate(FLOW)))
    texts = emulator.texts()
    assert texts[0] == SAMPLE_REPLY and texts[1] == replies.question(0)
    final = texts[-1]
    assert len(texts) == 3
    assert final.startswith("Your answers raised this to: see a doctor within 2 weeks.\n\n")
    assert "ideally within 2 weeks" in final and final.endswith(SAMPLE_RESULT["disclaimer"])
    # one question at a time, in the same message; then that message becomes the record of the answers
    question_id = emulator.sent_messages[1]["message_id"]
    edits = [e["text"] for e in emulator.edits if e["message_id"] == question_id]
    assert edits == [replies.question(i) for i in range(1, 7)] + [replies.answers_summary(
        {"changed_size": "yes", "irregular_shape": "no", "irregular_colour": "unsure", "inflamed": "yes",
         "oozing": "no", "sensation": "no"})]
    assert emulator.edits[-1]["reply_markup"] is None
    # the offer button went away once used; every press was answered (no spinner left)
    assert not emulator.messages[(CHAT, emulator.sent_messages[0]["message_id"])].get("reply_markup")
    assert len(emulator.callback_answers) == 1 + len(FLOW)
    # the same photo went to the function again, now with the answers (skipped: not sent)
    first, second = canned.uploads
    assert form_fields(first["body"]) == {}
    assert form_fields(second["body"]) == {"changed_size": "yes", "irregular_shape": "no",
                                           "irregular_colour": "unsure", "inflamed": "yes", "oozing": "no",
                                           "sensation": "no"}
    assert photo in second["body"]
    assert all(m["params"]["reply_parameters"]["message_id"] == photo_update["message"]["message_id"]
               for m in emulator.sent_messages)
    # the state lives in callback_data: short, whatever was answered
    for message in emulator.messages.values():
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
            assert all(len(b["callback_data"].encode()) <= 64 for b in row)


def test_done_early_and_skipping_everything(emulator, canned, photo):
    chat(make_app(emulator, canned.url), lambda: emulator.send_photo(CHAT, photo),
         lambda: emulator.press(CHAT, replies.OFFER_BUTTON),
         lambda: emulator.press(CHAT, replies.DONE_BUTTON))
    assert emulator.texts()[-1] == replies.NO_ANSWERS and len(canned.uploads) == 1

    chat(make_app(emulator, canned.url), lambda: emulator.send_photo(CHAT, photo),
         lambda: emulator.press(CHAT, replies.OFFER_BUTTON),
         lambda: emulator.press(CHAT, "Yes"), lambda: emulator.press(CHAT, replies.SKIP_BUTTON),
         lambda: emulator.press(CHAT, replies.DONE_BUTTON))
    assert form_fields(canned.uploads[-1]["body"]) == {"changed_size": "yes"}
    assert emulator.texts()[-1] == SAMPLE_REPLY  # the canned function's answer, with the answers sent


def test_a_stale_or_unknown_button_gets_a_polite_answer(emulator, canned, photo):
    photo_update = emulator.send_photo(CHAT, photo)
    app = make_app(emulator, canned.url)
    chat(app, lambda: photo_update)
    reply_id = emulator.sent_messages[0]["message_id"]
    emulator.delete(CHAT, photo_update["message"]["message_id"])  # the photo is gone
    chat(make_app(emulator, canned.url),
         lambda: emulator.press(CHAT, replies.OFFER_BUTTON),
         lambda: emulator.press_data(CHAT, reply_id, "v0:old-format"),     # a button of an older version
         lambda: emulator.press_data(CHAT, 987654, "cl:yy"))               # a message Telegram no longer has
    assert emulator.texts()[1:] == [replies.STALE_BUTTON] * 3
    assert [a.get("text") for a in emulator.callback_answers] == [replies.STALE_POPUP] * 3
    assert replies.TRY_AGAIN_LATER not in emulator.texts() and len(canned.uploads) == 1


def test_the_question_flow_over_the_stateless_webhook_with_the_real_function(emulator, function_server, photo,
                                                                            tmp_path):
    """Every update goes to a fresh WebhookProcessor (a cold Lambda each time): nothing is kept in
    memory between the presses, and the real function applies the checklist rule."""
    settings = BotSettings(token=emulator.token, function_url=function_server, api_base_url=emulator.url)

    def cold_delivery(update):
        processor = WebhookProcessor(settings, SECRET)
        try:
            assert deliver(processor, update) == (200, b"ok")
        finally:
            processor.close()

    emulator.transcript.append("(each update below reaches a freshly started webhook)")
    cold_delivery(emulator.send_text(CHAT, "/help"))
    cold_delivery(emulator.send_photo(CHAT, photo))
    cold_delivery(emulator.press(CHAT, replies.OFFER_BUTTON))
    for label in ["Yes", "No", "Yes", "Not sure", "No", "No", "Skip"]:
        cold_delivery(emulator.press(CHAT, label))
    texts = emulator.texts()
    assert texts[0] == replies.HELP and "NICE guideline NG12" in replies.HELP
    direct = classify_directly(function_server, photo, "photo.jpg", "image/jpeg")
    assert texts[1] == replies.format_result(Result.from_wire(direct))
    final = texts[-1]
    assert final.startswith("Your answers raised this to: see a doctor within 2 weeks.") or (
        direct["recommendation"]["level"] == "urgent" and "already at least as urgent" in final)
    assert "within 2 weeks" in final and final.endswith(direct["disclaimer"])
    assert replies.TRY_AGAIN_LATER not in texts
    transcript = "\n".join(emulator.transcript) + "\n"
    (tmp_path / "checklist_conversation.txt").write_text(transcript, encoding="utf-8")
    if os.environ.get("SKINSCAN_TRANSCRIPT_DIR"):
        target = Path(os.environ["SKINSCAN_TRANSCRIPT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        (target / "checklist_conversation.txt").write_text(transcript, encoding="utf-8")
