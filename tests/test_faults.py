"""The object store fails in every way we could think of; the function answers, bounded in time.

A real moto S3 server on loopback (started and stopped by the tests, so it can be
"down" and come back), a TCP black hole that accepts and never answers, and a
small proxy in front of moto that stalls or fails chosen requests.

Already covered elsewhere (not repeated here): a swapped ``.h5`` refused by
sha256 and missing objects (tests/test_object_store.py); the bot with the
function down, slow, or answering 5xx (tests/test_bot.py:
test_function_down_apologises_and_the_bot_keeps_running,
test_slow_function_times_out_with_an_apology, test_function_errors_become_plain_words);
the page with the function down or slow (tests/test_web.py).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from functions_framework import create_app as create_function_app

from conftest import REPO, free_port, image_bytes, moto_server
from skinscan import service
from skinscan.manifest import sha256_file
from skinscan.training.publish import publish_model

BUCKET = "models"
URI = f"s3://{BUCKET}/m/fixture.h5"

# Real outages, stalls and timeouts take real seconds (about 40 on two cores): the full suite only.
pytestmark = pytest.mark.slow


# -- the store and its faults ----------------------------------------------------------------------
class MotoServer:
    """conftest's moto server on a fixed port, which can be stopped and started again (empty) like a
    real outage."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._running: contextlib.ExitStack | None = None

    def start(self) -> MotoServer:
        self._running = contextlib.ExitStack()
        self._running.enter_context(moto_server(self.port))
        return self

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None

    def client(self):
        return boto3.client("s3", endpoint_url=self.url)

    def publish(self, model: Path) -> str:
        client = self.client()
        client.create_bucket(Bucket=BUCKET)
        return publish_model(model, f"s3://{BUCKET}/m/", client=client)


class BlackHole:
    """A TCP server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)
            self.connections += 1

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


class FaultyProxy:
    """Forwards S3 requests to moto, except those ``rule(method, path)`` names: "hang" or "error"."""

    def __init__(self, upstream: str, rule: Callable[[str, str], str]) -> None:
        self.release = threading.Event()
        self.seen: list[tuple[str, str, str]] = []
        proxy = self
        upstream_port = int(upstream.rsplit(":", 1)[1])

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_one(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = rule(self.command, self.path)
                proxy.seen.append((self.command, self.path, action))
                if action == "hang":
                    proxy.release.wait(120)
                    self.close_connection = True
                    return
                if action == "error":
                    data = b"<Error><Code>InternalError</Code><Message>boom</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                upstream_connection = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                upstream_connection.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream_connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)) if self.command != "HEAD"
                                 else answer.getheader("Content-Length", "0"))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream_connection.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """AWS settings for a store at a URL the test chooses; the model cache in tmp_path."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("SKINSCAN_CACHE_DIR", str(tmp_path / "cache"))):
        monkeypatch.setenv(name, value)

    def point_at(url: str, timeout_s: float | None = None) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        if timeout_s is not None:
            monkeypatch.setenv("SKINSCAN_S3_TIMEOUT", str(timeout_s))

    return point_at


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


def function_client():
    return create_function_app("classify", str(REPO / "functions" / "main.py")).test_client()


