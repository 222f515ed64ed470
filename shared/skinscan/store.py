"""Where the model comes from: a local path or S3, fetched once and verified.

``SKINSCAN_MODEL_URI`` is the one setting: ``s3://bucket/key.h5`` or a path;
unset means the model shipped in the repository. For S3 the manifest (same
key, ``.json``) is read first and the ``.h5`` is accepted only if its sha256
matches, so a swapped or corrupted object is never served. A companion network
(:mod:`skinscan.companion`) comes from the same folder, verified the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .backends import litert_available
from .manifest import (CompanionEntry, Manifest, ManifestError, manifest_path_for, read_manifest, sha256_file,
                       validate)

# The shipped model is package data: it travels inside the wheel, so any install finds it.
SHIPPED_MODEL = Path(__file__).resolve().parent / "models" / "skinscan-densenet121.h5"


class ModelUnavailable(RuntimeError):
    """The model cannot be fetched, verified or loaded. Callers answer 503."""


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    manifest: Manifest
    source: str


def model_uri() -> str:
    return os.environ.get("SKINSCAN_MODEL_URI") or str(SHIPPED_MODEL)


def cache_dir() -> Path:
    return Path(os.environ.get("SKINSCAN_CACHE_DIR") or Path(tempfile.gettempdir()) / "skinscan-models")


def resolve(uri: str | None = None) -> ResolvedModel:
    """Make the model available as a verified local file."""
    uri = uri or model_uri()
    try:
        if uri.startswith("s3://"):
            return _from_s3(uri)
        path = Path(uri).expanduser()
        return ResolvedModel(path, read_manifest(manifest_path_for(path)), str(path))
    except ManifestError as error:
        raise ModelUnavailable(str(error)) from None


def s3_client() -> Any:
    """A boto3 S3 client with bounded time, so a slow store cannot hang a request."""
    import boto3
    from botocore.config import Config

    timeout = float(os.environ.get("SKINSCAN_S3_TIMEOUT", "20"))
    return boto3.client("s3", config=Config(connect_timeout=min(timeout, 5), read_timeout=timeout,
                                             retries={"max_attempts": 2, "mode": "standard"}))


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def sibling_key(key: str, name: str) -> str:
    """The key of file ``name`` in the same S3 "folder" as ``key``."""
    return f"{key.rsplit('/', 1)[0]}/{name}" if "/" in key else name


def manifest_key_for(key: str) -> str:
    stem = key[:-3] if key.endswith(".h5") else key
    return stem + ".json"


def _from_s3(uri: str) -> ResolvedModel:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    client = s3_client()
    try:
        body = client.get_object(Bucket=bucket, Key=manifest_key_for(key))["Body"].read()
        manifest = validate(json.loads(body))
    except (BotoCoreError, ClientError) as error:
        raise ModelUnavailable(f"cannot read the model manifest from {uri}: {_describe(error)}") from None
    except (ValueError, ManifestError) as error:
        raise ModelUnavailable(f"the model manifest at {uri} is invalid: {error}") from None
    folder = cache_dir() / manifest["sha256"]
    model_path = folder / Path(key).name
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path_for(model_path).write_bytes(body)
    _fetch_network(client, bucket, key, model_path, manifest, uri)
    companion = manifest.get("companion")
    if companion:  # the pair's second network, from the same folder of the bucket
        _fetch_network(client, bucket, sibling_key(key, companion["file"]), folder / companion["file"], companion, uri)
    return ResolvedModel(model_path, manifest, uri)


def _fetch_network(client: Any, bucket: str, key: str, target: Path, entry: Manifest | CompanionEntry,
                   uri: str) -> None:
    """One network: its verified fast form when this process can run it (all that serving needs), else its .h5."""
    fast = entry.get("fast_path")
    if fast and litert_available():
        try:
            _fetch_verified(client, bucket, sibling_key(key, fast["file"]), target.with_name(fast["file"]),
                            fast["sha256"], uri)
            return
        except ModelUnavailable:
            pass
    _fetch_verified(client, bucket, key, target, entry["sha256"], uri)


def _fetch_verified(client: Any, bucket: str, key: str, target: Path, sha256: str, uri: str) -> None:
    """Download ``key`` to ``target`` unless a verified copy is cached; refuse a wrong hash."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    if target.is_file() and sha256_file(target) == sha256:
        return  # a warm container's /tmp still has it
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        # One attempt per part: the client's own retries already cover a flaky store, and the
        # transfer manager's extra attempts would multiply the timeout for a stalled one.
        client.download_file(bucket, key, str(partial), Config=TransferConfig(num_download_attempts=1))
    except (BotoCoreError, ClientError) as error:
        partial.unlink(missing_ok=True)
        raise ModelUnavailable(f"cannot download s3://{bucket}/{key} for {uri}: {_describe(error)}") from None
    if sha256_file(partial) != sha256:
        partial.unlink(missing_ok=True)
        raise ModelUnavailable(f"s3://{bucket}/{key} does not match its manifest's sha256; refusing it")
    partial.replace(target)


def _describe(error: Exception) -> str:
    code = getattr(error, "response", {}).get("Error", {}).get("Code") if hasattr(error, "response") else None
    return f"{type(error).__name__}{f' ({code})' if code else ''}"
