"""The int8 question, in its own process (it needs TensorFlow to convert).

Derives ``litert-int8`` into a copy of the model (accepted only at >= 99 %
top-1 agreement with the .h5 on the held-out photos), and times float32 and
int8 invocations on the same inputs. Prints one JSON line.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    config = json.loads(sys.argv[1])
    import numpy as np

    from skinscan import fastpath
    from skinscan.backends import LiteRTBackend
    from skinscan.manifest import manifest_path_for, read_manifest

    source = Path(config["model"])
    folder = Path(config["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / source.name
    shutil.copy(source, model)
    shutil.copy(manifest_path_for(source), manifest_path_for(model))
    float_fast = read_manifest(manifest_path_for(source)).get("fast_path")
    data = Path(config["data"]) if config.get("data") else None
    split = Path(config["split"]) if config.get("split") else None
    batches = list(fastpath.sample_batches(model, data, split, limit=config["limit"]))
    started = time.time()
    record = fastpath.derive(model, batches, kind="litert-int8")
    answer = {"derive_s": time.time() - started, "record": record,
              "photos": "held-out photos" if data and split and split.is_file() else "generated noise images",
              "model_copy": str(model)}
    int8_file = fastpath.fast_path_for(model, "litert-int8")
    if not int8_file.exists():  # rejected: derive removed it; convert again only to time it
        int8_file.write_bytes(fastpath.convert(model, "litert-int8"))
    answer["int8_bytes"] = int8_file.stat().st_size
    if float_fast:
        answer["float32_bytes"] = (source.parent / float_fast["file"]).stat().st_size
        float_backend = LiteRTBackend(source.parent / float_fast["file"])
        int8_backend = LiteRTBackend(int8_file)
        inputs = batches[: config["latency_n"]] or batches
        for backend in (float_backend, int8_backend):
            for x in inputs[:3]:
                backend.run(x)
        timings = {"float32": [], "int8": []}
        for x in inputs:  # interleaved, so drift in machine load hits both alike
            for name, backend in (("float32", float_backend), ("int8", int8_backend)):
                t = time.perf_counter()
                backend.run(x)
                timings[name].append(time.perf_counter() - t)
        answer["run_p50_ms"] = {k: 1000 * float(np.percentile(v, 50)) for k, v in timings.items()}
        answer["run_p95_ms"] = {k: 1000 * float(np.percentile(v, 95)) for k, v in timings.items()}
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
