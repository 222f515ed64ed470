"""Issue 7: uploads leave no trace, secrets stay secret, the page renders no user text as HTML.

Privacy: photos carrying unique markers (in the pixels' file bytes, a JPEG
comment, EXIF text and GPS, and the file name) go through every way in --
function over HTTP and through its test client, Lambda, page, bot -- on the
good path and the error paths. Afterwards no new file under the temp folder
contains a marker, no log record or stdout/stderr line does, and no answer
echoes the file's content or metadata.

Security: the decompression-bomb guard and the size limit are tested in
tests/test_bad_input.py; here: the webhook secret's constant-time comparison
and its absence from logs and serverless.yml, the page's CSP and escaping,
and the dependency audit script (infra/audit.sh).
"""

from __future__ import annotations

import base64
import hmac
import inspect
import io
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from functions_framework import create_app as create_function_app
from PIL import Image

import bad_inputs
from bad_inputs import fixture_service, served  # noqa: F401  (module-scoped fixtures)
from conftest import REPO
from fakes import LAMBDA_CONTEXT, function_url_event

CONTENT = "SKNSCN-CONTENT-" + uuid.uuid4().hex[:16]   # inside the file: comment, EXIF text
NAME = "SKNSCN-NAME-" + uuid.uuid4().hex[:16]         # the file name
GPS = {1: "N", 2: (48.0, 51.0, 29.61), 3: "E", 4: (2.0, 17.0, 40.2)}


def marked_photo(size: tuple[int, int] = (320, 240)) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = CONTENT  # ImageDescription
    exif[0x013B] = CONTENT  # Artist
    exif[0x8825] = GPS      # GPS position
    exif[0x0112] = 6        # sideways, like a phone
    return bad_inputs.save(bad_inputs.photo(size), "JPEG", quality=90, exif=exif,
                           comment=CONTENT.encode())


