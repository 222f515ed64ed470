"""A fake network for the fast test tier: the ``Backend`` protocol without TensorFlow.

``FakeBackend`` answers ``(features, probabilities)`` computed from simple image
statistics (channel means and spreads, quadrant brightness, centre contrast, edge
energy) through a fixed random projection. It is deterministic, cheap, and
sensitive to what a real network is sensitive to (colour, layout, rotation), so
every serving path (decoding, pre-processing, calibration, triage, the HTTP
contract) runs for real; only the weights are fake. It knows nothing about skin.

A *fake model file* (:func:`write_fake_model`) is a small file with a valid
manifest, so the model store, sha256 verification and S3 code run unchanged;
conftest makes :func:`skinscan.backends.load_backend` run such a file on the fake
backend and any real ``.h5`` on Keras.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from skinscan.imaging import Preprocessing
from skinscan.labels import LABELS
from skinscan.manifest import manifest_path_for, new_manifest, write_manifest

FAKE_MAGIC = b"skinscan fake model: no weights, for the fast test tier\n"
N_FEATURES = 12
_PROJECTION = np.random.default_rng(13).normal(0.0, 1.0, (N_FEATURES, len(LABELS))).astype(np.float32)


def image_statistics(batch: np.ndarray) -> np.ndarray:
    """``N_FEATURES`` numbers per pre-processed image (``batch``: N x S x S x 3, model units)."""
    batch = np.asarray(batch, dtype=np.float32)
    n, size = batch.shape[0], batch.shape[1]
    half = size // 2
    luminance = batch.mean(axis=3)
    quadrants = [luminance[:, :half, :half], luminance[:, :half, half:],
                 luminance[:, half:, :half], luminance[:, half:, half:]]
    quarter = size // 4
    centre = luminance[:, quarter:size - quarter, quarter:size - quarter].mean(axis=(1, 2))
    edges = np.abs(np.diff(luminance, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(luminance, axis=2)).mean(axis=(1, 2))
    columns = [*batch.mean(axis=(1, 2)).T, *batch.std(axis=(1, 2)).T,
               *[q.mean(axis=(1, 2)) for q in quadrants], centre - luminance.mean(axis=(1, 2)), edges]
    return np.stack(columns, axis=1).reshape(n, N_FEATURES)


class FakeBackend:
    """Satisfies :class:`skinscan.backends.Backend`: deterministic, no TensorFlow."""

    name = "fake"

    def __init__(self, model_path: str | Path | None = None) -> None:
        self.model_path = model_path
        self.calls = 0

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        features = image_statistics(batch)
        logits = 1.5 * features @ _PROJECTION
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return features, (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(np.float32)


def is_fake_model(path: str | Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(FAKE_MAGIC)) == FAKE_MAGIC
    except OSError:
        return False


def write_fake_model(folder: Path, size: int, name: str = "fixture.h5") -> Path:
    """A fake model file and its valid manifest (``size`` px input, small photos allowed)."""
    path = folder / name
    path.write_bytes(FAKE_MAGIC + bytes(range(256)) * 16)
    manifest = new_manifest(path, Preprocessing(size).to_dict(), "fixture-random-weights")
    manifest["quality"]["min_side"] = 16
    write_manifest(manifest, manifest_path_for(path))
    return path


COMPANION_SIZE = 48  # the fake companion sees the photo at another size and normalisation, as the teacher does


def write_fake_pair(folder: Path, size: int, name: str = "pair.h5", weight: float = 0.5) -> Path:
    """A fake model file served with a fake companion (:mod:`skinscan.companion`), both verified by sha256.

    The companion's entry is written as a teacher export writes it (``teacher.json`` beside
    ``teacher.h5``), then joined to the model's manifest as ``skinscan calibrate --companion`` joins it.
    """
    from skinscan.manifest import read_companion, read_manifest, sha256_file

    path = write_fake_model(folder, size, name)
    teacher = folder / "teacher.h5"
    teacher.write_bytes(FAKE_MAGIC + bytes(reversed(range(256))) * 8)
    entry = {"role": "teacher", "architecture": "fake teacher (no weights)", "file": teacher.name,
             "bytes": teacher.stat().st_size, "sha256": sha256_file(teacher),
             "preprocessing": Preprocessing(COMPANION_SIZE, mean=(0.5,) * 3, std=(0.5,) * 3).to_dict()}
    manifest_path_for(teacher).write_text(json.dumps(entry))
    manifest = read_manifest(manifest_path_for(path))
    manifest["companion"] = read_companion(manifest_path_for(teacher), weight)
    manifest["photo_type"] = fake_manifest(size)["photo_type"]
    write_manifest(manifest, manifest_path_for(path))
    return path


def fake_manifest(size: int) -> dict[str, Any]:
    """A manifest for a classifier built straight from :class:`FakeBackend` (no file at all)."""
    from skinscan.quality import DEFAULT_QUALITY
    from skinscan.triage import BY_PHOTO_TYPE, DEFAULT_THRESHOLDS

    return {"format": 1, "name": "skinscan-fake", "version": "fixture-fake-backend", "file": "none",
            "sha256": "0" * 64, "labels": list(LABELS), "preprocessing": Preprocessing(size).to_dict(),
            "calibration": {"temperature": 1.0},
            # The per-type thresholds equal the shared one, so no other test's triage changes.
            "triage": {**DEFAULT_THRESHOLDS, BY_PHOTO_TYPE: {
                kind: DEFAULT_THRESHOLDS["urgent_malignant_probability"] for kind in ("clinical", "dermoscopic")}},
            "quality": {**DEFAULT_QUALITY, "min_side": 16}, "ood": {"method": "none"},
            # Reddish photos count as dermoscopic, so responses carry both photo types.
            "photo_type": {"method": "fisher-discriminant", "weights": [1.0] + [0.0] * (N_FEATURES - 1),
                           "bias": 0.0, "cut": 0.0}}


class LambdaContext:
    """What the Lambda runtime passes a handler (Powertools reads these), for invoking handlers in tests."""

    function_name = "skinscan-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:skinscan-test"

    def __init__(self, aws_request_id: str = "test-request") -> None:
        self.aws_request_id = aws_request_id

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


LAMBDA_CONTEXT = LambdaContext()


def function_url_event(body: bytes, content_type: str | None = None, *, query: str = "", method: str = "POST",
                       base64_encoded: bool = True, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A Lambda function URL (HTTP API v2) event as Lambda sends it: the one builder every test uses."""
    sent = {"host": "abc.lambda-url.eu-west-1.on.aws", "user-agent": "curl/8.5.0", **(headers or {})}
    if content_type is not None:
        sent["content-type"] = content_type
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": query, "headers": sent,
        "requestContext": {"http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9"},
                           "domainName": "abc.lambda-url.eu-west-1.on.aws", "requestId": "id", "stage": "$default"},
        "body": base64.b64encode(body).decode() if base64_encoded else body.decode("latin-1"),
        "isBase64Encoded": base64_encoded,
    }
