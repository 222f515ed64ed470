"""skinscan performance benchmark (issue 8): the serving path against plain Keras, in one run.

    python bench/run.py                      # full run on the shipped model (~6-8 min on 2 cores)
    python bench/run.py --quick --skip-install-size   # a smoke run (~1-2 min)

Measures, on this machine and in this run: cold start to the first answer
(function process spawned fresh, model pulled from a moto S3 server), warm
HTTP latency, throughput with concurrent clients, peak RSS, the size of the
serving install, and the int8 question; each next to the plain-Keras baseline
(a fresh process that imports Keras, loads the .h5 and predicts). Writes
bench/results.json and bench/results.md. Nothing is cached between runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
if str(BENCH_DIR.parent / "shared") not in sys.path:  # run from a checkout without an install
    sys.path.append(str(BENCH_DIR.parent / "shared"))

import harness as h  # noqa: E402

DEFAULT_MODEL = h.REPO / "shared" / "skinscan" / "models" / "skinscan-densenet121.h5"
DEFAULT_DATA = Path(os.environ.get("SKINSCAN_DATA", h.REPO.parent / "shared" / "data" / "skin9"))

GOALS = {
    "warm_ratio": 0.25,        # fast HTTP p50 <= 0.25 x plain-Keras predict p50
    "warm_ratio_int8": 0.15,   # ... <= 0.15 x when int8 keeps top-1 >= 99 %
    "cold_s": 1.5,             # spawn -> first answer, S3 pull included
    "throughput": 30.0,        # images/s with concurrent clients
    "install_mb": 300.0,       # serving dependencies installed
    "rss_mb": 400.0,           # peak RSS of the serving process
}


CONTENDED_CORES = 0.25


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="the .h5 (with manifest and verified .tflite beside it); default the shipped model. "
                             "If absent, a random-weight stand-in is built and labelled as such")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="skin9 photo folder (input photos)")
    parser.add_argument("--split", type=Path, default=None,
                        help="split JSON (default: <model>.split.json beside the model)")
    parser.add_argument("--photos", type=int, default=32, help="distinct photos cycled through")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100, help="sequential warm requests")
    parser.add_argument("--clients", type=str, default="4,8", help="concurrent client counts")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per throughput level")
    parser.add_argument("--threads-duration", type=float, default=8.0,
                        help="seconds per level of the SKINSCAN_THREADS comparison (0 skips it)")
    parser.add_argument("--int8-limit", type=int, default=200, help="held-out photos for the int8 agreement")
    parser.add_argument("--skip-int8", action="store_true")
    parser.add_argument("--skip-install-size", action="store_true", help="skip the fresh-venv pip install (~1-2 min)")
    parser.add_argument("--skip-keras-http", action="store_true", help="skip the Keras-through-HTTP extra row")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings: 1 cold run, 10 requests, 2 clients x 2 s, 16 int8 photos")
    parser.add_argument("--wait-quiet", type=float, default=180.0,
                        help="before each section, wait up to this many seconds for other processes to leave "
                             "the CPUs (0: don't wait); contention is measured and reported either way")
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="where results.json / results.md go")
    args = parser.parse_args(argv)
    if args.quick:
        args.cold_runs, args.requests, args.clients, args.duration = 1, 10, "2", 2.0
        args.threads_duration, args.int8_limit, args.photos = min(args.threads_duration, 2.0), 16, 8
        args.wait_quiet = 0.0
    args.clients = [int(c) for c in str(args.clients).split(",") if c.strip()]
    return args


# --------------------------------------------------------------------------- pieces

def training_running() -> bool:
    """Whether a training job shares the machine (then every figure is pessimistic)."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if b"train_main.py" in handle.read():
                        return True
            except OSError:
                pass
    return False