@contextlib.contextmanager
def function_over_http() -> Iterator[str]:
    """The real function on loopback (like conftest's function_server, but for whatever model is configured)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_function_app("classify", str(REPO / "functions" / "main.py")),
                         threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()


PHOTO = image_bytes(size=(200, 150))


def classify(client) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = client.post("/", data=PHOTO, content_type="image/jpeg")
    return response.status_code, response.get_json(), time.monotonic() - started


def assert_clear_503(status: int, body: dict) -> None:
    assert status == 503, body
    assert body["error"]["code"] == "model_unavailable"
    assert "try again" in body["error"]["message"].lower()
    assert "s3://" not in json.dumps(body) and "models" not in body["error"]["message"]  # no internals


# -- the tests ---------------------------------------------------------------------------------------
def test_store_down_at_cold_start_is_a_clear_503_and_retried_when_it_is_back(aws, moto, fixture_model,
                                                                             use_model, tmp_path):
    """Every way in says "try again later" while the store is down, and all recover with no restart."""
    from bot import replies
    from telegram_emulator import TelegramEmulator
    from test_bot import converse, make_app
    from web.app import ERROR_MESSAGES, create_app

    aws(moto.url)  # nothing listens there yet
    use_model(URI)
    client = function_client()
    status, body, seconds = classify(client)
    assert_clear_503(status, body)
    assert seconds < 10
    assert client.get("/").status_code == 503  # the readiness probe says not ready
    assert classify(client)[0] == 503  # still down: tried again, still a clear answer

    with function_over_http() as url, TelegramEmulator() as emulator:
        page = create_app(url).test_client()
        down_page = page.post("/", data={"image": (io.BytesIO(PHOTO), "a.jpg")}, content_type="multipart/form-data")
        assert down_page.status_code == 503
        assert ERROR_MESSAGES["model_unavailable"].replace("'", "&#39;") in down_page.get_data(as_text=True)
        bot = make_app(emulator, url, rate_limit_per_minute=100)
        converse(bot, emulator.send_photo(1, PHOTO))
        assert emulator.texts(1) == [replies.TRY_AGAIN_LATER]

        moto.start()  # the store comes back...
        assert moto.publish(fixture_model) == URI

        status, body, _ = classify(client)  # ...and the very next request loads the model
        assert status == 200 and body["status"] == "ok", body
        up_page = page.post("/", data={"image": (io.BytesIO(PHOTO), "a.jpg")}, content_type="multipart/form-data")
        assert up_page.status_code == 200
        converse(bot, emulator.send_photo(1, PHOTO))
        assert emulator.texts(1)[-1].startswith("This photo looks most like:")
    assert list((tmp_path / "cache").rglob("*.h5"))  # verified and cached


def test_store_down_after_the_model_is_loaded_keeps_serving(aws, moto, fixture_model, use_model):
    moto.start()
    aws(moto.url)
    use_model(moto.publish(fixture_model))
    client = function_client()
    assert classify(client)[0] == 200
    moto.stop()
    for _ in range(3):
        status, body, seconds = classify(client)
        assert status == 200 and body["status"] == "ok" and seconds < 10
    assert client.get("/").status_code == 200


def test_a_corrupted_cached_copy_is_downloaded_again_not_served(aws, moto, fixture_model, use_model, tmp_path):
    moto.start()
    aws(moto.url)
    use_model(moto.publish(fixture_model))
    assert classify(function_client())[0] == 200
    (cached,) = (tmp_path / "cache").rglob("fixture.h5")
    good_sha = sha256_file(cached)
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit on the container's disk
    cached.write_bytes(bytes(data))

    service.reset()  # a cold start on a warm disk
    status, body, _ = classify(function_client())
    assert status == 200, body
    assert sha256_file(cached) == good_sha  # fetched again and verified


def test_a_model_swapped_in_the_store_is_never_served(aws, moto, fixture_model, use_model, tmp_path):
    """Beyond test_object_store: the swap happens while serving, every retry refuses it, nothing bad is kept."""
    moto.start()
    aws(moto.url)
    use_model(moto.publish(fixture_model))
    client = function_client()
    status, good, _ = classify(client)
    assert status == 200
    store = moto.client()
    store.put_object(Bucket=BUCKET, Key="m/fixture.h5", Body=fixture_model.read_bytes()[:-7] + b"swapped")

    assert classify(client)[1] == good  # the verified model in memory keeps serving
    for cache in (tmp_path / "cache").rglob("*"):  # a fresh container: empty disk
        if cache.is_file():
            cache.unlink()
    service.reset()
    loaded: list[str] = []
    real_load = service.Classifier.load

    def spy(path, *args, **kwargs):
        loaded.append(str(path))
        return real_load(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service.Classifier, "load", spy)
        for _ in range(2):
            status, body, _ = classify(client)
            assert_clear_503(status, body)
    assert loaded == []  # never even handed to Keras
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.suffix in (".h5", ".partial")]

    # A manifest swapped for nonsense is refused the same way.
    store.put_object(Bucket=BUCKET, Key="m/fixture.json", Body=b"{not json")
    assert_clear_503(*classify(client)[:2])


def test_a_store_that_never_answers_is_bounded_by_the_timeout(aws, fixture_model, use_model, monkeypatch):
    hole = BlackHole()
    try:
        aws(hole.url, timeout_s=2)
        use_model(URI)
        status, body, seconds = classify(function_client())
    finally:
        hole.close()
    assert_clear_503(status, body)
    assert hole.connections >= 1  # it really was asked
    assert seconds < 12, f"{seconds:.1f} s"  # 2 attempts x 2 s, plus backoff: not a hang
    print(f"\nstore never answers: 503 after {seconds:.1f} s ({hole.connections} connections)")


def test_a_model_download_that_stalls_is_bounded_too(aws, moto, fixture_model, use_model):
    """The manifest arrives, then the .h5 download hangs mid-way: still a 503, in bounded time."""
    moto.start()
    uri = moto.publish(fixture_model)
    proxy = FaultyProxy(moto.url, lambda method, path: "hang" if method == "GET" and path.endswith(".h5")
                        else "forward")
    try:
        aws(proxy.url, timeout_s=1)
        use_model(uri)
        status, body, seconds = classify(function_client())
    finally:
        proxy.close()
    assert_clear_503(status, body)
    assert any(action == "hang" for _, _, action in proxy.seen)
    # Bounded, but not by one timeout: s3transfer retries each part of the download (see the report).
    assert seconds < 30, f"{seconds:.1f} s"
    print(f"\nstalled model download: 503 after {seconds:.1f} s ({len(proxy.seen)} store requests)")


def test_a_store_answering_errors_is_a_503_then_recovers(aws, moto, fixture_model, use_model):
    moto.start()
    uri = moto.publish(fixture_model)
    failing = {"on": True}
    proxy = FaultyProxy(moto.url, lambda method, path: "error" if failing["on"] else "forward")
    try:
        aws(proxy.url, timeout_s=2)
        use_model(uri)
        client = function_client()
        status, body, seconds = classify(client)
        assert_clear_503(status, body)
        assert seconds < 10
        failing["on"] = False
        assert classify(client)[0] == 200
    finally:
        proxy.close()
