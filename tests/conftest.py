"""Shared fixtures: small generated images, a random-weight fixture model, servers on loopback.

The fixture model has the seed architecture but random weights and a tiny
input size. It exercises every code path; it is never presented as a model
that knows anything about skin.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SKIN9 = Path(os.environ.get("SKINSCAN_DATA", REPO.parent / "shared" / "data" / "skin9"))
FIXTURE_SIZE = 32

needs_skin9 = pytest.mark.skipif(not SKIN9.is_dir(), reason=f"real photos not present at {SKIN9}")


def image_bytes(mode: str = "RGB", size: tuple[int, int] = (160, 120), fmt: str = "JPEG",
                seed: int = 0, **save: object) -> bytes:
    """A textured, skin-toned test photo in any Pillow mode and format."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([200 + 30 * np.sin(xx / 7), 150 + 25 * np.cos(yy / 5), 120 + 20 * np.sin((xx + yy) / 9)], -1)
    spot = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) < (min(w, h) / 4) ** 2
    base[spot] *= 0.45
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photo() -> bytes:
    return image_bytes()


@pytest.fixture(scope="session")
def fixture_model(tmp_path_factory) -> Path:
    """A random-weight seed-architecture model with a valid manifest, at 32 px."""
    import keras

    from skinscan.training.architecture import build_densenet121
    from skinscan.imaging import Preprocessing
    from skinscan.manifest import manifest_path_for, new_manifest, write_manifest

    keras.utils.set_random_seed(7)
    folder = tmp_path_factory.mktemp("fixture-model")
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
def moto_server():
    """A real AWS HTTP endpoint (moto_server) on a free loopback port; yields its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def moto_s3(monkeypatch, tmp_path):
    """A real S3 HTTP endpoint on loopback (moto_server), with boto3 pointed at it."""
    with moto_server() as endpoint:
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
    """The real classify function on loopback, serving the fixture model; yields its base URL,
    e.g. ``http://127.0.0.1:54321/``."""
    use_model(fixture_model)
    with serving(classify_app()) as url:
        yield url