PHOTO = marked_photo()
UPLOADS = {
    "photo": PHOTO,
    "cut photo": PHOTO[: len(PHOTO) // 2],
    "text": f"not a photo, just {CONTENT}\n".encode() * 30,
    "png with marker appended": bad_inputs.save(bad_inputs.photo(), "PNG") + CONTENT.encode(),
}


def traces(data: bytes) -> list[str]:
    """How a leaked upload would look in text: the marker itself, hex, base64, repr of raw bytes."""
    return [CONTENT, NAME, CONTENT.encode().hex(), base64.b64encode(data)[:40].decode(),
            repr(data[200:232])[2:-1]]


class TempFolderWatch:
    """Files under the temp folder that appeared or changed while uploads were handled."""

    def __init__(self) -> None:
        self.root = Path(tempfile.gettempdir())
        self.before = self._listing()
        self.started = time.time()

    def _listing(self) -> dict[str, float]:
        listing = {}
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    listing[path] = os.stat(path).st_mtime
                except OSError:
                    pass
        return listing

    def new_files_with(self, needles: list[bytes]) -> tuple[int, list[str]]:
        after = self._listing()
        changed = [p for p, mtime in after.items() if p not in self.before or mtime != self.before[p]]
        hits = []
        for path in changed:
            if NAME in path or CONTENT in path:
                hits.append(path)
                continue
            try:
                with open(path, "rb") as handle:
                    data = handle.read(64 * 1024 * 1024)
            except OSError:
                continue
            if any(needle in data for needle in needles):
                hits.append(path)
        return len(changed), hits


@pytest.fixture
def watch(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="skinscan")
    return TempFolderWatch()


def assert_no_trace(watch: TempFolderWatch, caplog, capfd, answers: list[str]) -> None:
    needles = [CONTENT.encode(), NAME.encode(), PHOTO[1000:1032]]
    changed, hits = watch.new_files_with(needles)
    assert hits == [], f"upload found on disk: {hits}"
    captured = capfd.readouterr()
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for name, text in (("logs", logged), ("stdout", captured.out), ("stderr", captured.err)):
        for data in UPLOADS.values():
            for trace in traces(data):
                assert trace not in text, f"upload trace {trace[:24]!r} in {name}"
    for answer in answers:
        assert CONTENT not in answer and "48.0" not in answer and "GPS" not in answer, answer[:300]
    assert caplog.records, "logging was not captured at all"
    print(f"\nprivacy: {changed} temp files created or changed, none holds an upload; "
          f"{len(caplog.records)} log records clean")


def test_function_keeps_no_trace_of_uploads(served, watch, caplog, capfd, monkeypatch):
    import httpx

    from functions.lambda_handler import handler

    answers = []
    for label, data in UPLOADS.items():
        raw = httpx.post(served, content=data, headers={"Content-Type": "image/jpeg"}, timeout=60)
        form = httpx.post(served, files={"image": (f"{NAME}.jpg", data, "image/jpeg")}, timeout=60)
        lam = handler(function_url_event(data, "image/jpeg"), LAMBDA_CONTEXT)
        assert raw.status_code < 500 and form.status_code < 500 and lam["statusCode"] < 500, label
        answers += [raw.text, form.text, lam["body"]]
        assert NAME not in form.text
    assert json.loads(answers[0])["status"] in ("ok", "not_recognised")

    # The last-resort handler logs the error, never the upload, even when a bug puts bytes in a message.
    import skinscan.classifier

    def broken(self, data):
        raise RuntimeError(f"decoder bug near byte {len(data)}")

    monkeypatch.setattr(skinscan.classifier.Classifier, "classify_bytes", broken)
    client = create_function_app("classify", str(REPO / "functions" / "main.py")).test_client()
    crash = client.post("/", data={"image": (io.BytesIO(PHOTO), f"{NAME}.jpg")}, content_type="multipart/form-data")
    assert crash.status_code == 500 and crash.get_json()["error"]["code"] == "internal_error"
    answers.append(crash.get_data(as_text=True))
    assert any(r.levelno >= logging.ERROR for r in caplog.records)  # the bug was logged...
    assert_no_trace(watch, caplog, capfd, answers)                  # ...without the upload


def test_page_and_bot_keep_no_trace_of_uploads(served, watch, caplog, capfd):
    from telegram_emulator import TelegramEmulator
    from test_bot import converse, make_app
    from web.app import create_app

    page = create_app(served).test_client()
    answers = []
    for label, data in UPLOADS.items():
        response = page.post("/", data={"image": (io.BytesIO(data), f"{NAME}.jpg", "image/jpeg")},
                             content_type="multipart/form-data")
        assert response.status_code < 500, label
        html = response.get_data(as_text=True)
        # The page shows the uploader their own file name back (escaped); never the file's content.
        answers.append(html.replace(NAME, "<name>"))
    with TelegramEmulator() as emulator:
        bot = make_app(emulator, served, rate_limit_per_minute=100)
        updates = [emulator.send_document(5, data, f"{NAME}.jpg", "image/jpeg") for data in UPLOADS.values()]
        updates.append(emulator.send_photo(5, PHOTO))
        converse(bot, *updates)
        replies = emulator.texts(5)
    assert len(replies) == len(updates)
    answers += replies
    assert not [r for r in replies if NAME in r]
    assert_no_trace(watch, caplog, capfd, answers)


def test_skinscan_serve_access_log_never_shows_the_symptom_answers(fixture_service, caplog):
    """`skinscan serve` logs each request; answers travel in the query string of a raw-body POST."""
    import http.client

    from werkzeug.serving import make_server

    from conftest import classify_app
    from skinscan.cli.local_stack import access_log_handler

    server = make_server("127.0.0.1", 0, classify_app(), threaded=True, request_handler=access_log_handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=60)
            connection.request("POST", "/?changed_size=yes&oozing=no", body=bad_inputs.jpeg(),
                               headers={"Content-Type": "image/jpeg"})
            assert connection.getresponse().status == 200
            connection.close()
    finally:
        server.shutdown()
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "werkzeug")
    assert '"POST / HTTP/1.1" 200' in logged  # the access log still says what happened
    assert "changed_size" not in logged and "oozing" not in logged and "?" not in logged


