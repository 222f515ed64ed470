"""Shared fixtures: small generated images, test models, servers on loopback.

Two test models, neither presented as knowing anything about skin:

- ``fixture_model``: a fake model file (tests/fakes.py) with a valid manifest. The
  store, sha256 checks, S3 and every adapter run for real; inference runs on
  ``FakeBackend`` (image statistics, no TensorFlow). What most tests need: *a* model.
- ``keras_model``: the seed architecture with random weights at 32 px, built with
  Keras (seconds; tests using it are marked slow).

The fast tier (``make check``: ``-m "not slow"``, or ``SKINSCAN_FAST_TIER=1``) fails
any test after which TensorFlow or Keras is imported.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

with contextlib.suppress(ImportError):
    # PyTorch's vision ops must load before TensorFlow in one process, or it segfaults
    # (skinscan.training.torch_networks); any test may be the first to load TensorFlow.
    import torchvision  # noqa: F401

from fakes import FakeBackend, fake_manifest, is_fake_model, write_fake_model
from photos import photo_bytes
from skinscan import configure_process

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
configure_process()  # what every entry point does at process start

REPO = Path(__file__).resolve().parents[1]
SKIN9 = Path(os.environ.get("SKINSCAN_DATA", REPO.parent / "shared" / "data" / "skin9"))
FIXTURE_SIZE = 32

needs_skin9 = pytest.mark.skipif(not SKIN9.is_dir(), reason=f"real photos not present at {SKIN9}")


image_bytes = photo_bytes  # the tests' one synthetic photo (tests/photos.py), encoded


@pytest.fixture(scope="session")
def photo() -> bytes:
    return image_bytes()


# -- the fast tier: no TensorFlow -----------------------------------------------------------------
HEAVY_MODULES = ("tensorflow", "keras")
FAST_TIER = False


def pytest_configure(config):
    global FAST_TIER
    markexpr = (config.getoption("markexpr", "") or "").replace(" ", "")
    FAST_TIER = os.environ.get("SKINSCAN_FAST_TIER") == "1" or markexpr == "notslow"


def _heavy_loaded() -> list[str]:
    return [name for name in HEAVY_MODULES if name in sys.modules]


def pytest_collection_finish(session):
    if FAST_TIER and _heavy_loaded():
        raise pytest.UsageError(f"fast tier: collecting the tests imported {_heavy_loaded()}; "
                                "import it inside the (slow) tests that need it")


@pytest.fixture(autouse=True)
def _no_tensorflow_in_the_fast_tier(request):
    before = set(_heavy_loaded())
    yield
    imported = set(_heavy_loaded()) - before
    if FAST_TIER and imported:
        pytest.fail(f"fast tier: {request.node.nodeid} imported {sorted(imported)}; mark it "
                    "@pytest.mark.slow or use the fake backend", pytrace=False)


# -- models ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session", autouse=True)
def _fake_model_files_run_on_the_fake_backend():
    """``load_backend`` runs fake model files on FakeBackend and real ``.h5`` files on Keras."""
    from skinscan import backends

    keras_backend = backends.KerasBackend

    def keras_or_fake(model_path):
        return FakeBackend(model_path) if is_fake_model(model_path) else keras_backend(model_path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backends, "KerasBackend", keras_or_fake)
        yield


@pytest.fixture(scope="session")
def fixture_model(tmp_path_factory) -> Path:
    """A fake model file with a valid manifest, at 32 px: served by FakeBackend, no TensorFlow."""
    return write_fake_model(tmp_path_factory.mktemp("fake-model"), FIXTURE_SIZE)


@pytest.fixture
def fake_classifier():
    """A Classifier straight from FakeBackend and an in-memory manifest (no file, no store)."""
    from skinscan.classifier import Classifier

    return Classifier(FakeBackend(), fake_manifest(FIXTURE_SIZE))


@pytest.fixture
def fake_service(fake_classifier):
    """The fake classifier installed as the process-wide one (what the function, page and bot reach)."""
    from skinscan import service

    service.install(fake_classifier)
    yield fake_classifier
    service.reset()


@pytest.fixture(scope="session")
def keras_model(tmp_path_factory) -> Path:
    """A random-weight seed-architecture Keras model with a valid manifest, at 32 px (slow tests only)."""
    import keras

    from skinscan.training.architecture import build_densenet121
    from skinscan.imaging import Preprocessing
    from skinscan.manifest import manifest_path_for, new_manifest, write_manifest

    keras.utils.set_random_seed(7)
    folder = tmp_path_factory.mktemp("keras-model")
    path = folder / "fixture.h5"
    model = build_densenet121(FIXTURE_SIZE)
    model.save(path, include_optimizer=False)
    manifest = new_manifest(path, Preprocessing(FIXTURE_SIZE).to_dict(), "fixture-random-weights")
    manifest["quality"]["min_side"] = 16
    write_manifest(manifest, manifest_path_for(path))
    return path


@pytest.fixture
def use_model(monkeypatch):
    """Point the process-wide classifier at a model URI for one test."""
    from skinscan import service

    def use(uri: str | Path) -> None:
        monkeypatch.setenv("SKINSCAN_MODEL_URI", str(uri))
        service.reset()

    yield use
    service.reset()


# -- secrets: one scan for every test that reads configuration or templates ------------------------
SECRET_LIKE = {
    "a Telegram bot token": re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"),
    "an AWS access key id": re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
SECRET_NAME = re.compile("TOKEN|SECRET|PASSWORD|KEY")


def secrets_in(text: str) -> list[str]:
    """What secret-looking values ``text`` holds (empty when none): the one scan the tests share."""
    return [kind for kind, pattern in SECRET_LIKE.items() if pattern.search(text)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port}")


@contextlib.contextmanager
def moto_server(port: int = 0) -> Iterator[str]:
    """A real AWS HTTP endpoint: moto's ThreadedMotoServer on loopback (``port`` 0: a free one),
    emptied when it starts; yields its URL. Every test that needs S3 gets it from here."""
    import urllib.request

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = "http://{}:{}".format(*server.get_host_and_port())
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).close()
    try:
        yield url
    finally:
        server.stop()
        # stop() leaves the socket listening (connections would hang, not be refused): close it, so a
        # stopped server is down the way a real outage is, and its port can be bound again.
        server._server.server_close()  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def _shared_moto_server():
    """One moto server for the session (starting one costs 1-3 s); ``moto_s3`` empties it per test."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def moto_s3(monkeypatch, tmp_path, _shared_moto_server):
    """A real, empty S3 HTTP endpoint on loopback (moto_server), with boto3 pointed at it."""
    import urllib.request

    endpoint = _shared_moto_server
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SKINSCAN_CACHE_DIR", str(tmp_path / "model-cache"))
    yield endpoint


@contextlib.contextmanager
def serving(app):
    """Any WSGI app on a free loopback port (threaded Werkzeug server); yields its base URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def classify_app():
    """The real classify function as functions-framework builds it."""
    from functions_framework import create_app

    return create_app("classify", str(REPO / "functions" / "main.py"))


@pytest.fixture
def function_server(fixture_model, use_model):
    """The real classify function on loopback, serving the (fake) fixture model; yields its base URL,
    e.g. ``http://127.0.0.1:54321/``."""
    use_model(fixture_model)
    with serving(classify_app()) as url:
        yield url
