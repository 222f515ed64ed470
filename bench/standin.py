"""A random-weight stand-in for the shipped model, for when it is absent.

Same architecture (DenseNet121 -> GAP -> Dropout -> Dense(9)), same input
size, same manifest and verified LiteRT fast form, so every timing is the
shipped model's; only the answers are meaningless. Output always labels it.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

STANDIN_VERSION = "bench-stand-in"
STANDIN_NAME = "skinscan-densenet121.h5"


def build_standin(folder: str | Path, size: int = 112, seed: int = 8) -> Path:
    """Write ``skinscan-densenet121.h5`` + manifest + verified ``.tflite`` into ``folder``."""
    import keras

    from skinscan import fastpath
    from skinscan.training.architecture import build_densenet121
    from skinscan.imaging import Preprocessing
    from skinscan.manifest import manifest_path_for, new_manifest, write_manifest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STANDIN_NAME
    keras.utils.set_random_seed(seed)
    model = build_densenet121(size)
    model.save(path, include_optimizer=False)
    manifest = new_manifest(path, Preprocessing(size).to_dict(), STANDIN_VERSION)
    write_manifest(manifest, manifest_path_for(path))
    record = fastpath.derive(path, fastpath.sample_batches(path, None, None))
    if not record["verified"]["accepted"]:
        raise RuntimeError(f"the stand-in's fast form was not accepted: {record['verified']}")
    return path


if __name__ == "__main__":
    import sys

    print(build_standin(sys.argv[1] if len(sys.argv) > 1 else "/tmp/skinscan-bench-standin"))