def test_exif_and_gps_are_never_echoed(served):
    import httpx

    response = httpx.post(served, content=PHOTO, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert response.status_code == 200
    body = response.json()
    assert set(body) <= {"status", "predictions", "recommendation", "top_condition", "disclaimer", "model"}
    text = json.dumps(body)
    for leak in (CONTENT, "GPS", "48.0", "51.0", "exif", "Exif", "orientation"):
        assert leak not in text, leak


def test_uploads_are_never_spooled_to_disk_by_the_function(fixture_service, monkeypatch):
    """Werkzeug spools large form uploads to temporary files unless told otherwise."""
    import werkzeug.formparser

    def no_disk(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    for module, names in ((werkzeug.formparser, ("SpooledTemporaryFile", "TemporaryFile")),
                          (tempfile, ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile",
                                      "mkstemp", "mkdtemp"))):
        for name in names:
            monkeypatch.setattr(module, name, no_disk, raising=False)
    client = create_function_app("classify", str(REPO / "functions" / "main.py")).test_client()
    big = bad_inputs.save(bad_inputs.photo((2400, 1800)), "PNG")  # several MB
    assert len(big) > 2 * 1024 * 1024
    for kwargs in ({"data": {"image": (io.BytesIO(big), "big.png")}, "content_type": "multipart/form-data"},
                   {"data": big, "content_type": "image/png"}):
        response = client.post("/", **kwargs)
        assert response.status_code == 200, response.data


# -- the webhook secret ------------------------------------------------------------------------------
def test_webhook_secret_is_compared_in_constant_time_and_never_logged(caplog, monkeypatch):
    from bot import webhook
    from bot.app import BotSettings

    secret = "wh_" + uuid.uuid4().hex
    source = inspect.getsource(webhook.WebhookProcessor.authorised)
    assert "hmac.compare_digest" in source
    assert not re.search(r"(==|!=)\s*self\._secret|self\._secret\s*(==|!=)", inspect.getsource(webhook))

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhook.hmac, "compare_digest", spy)
    caplog.set_level(logging.DEBUG)
    processor = webhook.WebhookProcessor(BotSettings(token="1:x", function_url="http://127.0.0.1:9/"), secret)
    guess = secret[:-1] + "X"
    for headers in ({"X-Telegram-Bot-Api-Secret-Token": guess}, {}, {"x-telegram-bot-api-secret-token": ""}):
        assert webhook.handle_webhook(headers, b'{"update_id": 1}', processor) == (403, b"forbidden")
    assert webhook.handle_webhook({"X-Telegram-Bot-Api-Secret-Token": secret}, b"[]", processor) == (200, b"ignored")
    assert len(calls) == 4 and calls[0] == (guess.encode(), secret.encode())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in logged and guess not in logged
    assert "refused" in logged  # the refusal itself is logged, without the values
    processor.close()


def test_no_secret_in_serverless_yml():
    """Secrets live in SSM; the stack only names their parameters (the packaged template is
    checked too by tests/test_infra.py::test_no_secret_in_the_template_or_serverless_yml)."""
    import yaml

    from conftest import SECRET_NAME, secrets_in

    text = (REPO / "serverless.yml").read_text()
    assert secrets_in(text) == []

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # CloudFormation tags
    config = yaml.load(text, Loader=Loader)
    checked = 0
    for function in (config.get("functions") or {}).values():
        for name, value in (function.get("environment") or {}).items():
            if SECRET_NAME.search(name):
                checked += 1
                assert name.endswith("_PARAM") and isinstance(value, str) and value.startswith("${param:"), name
    assert checked >= 2


# -- the page: CSP everywhere, user text never HTML --------------------------------------------------
def test_every_page_response_has_the_csp_and_user_text_is_never_html(served):
    from web.app import create_app

    page = create_app(served).test_client()
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    responses = {
        "page": page.get("/"),
        "config": page.get("/config.js"),
        "static": page.get("/app.js"),
        "404": page.get("/nope"),
        "405": page.put("/"),
        "result": page.post("/", data={"image": (io.BytesIO(bad_inputs.jpeg((320, 240))), hostile + ".jpg")},
                            content_type="multipart/form-data"),
        "not an image": page.post("/", data={"image": (io.BytesIO(hostile.encode() * 10), hostile)},
                                  content_type="multipart/form-data"),
        "too large": page.post("/", data={"image": (io.BytesIO(b"\xff" * (11 * 1024 * 1024)), hostile)},
                               content_type="multipart/form-data"),
        "no file": page.post("/", data={"other": hostile}, content_type="multipart/form-data"),
    }
    for label, response in responses.items():
        csp = response.headers.get("Content-Security-Policy", "")
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, label
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, label
        assert response.headers.get("X-Content-Type-Options") == "nosniff", label
        assert response.status_code < 500, label
        body = response.get_data(as_text=True)
        assert "<script>alert" not in body and "<img src=x" not in body, label
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in responses["result"].get_data(as_text=True)