def prepare_model(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from skinscan.manifest import manifest_path_for, read_manifest

    model, built = args.model, False
    if not model.is_file():
        print(f"{model} is absent: building a random-weight STAND-IN (same architecture and size) ...", flush=True)
        folder = work / "stand-in"
        subprocess.run([h.PYTHON, str(BENCH_DIR / "standin.py"), str(folder)], check=True, cwd=h.REPO,
                       env=h.clean_env(), capture_output=True)
        model, built = folder / "skinscan-densenet121.h5", True
    manifest = read_manifest(manifest_path_for(model))
    fast = manifest.get("fast_path") or {}
    if not fast or fast.get("derived_from") != manifest["sha256"]:
        raise SystemExit(f"{model} has no verified fast form derived from this .h5 in its manifest: derive it "
                         "first (skinscan optimize --model ...); the benchmark measures the serving path")
    stand_in = built or manifest["version"] == "bench-stand-in"
    if stand_in:
        label = "STAND-IN (random weights; timings only, answers meaningless)"
    elif model.resolve() == DEFAULT_MODEL.resolve():
        label = "shipped model"
    else:
        label = f"model at {model}"
    return {"path": model, "manifest": manifest, "version": manifest["version"], "stand_in": stand_in,
            "label": f"{label}, version {manifest['version']}",
            "fast_kind": manifest["fast_path"]["kind"], "input_size": manifest["preprocessing"]["size"],
            "sha256": manifest["sha256"]}


def held_out_split(args: argparse.Namespace, model: Path, work: Path) -> Path | None:
    split = args.split or model.with_name(model.stem + ".split.json")
    if split.is_file():
        return split
    if not args.data.is_dir():
        return None
    from skinscan.training.data import discover, save_split, stratified_split

    # No split beside the model (the stand-in): the training pipeline's seeded split of the same folder.
    made = work / "split.json"
    save_split(stratified_split(discover(args.data), seed=42), made, 42)
    return made


def hot_path(model: Path, photos: list[bytes], rounds: int) -> dict[str, Any]:
    """Per-stage cost of one request inside the process (no HTTP), and LiteRT thread settings."""
    from skinscan import quality
    from skinscan.backends import LiteRTBackend
    from skinscan.classifier import Classifier
    from skinscan.imaging import decode, to_model_input

    classifier = Classifier.load(model)
    size = classifier.preprocessing.size
    draft = max(2 * size, 512)
    stages: dict[str, list[float]] = {k: [] for k in
                                      ("decode", "quality", "preprocess", "network", "result_json", "total")}
    for body in photos[:3]:
        classifier.classify_bytes(body)
    for i in range(rounds):
        body = photos[i % len(photos)]
        t0 = time.perf_counter()
        image = decode(body, draft_size=draft)
        t1 = time.perf_counter()
        quality.problem(quality.measure(image), classifier.quality_rules)
        t2 = time.perf_counter()
        x = to_model_input(image, classifier.preprocessing)
        t3 = time.perf_counter()
        calibrated, _ = classifier.probabilities(x)
        t4 = time.perf_counter()
        json.dumps(classifier.result_from_probabilities(calibrated[0]))
        t5 = time.perf_counter()
        for key, a, b in (("decode", t0, t1), ("quality", t1, t2), ("preprocess", t2, t3), ("network", t3, t4),
                          ("result_json", t4, t5), ("total", t0, t5)):
            stages[key].append(b - a)
    answer: dict[str, Any] = {"backend": classifier.backend.name,
                              "stages_p50_ms": {k: 1000 * h.percentile(v, 50) for k, v in stages.items()}}

    # A 12-megapixel phone photo: what JPEG draft decoding saves.
    phone = h.synthetic_jpeg((4032, 3024), seed=5)
    analysis = int(classifier.quality_rules.get("analysis_size", 256))
    small_draft = max(2 * size, analysis)
    timings: dict[str, list[float]] = {"draft": [], "full": [], "classify": [], "quality": [],
                                       "small_draft": [], "small_quality": []}
    for _ in range(3):
        t = time.perf_counter(); image = decode(phone, draft_size=draft); timings["draft"].append(time.perf_counter() - t)
        t = time.perf_counter(); quality.measure(image); timings["quality"].append(time.perf_counter() - t)
        t = time.perf_counter(); image = decode(phone, draft_size=small_draft)
        timings["small_draft"].append(time.perf_counter() - t)
        t = time.perf_counter(); quality.measure(image); timings["small_quality"].append(time.perf_counter() - t)
        t = time.perf_counter(); decode(phone); timings["full"].append(time.perf_counter() - t)
        t = time.perf_counter(); classifier.classify_bytes(phone); timings["classify"].append(time.perf_counter() - t)
    best = {k: 1000 * min(v) for k, v in timings.items()}
    answer["phone_12mp_ms"] = {"bytes": len(phone), "draft_size": draft, "decode_with_draft": best["draft"],
                               "quality_after_draft": best["quality"], "decode_full": best["full"],
                               "classify_bytes": best["classify"], "smaller_draft_size": small_draft,
                               "decode_with_smaller_draft": best["small_draft"],
                               "quality_after_smaller_draft": best["small_quality"]}

    # LiteRT thread settings: one interpreter with 1 or 2 threads, and two 1-thread interpreters in parallel.
    fast_file = model.with_name(classifier.manifest["fast_path"]["file"])
    inputs = [to_model_input(decode(b, draft_size=draft), classifier.preprocessing) for b in photos[:8]]
    threads: dict[str, Any] = {}
    window = max(1.0, min(3.0, rounds * 0.05))
    for n in (1, 2):
        backend = LiteRTBackend(fast_file, threads=n)
        for x in inputs[:2]:
            backend.run(x)
        seconds = []
        for i in range(max(10, rounds // 2)):
            t = time.perf_counter(); backend.run(inputs[i % len(inputs)]); seconds.append(time.perf_counter() - t)
        threads[f"1 interpreter x {n} thread(s)"] = {
            "p50_ms": 1000 * h.percentile(seconds, 50),
            "images_per_s": _parallel_rate([backend], inputs, window)}
    pool = [LiteRTBackend(fast_file, threads=1) for _ in range(2)]
    threads["2 interpreters x 1 thread, 2 callers"] = {"p50_ms": float("nan"),
                                                       "images_per_s": _parallel_rate(pool, inputs, window)}
    answer["litert_threads"] = threads
    answer["cpu_count"] = os.cpu_count()
    return answer


def _parallel_rate(backends: list, inputs: list, seconds: float) -> float:
    """Images/s with one caller thread per backend (LiteRT releases the GIL while it runs)."""
    counts = [0] * len(backends)
    stop_at = time.perf_counter() + seconds

    def work(i: int) -> None:
        k = i
        while time.perf_counter() < stop_at:
            backends[i].run(inputs[k % len(inputs)])
            counts[i] += 1
            k += 1

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(backends))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def serve_and_measure(name: str, uri: str, env: dict[str, str], args: argparse.Namespace, photos: list[bytes],
                      work: Path, cold_runs: int, *, latency: bool = True,
                      clients: list[int] | None = None, duration: float | None = None,
                      requests: int | None = None, launcher: list[str] | None = None) -> dict[str, Any]:
    """Cold-start the function ``cold_runs`` times (fresh cache each), then measure the last one warm."""
    colds: list[float] = []
    server: h.FunctionServer | None = None
    try:
        for run in range(max(1, cold_runs)):
            if server:
                server.stop()
            cache = work / f"cache-{name}-{run}"
            server = h.FunctionServer({**env, "SKINSCAN_MODEL_URI": uri, "SKINSCAN_CACHE_DIR": str(cache)},
                                      work / "logs", launcher=launcher)
            server.start()
            first = server.first_answer(photos[run % len(photos)])
            colds.append(first["seconds"])
            print(f"  [{name}] cold start {run + 1}: {first['seconds']:.2f} s ({first['backend']})", flush=True)
        expected = "keras" if name.startswith("keras") else "litert"
        if not str(first["backend"]).startswith(expected):
            raise RuntimeError(f"[{name}] the function served with {first['backend']}, not {expected}: "
                               "the measurement would not be of the path it claims")
        result: dict[str, Any] = {"uri": uri, "backend": first["backend"], "cold_s": colds,
                                  "cold_median_s": sorted(colds)[len(colds) // 2]}
        if latency:
            result["warm"] = h.sequential_latency(server.port, photos, requests or args.requests)
            print(f"  [{name}] warm p50 {result['warm']['p50_ms']:.1f} ms, p95 {result['warm']['p95_ms']:.1f} ms",
                  flush=True)
        result["throughput"] = []
        for c in (clients if clients is not None else args.clients):
            level = h.concurrent_throughput(server.port, photos, c, duration or args.duration)
            result["throughput"].append(level)
            print(f"  [{name}] {c} clients: {level['images_per_s']:.1f} images/s", flush=True)
        result["rss"] = server.peak_rss()
        # The gunicorn arbiter never loads the model; the worker (largest) is the serving process.
        result["peak_rss_mb"] = result["rss"]["max_mb"]
    finally:
        if server:  # also when a start fails: never leave a server behind
            server.stop()
    return result


def cold_phases(uri: str, env: dict[str, str], photo: Path, work: Path) -> dict[str, Any]:
    phases, spawned, _ = h.run_child("child_cold.py", {"mode": "phases", "source": str(h.FUNCTION_SOURCE),
                                                      "photo": str(photo)},
                                     env={**env, "SKINSCAN_MODEL_URI": uri,
                                          "SKINSCAN_CACHE_DIR": str(work / "cache-phases")})
    phases["interpreter_start_s"] = phases.pop("python_start_epoch") - spawned
    phases["total_s"] = phases.pop("end_epoch") - spawned - phases["second_classify_s"]
    _, _, stderr = h.run_child("child_cold.py", {"mode": "imports", "source": str(h.FUNCTION_SOURCE)},
                               python_flags=["-X", "importtime"])
    return {"phases": phases, "top_imports": h.top_imports(stderr)}


def lambda_cold(uri: str, env: dict[str, str], photo: Path, work: Path, runs: int) -> dict[str, Any]:
    """The Lambda entry point (infra/Dockerfile's handler): spawn -> init (model preloaded) -> first invoke."""
    colds = []
    for run in range(max(1, runs)):
        marks, spawned, _ = h.run_child("child_cold.py", {"mode": "lambda", "photo": str(photo)},
                                        env={**env, "SKINSCAN_MODEL_URI": uri,
                                             "SKINSCAN_CACHE_DIR": str(work / f"cache-lambda-{run}")})
        if marks["status"] != 200 or not str(marks["backend"]).startswith("litert"):
            raise RuntimeError(f"the Lambda handler answered {marks['status']} with {marks['backend']}")
        marks["seconds"] = marks["end_epoch"] - spawned
        colds.append(marks)
        print(f"  [lambda] cold start {run + 1}: {marks['seconds']:.2f} s", flush=True)
    seconds = sorted(m["seconds"] for m in colds)
    return {"runs": colds, "cold_median_s": seconds[len(seconds) // 2]}


def install_sizes(work: Path) -> dict[str, Any]:
    print("  fresh venv: pip install '.[serve]' ...", flush=True)
    fresh = h.fresh_serve_install(work / "install")
    shutil.rmtree(work / "install", ignore_errors=True)
    serving = ["numpy>=1.26", "pillow>=10.3", "functions-framework>=3.8", "boto3>=1.34"]
    return {"fresh_serve_venv": fresh,
            "keras_baseline_closure": h.installed_closure_mb(serving + ["tensorflow-cpu"]),
            "serve_closure_here": h.installed_closure_mb(serving + ["ai-edge-litert"])}


# --------------------------------------------------------------------------- the run

def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    work = h.temp_dir()
    results: dict[str, Any] = {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "machine": h.machine(), "training_running_at_start": training_running(),
                               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                               "other_load_cores": {}}
    helpers: list[int] = []

    class section(h.OtherLoad):
        """Print a heading and record how busy the rest of the machine was meanwhile."""

        def __init__(self, name: str, heading: str) -> None:
            super().__init__(helpers)
            self.name = name
            print(heading, flush=True)
            waited = wait_for_quiet(helpers, args.wait_quiet)
            if waited:
                print(f"  (waited {waited:.0f} s for other work on the machine to stop)", flush=True)

        def __exit__(self, *exc: Any) -> None:
            super().__exit__(*exc)
            results["other_load_cores"][self.name] = round(self.cores, 2)

    try:
        model = prepare_model(args, work)
        results["model"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in model.items() if k != "manifest"}
        print(f"model: {model['label']} ({model['path']})", flush=True)
        split = held_out_split(args, model["path"], work)
        photos, source = h.load_photos(model["manifest"], args.data, split, args.photos)
        photo_dir = h.write_photo_dir(photos, work / "photos")
        results["inputs"] = {"source": source, "photos": len(photos),
                             "mean_kb": sum(map(len, photos)) / len(photos) / 1000}
        print(f"inputs: {len(photos)} {source}", flush=True)

        with section("hot_path", "hot path (in-process) ..."):
            results["hot_path"] = hot_path(model["path"], photos, max(20, args.requests // 2))

        int8 = None
        if not args.skip_int8:
            with section("int8", "int8: derive on a copy, agreement with the .h5 on held-out photos ..."):
                int8 = h.run_child("child_int8.py", {"model": str(model["path"]), "folder": str(work / "int8"),
                                                     "data": str(args.data) if args.data.is_dir() else None,
                                                     "split": str(split) if split else None,
                                                     "limit": args.int8_limit,
                                                     "latency_n": max(10, args.requests // 2)}, timeout=1800)[0]
                verified = int8["record"]["verified"]
                print(f"  top-1 agreement {verified['top1_agreement']:.3f} on {verified['images']} photos: "
                      + ("accepted" if verified["accepted"] else "REJECTED"), flush=True)
                results["int8"] = int8

        with h.MotoS3() as s3:
            helpers.append(s3.process.pid)
            targets = {"fast": s3.publish(model["path"], "fast")}
            if int8 and int8["record"]["verified"]["accepted"]:
                targets["int8"] = s3.publish(Path(int8["model_copy"]), "int8")
            keras_uri = s3.publish(h.keras_only_copy(model["path"], work / "keras-only"), "keras")
            with section("paired", "fast path over HTTP and plain Keras, in turns ..."):
                measured = paired(model["path"], targets, s3.env, args, photos, photo_dir, work)
            results["fast"], results["baseline"] = measured["fast"], measured["baseline"]
            if "int8" in measured:
                results["int8"]["http"] = measured["int8"]

            if not args.skip_keras_http:
                with section("keras_http", "Keras through the same HTTP function (manifest without fast_path) ..."):
                    results["keras_http"] = serve_and_measure("keras-http", keras_uri, s3.env, args, photos, work,
                                                              args.cold_runs)

            with section("cold_breakdown", "cold start phases, imports, Lambda entry point ..."):
                results["cold_breakdown"] = cold_phases(targets["fast"], s3.env, photo_dir / "0000.jpg", work)
                results["lambda"] = lambda_cold(targets["fast"], s3.env, photo_dir / "0000.jpg", work, args.cold_runs)

            if args.threads_duration > 0:
                with section("threads", "thread settings and the interpreter-pool experiment ..."):
                    results["threads"] = thread_settings(targets["fast"], s3.env, args, photos, work)

        if not args.skip_install_size:
            with section("install", "install size ..."):
                results["install"] = install_sizes(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["training_running_at_end"] = training_running()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["goals"] = evaluate(results)
    return results


def wait_for_quiet(helpers: list[int], limit: float, sample: float = 2.0) -> float:
    """Wait (up to ``limit`` s) until other processes use under CONTENDED_CORES; the seconds waited."""
    started = time.monotonic()
    while limit > 0:
        with h.OtherLoad(helpers) as probe:
            time.sleep(sample)
        if probe.cores <= CONTENDED_CORES or time.monotonic() - started >= limit:
            break
    return time.monotonic() - started if limit > 0 and time.monotonic() - started > sample + 0.5 else 0.0


def paired(model: Path, targets: dict[str, str], env: dict[str, str], args: argparse.Namespace,
           photos: list[bytes], photo_dir: Path, work: Path) -> dict[str, Any]:
    """The fast path(s) over HTTP and the plain-Keras baseline, measured in turns.

    ``targets`` maps a name ("fast", "int8") to its S3 URI. Cold starts
    alternate (fast, int8, Keras, fast, ...); warm requests run in blocks
    that alternate between the servers and the baseline process; throughput
    levels alternate too. So a neighbour's load on a shared machine hits
    both sides of each ratio alike.
    """
    runs = max(1, args.cold_runs)
    out: dict[str, Any] = {name: {"uri": uri, "cold_s": [], "throughput": []} for name, uri in targets.items()}
    base: dict[str, Any] = {"cold_s": [], "throughput": []}
    servers: dict[str, h.FunctionServer] = {}
    baseline: h.KerasBaseline | None = None
    try:
        for run in range(runs):
            for name, uri in targets.items():
                if name in servers:
                    servers[name].stop()
                server = h.FunctionServer({**env, "SKINSCAN_MODEL_URI": uri,
                                           "SKINSCAN_CACHE_DIR": str(work / f"cache-{name}-{run}")}, work / "logs")
                servers[name] = server
                server.start()
                first = server.first_answer(photos[run % len(photos)])
                if not str(first["backend"]).startswith("litert"):
                    raise RuntimeError(f"[{name}] the function served with {first['backend']}, not LiteRT")
                out[name]["cold_s"].append(first["seconds"])
                out[name]["backend"] = first["backend"]
                print(f"  [{name}] cold start {run + 1}: {first['seconds']:.2f} s ({first['backend']})", flush=True)
            last = run == runs - 1
            process = h.KerasBaseline(model, photo_dir, work / "logs", cold_only=not last)
            if last:
                baseline = process  # stopped in the finally below, even if its start fails
            try:
                first = process.start()
            finally:
                if not last:
                    process.stop()
            base["cold_s"].append(first["cold_seconds"])
            print(f"  [plain keras] cold start {run + 1}: {first['cold_seconds']:.2f} s", flush=True)
            if last:
                base.update({k: first[k] for k in ("import_s", "load_s", "first_predict_s", "keras")})
        assert baseline is not None
        for server in servers.values():
            for i in range(3):
                h.post_image(server.port, photos[i % len(photos)])
        blocks = max(1, min(5, args.requests // 10))
        seconds: dict[str, list[float]] = {name: [] for name in [*servers, "baseline"]}
        failures = dict.fromkeys(servers, 0)
        done = 0
        for block in range(blocks):
            n = args.requests // blocks + (1 if block < args.requests % blocks else 0)
            for name, server in servers.items():
                got, failed = h.sequential_seconds(server.port, photos, n, offset=done)
                seconds[name] += got
                failures[name] += failed
            seconds["baseline"] += baseline.warm(n, done)
            done += n
        for name in servers:
            out[name]["warm"] = {**h.summary_ms(seconds[name]), "failures": failures[name]}
            print(f"  [{name}] warm p50 {out[name]['warm']['p50_ms']:.1f} ms, p95 {out[name]['warm']['p95_ms']:.1f} ms",
                  flush=True)
        base["warm"] = h.summary_ms(seconds["baseline"])
        print(f"  [plain keras] predict p50 {base['warm']['p50_ms']:.1f} ms, p95 {base['warm']['p95_ms']:.1f} ms",
              flush=True)
        for clients in args.clients:
            for name, server in servers.items():
                level = h.concurrent_throughput(server.port, photos, clients, args.duration)
                out[name]["throughput"].append(level)
                print(f"  [{name}] {clients} clients: {level['images_per_s']:.1f} images/s", flush=True)
            level = baseline.throughput(clients, args.duration)
            base["throughput"].append(level)
            print(f"  [plain keras] {clients} threads: {level['images_per_s']:.1f} images/s", flush=True)
        for name, server in servers.items():
            out[name]["rss"] = server.peak_rss()
            # The gunicorn arbiter never loads the model; the worker (largest) is the serving process.
            out[name]["peak_rss_mb"] = out[name]["rss"]["max_mb"]
        base["peak_rss_mb"] = baseline.peak_rss_mb()
    finally:
        for server in servers.values():
            server.stop()
        if baseline:
            baseline.stop()
    for figures in [*out.values(), base]:
        figures["cold_median_s"] = sorted(figures["cold_s"])[len(figures["cold_s"]) // 2]
    return {**out, "baseline": base}


def thread_settings(uri: str, env: dict[str, str], args: argparse.Namespace, photos: list[bytes],
                    work: Path) -> dict[str, Any]:
    """SKINSCAN_THREADS 1 vs 2, and the proposed interpreter pool (bench/pool_server.py), over HTTP."""
    answer = {}
    pool = [h.PYTHON, str(BENCH_DIR / "pool_server.py")]
    for label, threads, interpreters in (("1 interpreter x 1 thread", 1, 1),
                                         ("1 interpreter x 2 threads", 2, 1),
                                         ("2 interpreters x 1 thread (pool)", 1, 2),
                                         ("2 interpreters x 2 threads (pool)", 2, 2)):
        print(f"  {label} ...", flush=True)
        answer[label] = serve_and_measure(
            label.split(" (")[0].replace(" ", ""), uri,
            {**env, "SKINSCAN_THREADS": str(threads), "SKINSCAN_BENCH_INTERPRETERS": str(interpreters)},
            args, photos, work, 1, requests=max(10, args.requests // 3), clients=args.clients,
            duration=args.threads_duration, launcher=pool if interpreters > 1 else None)
    return answer


# --------------------------------------------------------------------------- verdicts and the table

def evaluate(r: dict[str, Any]) -> list[dict[str, Any]]:
    goals = []

    def goal(name: str, value: float | None, target: str, ok: bool | None, note: str = "") -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        goals.append({"goal": name, "value": value, "target": target, "result": verdict, "note": note})

    stages = r.get("hot_path", {}).get("stages_p50_ms", {})
    phases = r.get("cold_breakdown", {}).get("phases", {})
    base_p50 = r["baseline"]["warm"]["p50_ms"]
    fast_p50 = r["fast"]["warm"]["p50_ms"]
    ok = fast_p50 / base_p50 <= GOALS["warm_ratio"]
    goal("warm HTTP p50 / plain-Keras predict p50", fast_p50 / base_p50, f"<= {GOALS['warm_ratio']}", ok,
         "" if ok or not stages else f"bound by the network itself: {stages['network']:.1f} ms of "
         f"{stages['total']:.1f} ms in-process; HTTP p50 {fast_p50:.1f} ms")
    int8 = r.get("int8")
    if int8 and int8.get("http"):
        ratio = int8["http"]["warm"]["p50_ms"] / base_p50
        goal("int8 warm HTTP p50 / plain-Keras p50", ratio, f"<= {GOALS['warm_ratio_int8']}",
             ratio <= GOALS["warm_ratio_int8"])
    elif int8:
        goal("int8 warm HTTP p50 / plain-Keras p50", None, f"<= {GOALS['warm_ratio_int8']} if top-1 >= 99 %", None,
             f"int8 rejected (top-1 {int8['record']['verified']['top1_agreement']:.3f}); goal does not apply")
    cold = r["fast"]["cold_median_s"]
    top = sorted(((v, k.removesuffix("_s")) for k, v in phases.items()
                  if k.endswith("_s") and k not in ("total_s", "second_classify_s")), reverse=True)[:3]
    goal("cold start to first answer, S3 pull included (s)", cold, f"<= {GOALS['cold_s']}", cold <= GOALS["cold_s"],
         "" if cold <= GOALS["cold_s"] or not top else "largest phases: " + ", ".join(f"{k} {v:.2f} s" for v, k in top))
    best = max(t["images_per_s"] for t in r["fast"]["throughput"])
    ok = best >= GOALS["throughput"]
    goal("throughput, concurrent clients (images/s)", best, f">= {GOALS['throughput']}", ok,
         "" if ok or not stages else f"one interpreter behind a lock: at {stages['network']:.1f} ms per invoke "
         f"its ceiling is {1000 / stages['network']:.0f} images/s before HTTP and decoding")
    if r.get("install"):
        size = r["install"]["fresh_serve_venv"]["dependencies_mb"]
        goal("serving install (MB)", size, f"<= {GOALS['install_mb']}", size <= GOALS["install_mb"])
    else:
        goal("serving install (MB)", None, f"<= {GOALS['install_mb']}", None, "skipped (--skip-install-size)")
    rss = r["fast"]["peak_rss_mb"]
    goal("peak RSS of the serving process (MB)", rss, f"<= {GOALS['rss_mb']}", rss <= GOALS["rss_mb"])
    return goals


def _f(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value:.{digits}f}{unit}"


def render(r: dict[str, Any]) -> str:
    fast, base, kh = r["fast"], r["baseline"], r.get("keras_http")
    ratio = lambda a, b: f"{a / b:.2f}×" if a and b else "—"  # noqa: E731
    verdict = {g["goal"]: g["result"] for g in r["goals"]}
    rows = [("Measure", "fast (LiteRT) via HTTP", "Keras via HTTP", "plain Keras", "fast / plain",
             "fast / Keras HTTP", "goal")]
    rows.append((f"cold start → first answer, median of {len(fast['cold_s'])} (s)", _f(fast["cold_median_s"], 2),
                 _f(kh["cold_median_s"], 2) if kh else "—", _f(base["cold_median_s"], 2),
                 ratio(fast["cold_median_s"], base["cold_median_s"]),
                 ratio(fast["cold_median_s"], kh["cold_median_s"]) if kh else "—",
                 f"≤ {GOALS['cold_s']} s: {verdict['cold start to first answer, S3 pull included (s)']}"))
    if r.get("lambda"):
        lam = r["lambda"]["cold_median_s"]
        rows.append(("cold start, Lambda handler in-process, S3 pull included (s)", _f(lam, 2), "—",
                     _f(base["cold_median_s"], 2), ratio(lam, base["cold_median_s"]), "—", "(extra row)"))
    for q in ("p50", "p95"):
        key = f"{q}_ms"
        goal_text = (f"≤ {GOALS['warm_ratio']}×: {verdict['warm HTTP p50 / plain-Keras predict p50']}"
                     if q == "p50" else "")
        rows.append((f"warm latency {q}, 1 image (ms)", _f(fast["warm"][key]), _f(kh["warm"][key]) if kh else "—",
                     _f(base["warm"][key]) + " (predict only)", ratio(fast["warm"][key], base["warm"][key]),
                     ratio(fast["warm"][key], kh["warm"][key]) if kh else "—", goal_text))
    base_tp = {t["clients"]: t for t in base["throughput"]}
    kh_tp = {t["clients"]: t for t in kh["throughput"]} if kh else {}
    for level in fast["throughput"]:
        c = level["clients"]
        b = base_tp.get(c, {}).get("images_per_s")
        rows.append((f"throughput, {c} concurrent clients (images/s)", _f(level["images_per_s"]),
                     _f(kh_tp.get(c, {}).get("images_per_s")), _f(b) + f" ({c} threads)",
                     ratio(level["images_per_s"], b), ratio(level["images_per_s"], kh_tp.get(c, {}).get("images_per_s")),
                     f"≥ {GOALS['throughput']:.0f}: {verdict['throughput, concurrent clients (images/s)']}"
                     if level is fast["throughput"][-1] else ""))
    rows.append(("peak RSS, serving process (MB)", _f(fast["peak_rss_mb"], 0),
                 _f(kh["peak_rss_mb"], 0) if kh else "—", _f(base["peak_rss_mb"], 0),
                 ratio(fast["peak_rss_mb"], base["peak_rss_mb"]),
                 ratio(fast["peak_rss_mb"], kh["peak_rss_mb"]) if kh else "—",
                 f"≤ {GOALS['rss_mb']:.0f}: {verdict['peak RSS of the serving process (MB)']}"))
    if r.get("install"):
        inst = r["install"]
        size, tf_size = inst["fresh_serve_venv"]["dependencies_mb"], inst["keras_baseline_closure"]["mb"]
        rows.append(("serving install (MB)", _f(size, 0) + " (fresh venv, .[serve])", "—",
                     _f(tf_size, 0) + " (serve deps + tensorflow-cpu)", ratio(size, tf_size), "—",
                     f"≤ {GOALS['install_mb']:.0f}: {verdict['serving install (MB)']}"))
    else:
        rows.append(("serving install (MB)", "skipped", "—", "—", "—", "—", "n/a"))
    int8 = r.get("int8")
    if int8:
        v = int8["record"]["verified"]
        p50 = int8.get("run_p50_ms", {})
        rows.append((f"int8: top-1 agreement with .h5 ({v['images']} {int8['photos']})", f"{v['top1_agreement']:.3f}",
                     "", f"max |Δp| {v['max_abs_difference']:.3f}", "accepted" if v["accepted"] else "REJECTED",
                     "", "≥ 0.99 to ship"))
        if p50:
            rows.append(("int8 vs float32 LiteRT invoke p50 (ms)", f"{_f(p50['int8'])} vs {_f(p50['float32'])}", "",
                         "", ratio(p50["int8"], p50["float32"]) + " of float32", "", ""))
        if int8.get("http"):
            w = int8["http"]["warm"]["p50_ms"]
            rows.append(("int8 warm latency p50 via HTTP (ms)", _f(w), "", _f(base["warm"]["p50_ms"]),
                         ratio(w, base["warm"]["p50_ms"]), "",
                         f"≤ {GOALS['warm_ratio_int8']}×: {verdict['int8 warm HTTP p50 / plain-Keras p50']}"))
            ih = int8["http"]
            rows.append(("int8 cold start (s) / throughput (images/s) / RSS (MB)",
                         f"{_f(ih['cold_median_s'], 2)} / {_f(max(t['images_per_s'] for t in ih['throughput']))} / "
                         f"{_f(ih['peak_rss_mb'], 0)}", "", "", "", "",
                         f"file {int8['int8_bytes'] / 1e6:.1f} MB vs float32 {int8.get('float32_bytes', 0) / 1e6:.1f} MB"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def render_details(r: dict[str, Any]) -> str:
    out = []
    cb = r.get("cold_breakdown")
    if cb:
        p = cb["phases"]
        out.append("Cold start, phase by phase (fresh process, no HTTP server): "
                   + ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in p.items() if k.endswith("_s")))
        out.append("Top imports of the serving entry point (python -X importtime, cumulative): "
                   + ", ".join(f"{i['package']} {i['ms']:.0f} ms" for i in cb["top_imports"][:8]))
    fast = r["fast"]
    out.append("Fast path cold starts (s): " + ", ".join(f"{x:.2f}" for x in fast["cold_s"])
               + f"; peak RSS per process (MB): "
               + ", ".join(f"{v:.0f}" for v in fast["rss"]["per_process_mb"].values()) + " (gunicorn arbiter + worker)")
    base = r["baseline"]
    out.append(f"Plain Keras cold start: import {base['import_s']:.2f} s + load .h5 {base['load_s']:.2f} s + "
               f"first predict {base['first_predict_s']:.2f} s (+ interpreter start); "
               f"thread errors: {sum(len(t['errors']) for t in base['throughput'])}")
    hp = r.get("hot_path")
    if hp:
        out.append("Hot path in-process, p50 ms: " + ", ".join(f"{k} {v:.2f}" for k, v in hp["stages_p50_ms"].items())
                   + f"; HTTP adds {fast['warm']['p50_ms'] - hp['stages_p50_ms']['total']:.1f} ms (p50 HTTP − in-process)")
        ph = hp["phone_12mp_ms"]
        out.append(f"12 MP phone JPEG ({ph['bytes'] / 1e6:.1f} MB): classify_bytes {ph['classify_bytes']:.0f} ms; decode "
                   f"with draft {ph['draft_size']} {ph['decode_with_draft']:.0f} ms + quality {ph['quality_after_draft']:.0f} ms "
                   f"(full decode {ph['decode_full']:.0f} ms); with draft {ph['smaller_draft_size']}: decode "
                   f"{ph['decode_with_smaller_draft']:.0f} ms + quality {ph['quality_after_smaller_draft']:.0f} ms")
        out.append("LiteRT threads (in-process, no HTTP): " + "; ".join(
            f"{k}: p50 {_f(v['p50_ms'])} ms, {v['images_per_s']:.1f} images/s" for k, v in hp["litert_threads"].items()))
    th = r.get("threads")
    if th:
        out.append("Threads and interpreters over HTTP (SKINSCAN_THREADS; pools via bench/pool_server.py): " + "; ".join(
            f"{n}: p50 {t['warm']['p50_ms']:.1f} ms idle, " + ", ".join(
                f"{level['clients']} clients {level['images_per_s']:.1f} images/s (p50 {level['latency_p50_ms']:.0f} ms)"
                for level in t["throughput"]) + f", RSS {t['peak_rss_mb']:.0f} MB" for n, t in th.items()))
    inst = r.get("install")
    if inst:
        f = inst["fresh_serve_venv"]
        out.append(f"Serving install: site-packages {f['site_packages_mb']:.0f} MB − empty venv {f['empty_venv_mb']:.0f} MB "
                   f"= {f['dependencies_mb']:.0f} MB; biggest: " + ", ".join(f"{b['name']} {b['mb']:.0f}" for b in f["biggest"][:6])
                   + f"; TensorFlow/Keras present: {f['heavy_frameworks_present'] or 'no'}")
        k = inst["keras_baseline_closure"]
        out.append("Keras serving baseline (installed sizes here): " + ", ".join(f"{b['name']} {b['mb']:.0f}" for b in k["biggest"][:6]))
    return "\n".join(f"- {line}" for line in out)


def render_goals(r: dict[str, Any]) -> str:
    return "\n".join(f"{g['result']:4}  {g['goal']}: {_f(g['value'], 2)} (goal {g['target']})"
                     + (f" — {g['note']}" if g["note"] else "") for g in r["goals"])


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    head = [f"# skinscan benchmark — {r['date_utc']}", "",
            f"Machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}; load average at start "
            f"{', '.join(f'{x:.1f}' for x in m['load_average_at_start'])}, at end "
            f"{', '.join(f'{x:.1f}' for x in m.get('load_average_at_end', ()))}",
            f"Model: {r['model']['label']} ({r['model']['fast_kind']} fast form, {r['model']['input_size']} px)",
            f"Inputs: {r['inputs']['photos']} {r['inputs']['source']}, mean {r['inputs']['mean_kb']:.0f} kB",
            "Training job running: " + ("YES — figures are pessimistic" if r["training_running_at_start"]
                                        or r["training_running_at_end"] else "no"),
            f"Command: {r['command']}", ""]
    load = r.get("other_load_cores", {})
    busy = {k: v for k, v in load.items() if v > CONTENDED_CORES}
    head.append("Other processes' CPU use per section (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in load.items()))
    if busy:
        head.append(f"WARNING: sections {', '.join(busy)} shared the machine with other work (> {CONTENDED_CORES} "
                    "cores): their figures are pessimistic and ratios across sections are less exact.")
    head.append("")
    return "\n".join(head + [render(r), "", render_goals(r), "", render_details(r), ""])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results = run_benchmark(args)
    results["command"] = " ".join(["python bench/run.py", *argv])
    text = report(results)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (args.out / "results.md").write_text(text)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
