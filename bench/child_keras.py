"""The plain-Keras baseline, as a fresh process: import, load the .h5, predict.

When the manifest names a companion (the DenseNet121 served with its teacher), the baseline loads
and runs both ``.h5`` files and averages them, as the fast path does: the same model, served two ways.

``cold_only``: print one JSON line after the first prediction and exit.
Otherwise the process stays up after that line and answers JSON commands on
stdin, one per line, so the parent can interleave its measurements with the
fast path's (both then see the same machine):
``{"cmd": "warm", "n": N, "offset": K}``, ``{"cmd": "throughput", "clients": C,
"duration": D}``, ``{"cmd": "rss"}``, ``{"cmd": "quit"}``.
``first_prediction_epoch`` is wall-clock time so the parent can subtract the
moment it spawned this process.
"""

import json
import os
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def reply(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main() -> None:
    config = json.loads(sys.argv[1])
    started = time.time()
    import keras

    imported = time.time()
    from pathlib import Path

    from skinscan.imaging import Preprocessing, decode, to_model_input
    from skinscan.manifest import manifest_path_for, read_manifest

    # The same networks the fast path serves: the DenseNet121, and its companion when the manifest names one.
    manifest = read_manifest(manifest_path_for(config["model"]))
    densenet = keras.models.load_model(config["model"], compile=False)
    preprocessing = Preprocessing.from_dict(manifest["preprocessing"])
    networks = [(densenet, preprocessing, 1.0)]
    if "companion" in manifest:
        entry, share = manifest["companion"], manifest["companion"]["weight"]
        companion = keras.models.load_model(Path(config["model"]).with_name(entry["file"]), compile=False)
        networks = [(densenet, preprocessing, 1.0 - share),
                    (companion, Preprocessing.from_dict(entry["preprocessing"]), share)]
    loaded = time.time()
    photos = sorted(Path(config["photos"]).glob("*.jpg"))

    def prepare(path):
        image = decode(path.read_bytes(), draft_size=max(2 * preprocessing.size, 512))
        return [to_model_input(image, each) for _, each, _ in networks]

    def predict(inputs):
        return sum(weight * model.predict(x, verbose=0) for (model, _, weight), x in zip(networks, inputs, strict=True))

    predict(prepare(photos[0]))
    first = time.time()
    reply({"import_s": imported - started, "load_s": loaded - imported, "first_predict_s": first - loaded,
           "first_prediction_epoch": first, "keras": keras.__version__, "peak_rss_mb": vm_hwm_mb(),
           "networks": len(networks)})
    if config["cold_only"]:
        return
    inputs = [prepare(p) for p in photos]
    for x in inputs[:3]:
        predict(x)
    reply({"ready": True})  # warm-up done: nothing runs here until the parent asks
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "warm":
            seconds = []
            for i in range(command["n"]):
                x = inputs[(command.get("offset", 0) + i) % len(inputs)]
                t = time.perf_counter()
                predict(x)
                seconds.append(time.perf_counter() - t)
            reply({"seconds": seconds})
        elif command["cmd"] == "throughput":
            reply(threaded(predict, inputs, command["clients"], command["duration"]))
        elif command["cmd"] == "rss":
            reply({"peak_rss_mb": vm_hwm_mb()})
        else:
            reply({"bye": True})
            return


def threaded(predict, inputs, clients: int, duration: float) -> dict:
    """``clients`` threads calling ``predict`` back to back (the baseline's best concurrent effort)."""
    counts, errors, finished = [0] * clients, [], [0.0] * clients
    start = time.perf_counter()
    stop_at = start + duration

    def work(index: int) -> None:
        k = index
        while time.perf_counter() < stop_at:
            try:
                predict(inputs[k % len(inputs)])
                counts[index] += 1
            except Exception as error:  # Keras does not promise thread safety
                errors.append(repr(error)[:200])
                break
            k += clients
        finished[index] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(finished) - start
    return {"clients": clients, "images": sum(counts), "seconds": elapsed,
            "images_per_s": sum(counts) / elapsed if elapsed else float("nan"), "errors": errors[:3]}


if __name__ == "__main__":
    main()