# -- dependency audit --------------------------------------------------------------------------------
AUDIT = REPO / "infra" / "audit.sh"


def fake_pip_audit(tmp_path: Path, report: dict | None, stderr: str = "") -> Path:
    """A python wrapper whose ``-m pip_audit`` prints a canned report and records its arguments."""
    fake = tmp_path / "python"
    canned = tmp_path / "report.json"
    canned.write_text(json.dumps(report) if report is not None else "")
    fake.write_text(f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pip_audit" ]; then
    echo "$@" >> {tmp_path}/args
    [ "$3" = "--version" ] && exit 0
    cat {canned}
    printf '%s' {json.dumps(stderr)} >&2
    [ -s {canned} ] || exit 1
    exit 0
fi
exec python3 "$@"
""")
    fake.chmod(0o755)
    return fake


def run_audit(tmp_path: Path, python: Path, ignore: str = "", **env: str) -> subprocess.CompletedProcess:
    ignore_file = tmp_path / "ignore.txt"
    ignore_file.write_text(ignore)
    return subprocess.run([str(AUDIT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": str(python), "AUDIT_IGNORE_FILE": str(ignore_file), **env})


def test_audit_script_fails_on_vulnerabilities_and_honours_the_ignore_list(tmp_path):
    vulnerable = {"dependencies": [
        {"name": "pillow", "version": "9.0.0", "vulns": [{"id": "PYSEC-2022-1", "fix_versions": ["9.0.1"]}]},
        {"name": "flask", "version": "3.0.0", "vulns": []}], "fixes": []}
    result = run_audit(tmp_path, fake_pip_audit(tmp_path, vulnerable))
    assert result.returncode == 1 and "VULNERABLE pillow 9.0.0: PYSEC-2022-1" in result.stdout, result.stdout

    clean = {"dependencies": [{"name": "flask", "version": "3.0.0", "vulns": []}], "fixes": []}
    result = run_audit(tmp_path, fake_pip_audit(tmp_path, clean),
                       ignore="# accepted\nPYSEC-2022-1  # pillow: not reachable; review by 2027-01-01\n")
    assert result.returncode == 0 and "1 packages checked, 0 with known" in result.stdout
    assert "--ignore-vuln PYSEC-2022-1" in (tmp_path / "args").read_text()


def test_audit_script_says_skipped_when_the_database_is_out_of_reach(tmp_path):
    mirror_only = {"dependencies": [{"name": "flask", "version": "3.0.0",
                                     "skip_reason": "Dependency not found on PyPI and could not be audited"}]}
    result = run_audit(tmp_path, fake_pip_audit(tmp_path, mirror_only))
    assert result.returncode == 0 and "audit skipped: no access to the vulnerability database" in result.stdout
    assert run_audit(tmp_path, fake_pip_audit(tmp_path, mirror_only), AUDIT_REQUIRED="1").returncode == 2

    offline = fake_pip_audit(tmp_path, None, stderr="requests.exceptions.ConnectionError: NameResolutionError")
    result = run_audit(tmp_path, offline)
    assert result.returncode == 0 and "audit skipped: no access to the vulnerability database" in result.stdout


def test_the_temp_folder_watch_does_find_a_written_upload():
    """The disk check above has teeth: an upload written to a temp file is found."""
    watch = TempFolderWatch()
    with tempfile.NamedTemporaryFile(suffix=".bin") as spooled:
        spooled.write(b"header" + PHOTO[1000:1032] + b"trailer")
        spooled.flush()
        changed, hits = watch.new_files_with([PHOTO[1000:1032]])
    assert changed >= 1 and hits == [spooled.name]
