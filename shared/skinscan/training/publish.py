"""Publish a model to object storage: the ``.h5``, its manifest, checked end to end.

Every file the manifest names goes up: the fast form, and the companion's
files when the model serves a pair. Each sha256 is checked before upload (the
file is the one its manifest describes) and after (the stored object hashes to
the same value), so a truncated or tampered upload is caught here rather than
by every container.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..manifest import (CompanionEntry, Manifest, ManifestError, manifest_path_for, read_manifest, sha256_file,
                        verify_model_file)
from ..store import manifest_key_for, s3_client, sibling_key, split_s3_uri


class PublishError(RuntimeError):
    pass


def object_sha256(client, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def files_to_publish(model_path: Path, manifest: Manifest) -> list[tuple[str, str]]:
    """``(file name, sha256)`` of every file the manifest names, the model's ``.h5`` first: its verified
    fast form, and the companion's ``.h5`` and fast form when it has one."""
    files = [(model_path.name, manifest["sha256"])]
    entries: list[Manifest | CompanionEntry] = [manifest]
    if "companion" in manifest:
        files.append((manifest["companion"]["file"], manifest["companion"]["sha256"]))
        entries.append(manifest["companion"])
    files += [(entry["fast_path"]["file"], entry["fast_path"]["sha256"]) for entry in entries if "fast_path" in entry]
    return files


def publish_model(model_path: str | Path, destination: str, client=None) -> str:
    """Upload and verify; return the ``SKINSCAN_MODEL_URI`` to configure."""
    model_path = Path(model_path)
    try:
        manifest = read_manifest(manifest_path_for(model_path))
        for file, sha256 in files_to_publish(model_path, manifest)[1:]:
            if sha256_file(model_path.with_name(file)) != sha256:
                raise ManifestError(f"{file} does not match its sha256 in the manifest")
        verify_model_file(model_path, manifest)
    except (ManifestError, FileNotFoundError) as error:
        raise PublishError(f"not publishing: {error}") from None
    bucket, prefix = split_s3_uri(destination.rstrip("/") + "/" + model_path.name
                                  if destination.endswith("/") else destination)
    key = prefix if prefix.endswith(".h5") else prefix.rstrip("/") + "/" + model_path.name
    client = client or s3_client()
    _upload_verified(client, model_path, bucket, key, manifest["sha256"], "application/x-hdf5")
    for file, sha256 in files_to_publish(model_path, manifest)[1:]:
        _upload_verified(client, model_path.with_name(file), bucket, sibling_key(key, file), sha256,
                         "application/x-hdf5" if file.endswith(".h5") else "application/octet-stream")
    # The manifest goes last: containers only ever see a manifest whose files are already in place.
    client.upload_file(str(manifest_path_for(model_path)), bucket, manifest_key_for(key),
                       ExtraArgs={"ContentType": "application/json"})
    return f"s3://{bucket}/{key}"


def _upload_verified(client, path: Path, bucket: str, key: str, sha256: str, content_type: str) -> None:
    client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": sha256}})
    stored = object_sha256(client, bucket, key)
    if stored != sha256:
        client.delete_object(Bucket=bucket, Key=key)
        raise PublishError(f"s3://{bucket}/{key} hashes to {stored[:12]}…, not {sha256[:12]}…: "
                           "the upload was altered; it has been removed and the manifest not written")
