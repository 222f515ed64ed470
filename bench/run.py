"""skinscan benchmark: the served fast path against plain Keras, paired, in one run. Linux (reads /proc).

    python bench/run.py            # the shipped model (~4-6 min on 2 cores)
    python bench/run.py --quick    # a smoke run (~1 min)

The fast path is the real function (functions-framework, gunicorn) serving the
model's verified LiteRT form, pulled from a moto S3 server at cold start. The
baseline is a fresh process that imports Keras, loads the .h5 and calls
``model.predict`` on one pre-processed image (both networks, averaged, when the
manifest names a companion). The two are measured in turns
(cold starts alternate, warm requests and throughput levels run in alternating
blocks), so load from a neighbour hits both sides of every ratio alike.
The input size and pre-processing come from the model's manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import harness as h  # noqa: E402

DATA = Path(os.environ.get("SKINSCAN_DATA", BENCH_DIR.parents[1] / "shared" / "data" / "skin9"))
GOALS = {
    "warm_ratio": 0.25,   # fast HTTP p50 <= 0.25 x plain-Keras predict p50
    "cold_s": 1.5,        # spawn -> first answer, S3 pull included
    "throughput": 30.0,   # images/s with concurrent clients
    "rss_mb": 400.0,      # peak RSS of the serving process
}
CONTENDED_CORES = 0.25


def default_model() -> Path:
    from skinscan.store import SHIPPED_MODEL

    return SHIPPED_MODEL


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="the .h5 with its manifest and verified fast form beside it (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=DATA, help="skin9 photo folder (else generated photos)")
    parser.add_argument("--photos", type=int, default=32, help="distinct photos cycled through")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100, help="sequential warm requests per side")
    parser.add_argument("--clients", type=str, default="4,8", help="concurrent client counts")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per throughput level")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--quick", action="store_true", help="1 cold run, 10 requests, 2 clients x 2 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.cold_runs, args.requests, args.clients, args.duration, args.photos = 1, 10, "2", 2.0, 8
    args.clients = [int(c) for c in str(args.clients).split(",") if c.strip()]
    args.model = args.model or default_model()
    return args


def prepare_model(args: argparse.Namespace) -> dict[str, Any]:
    from skinscan.manifest import manifest_path_for, read_manifest

    manifest = read_manifest(manifest_path_for(args.model))
    fast = manifest.get("fast_path") or {}
    if fast.get("derived_from") != manifest["sha256"]:
        raise SystemExit(f"{args.model} has no verified fast form derived from this .h5 in its manifest: derive it "
                         "first (skinscan optimize --model ...); the benchmark measures the serving path")
    return {"path": str(args.model), "version": manifest["version"], "fast_kind": fast["kind"],
            "input_size": manifest["preprocessing"]["size"], "manifest": manifest}


def paired(model: Path, uri: str, env: dict[str, str], args: argparse.Namespace, photos: list[bytes],
           photo_dir: Path, work: Path, load: dict[str, float], helpers: list[int]) -> dict[str, Any]:
    """The fast path over HTTP and the plain-Keras baseline, measured in turns."""
    fast: dict[str, Any] = {"uri": uri, "cold_s": [], "throughput": []}
    base: dict[str, Any] = {"cold_s": [], "throughput": []}
    server: h.FunctionServer | None = None
    baseline: h.KerasBaseline | None = None
    try:
        with h.OtherLoad(helpers) as probe:
            for run in range(max(1, args.cold_runs)):
                if server:
                    server.stop()
                server = h.FunctionServer({**env, "SKINSCAN_MODEL_URI": uri,
                                           "SKINSCAN_CACHE_DIR": str(work / f"cache-{run}")}, work / "logs")
                server.start()
                first = server.first_answer(photos[run % len(photos)])
                if not str(first["backend"]).startswith("litert") or "keras" in str(first["backend"]):
                    raise RuntimeError(f"the function served with {first['backend']}, not LiteRT: the measurement "
                                       "would not be of the path it claims")
                fast["cold_s"].append(first["seconds"])
                fast["backend"] = first["backend"]
                last = run == args.cold_runs - 1 or args.cold_runs < 1
                process = h.KerasBaseline(model, photo_dir, work / "logs", cold_only=not last)
                if last:
                    baseline = process  # stopped in the finally below, even if its start fails
                try:
                    started = process.start()
                finally:
                    if not last:
                        process.stop()
                base["cold_s"].append(started["cold_seconds"])
                print(f"  cold start {run + 1}: fast {first['seconds']:.2f} s ({first['backend']}), "
                      f"plain Keras {started['cold_seconds']:.2f} s", flush=True)
                if last:
                    base.update({k: started[k] for k in ("import_s", "load_s", "first_predict_s")})
        load["cold"] = probe.cores
        assert server is not None and baseline is not None
        for i in range(3):
            h.post_image(server.port, photos[i % len(photos)])
        with h.OtherLoad(helpers) as probe:
            blocks = max(1, min(5, args.requests // 10))
            fast_seconds: list[float] = []
            base_seconds: list[float] = []
            failures, done = 0, 0
            for block in range(blocks):
                n = args.requests // blocks + (1 if block < args.requests % blocks else 0)
                got, failed = h.sequential_seconds(server.port, photos, n, offset=done)
                fast_seconds += got
                failures += failed
                base_seconds += baseline.ask(cmd="warm", n=n, offset=done)["seconds"]
                done += n
        load["warm"] = probe.cores
        fast["warm"] = {**h.summary_ms(fast_seconds), "failures": failures}
        base["warm"] = h.summary_ms(base_seconds)
        print(f"  warm p50: fast {fast['warm']['p50_ms']:.1f} ms via HTTP, plain Keras predict "
              f"{base['warm']['p50_ms']:.1f} ms", flush=True)
        with h.OtherLoad(helpers) as probe:
            for clients in args.clients:
                fast["throughput"].append(h.concurrent_throughput(server.port, photos, clients, args.duration))
                base["throughput"].append(baseline.ask(cmd="throughput", clients=clients, duration=args.duration))
                print(f"  {clients} clients: fast {fast['throughput'][-1]['images_per_s']:.1f} images/s, "
                      f"plain Keras {base['throughput'][-1]['images_per_s']:.1f} images/s", flush=True)
        load["throughput"] = probe.cores
        fast["peak_rss_mb"] = server.peak_rss_mb()
        base["peak_rss_mb"] = baseline.ask(cmd="rss")["peak_rss_mb"]
    finally:
        if server:
            server.stop()
        if baseline:
            baseline.stop()
    for side in (fast, base):
        side["cold_median_s"] = sorted(side["cold_s"])[len(side["cold_s"]) // 2]
    return {"fast": fast, "baseline": base}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    model = prepare_model(args)
    manifest = model.pop("manifest")
    print(f"model: {model['version']} ({model['fast_kind']} fast form, {model['input_size']} px) from {model['path']}",
          flush=True)
    work = Path(tempfile.mkdtemp(prefix="skinscan-bench-"))
    results: dict[str, Any] = {"date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "model": model,
                               "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
                               "other_load_cores": {}}
    try:
        photos, source = h.load_photos(manifest, args.data, args.photos)
        photo_dir = h.write_photo_dir(photos, work / "photos")
        results["inputs"] = {"source": source, "photos": len(photos)}
        print(f"inputs: {len(photos)} {source}", flush=True)
        with h.MotoS3() as s3:
            uri = s3.publish(Path(model["path"]), "fast")
            results.update(paired(Path(model["path"]), uri, s3.env, args, photos, photo_dir, work,
                                  results["other_load_cores"], [s3.process.pid]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["goals"] = evaluate(results)
    return results


def evaluate(r: dict[str, Any]) -> dict[str, str]:
    fast, base = r["fast"], r["baseline"]
    return {
        "warm": "PASS" if fast["warm"]["p50_ms"] / base["warm"]["p50_ms"] <= GOALS["warm_ratio"] else "MISS",
        "cold": "PASS" if fast["cold_median_s"] <= GOALS["cold_s"] else "MISS",
        "throughput": "PASS" if max(t["images_per_s"] for t in fast["throughput"]) >= GOALS["throughput"] else "MISS",
        "rss": "PASS" if fast["peak_rss_mb"] <= GOALS["rss_mb"] else "MISS",
    }


def table(r: dict[str, Any]) -> str:
    """The paired figures as an aligned text table: fast path, plain Keras, ratio, goal."""
    fast, base, goals = r["fast"], r["baseline"], r["goals"]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if a and b else "-"

    rows = [("measure", "fast (LiteRT, HTTP)", "plain Keras", "fast / Keras", "goal"),
            (f"cold start to first answer, median of {len(fast['cold_s'])} (s)", f"{fast['cold_median_s']:.2f}",
             f"{base['cold_median_s']:.2f}", ratio(fast["cold_median_s"], base["cold_median_s"]),
             f"<= {GOALS['cold_s']} s: {goals['cold']}")]
    for q in ("p50", "p95"):
        key = f"{q}_ms"
        rows.append((f"warm latency {q}, 1 image (ms)", f"{fast['warm'][key]:.1f}",
                     f"{base['warm'][key]:.1f} (predict)",
                     ratio(fast["warm"][key], base["warm"][key]),
                     f"<= {GOALS['warm_ratio']}x: {goals['warm']}" if q == "p50" else ""))
    for mine, theirs in zip(fast["throughput"], base["throughput"], strict=True):
        rows.append((f"throughput, {mine['clients']} clients (images/s)", f"{mine['images_per_s']:.1f}",
                     f"{theirs['images_per_s']:.1f}", ratio(mine["images_per_s"], theirs["images_per_s"]),
                     f">= {GOALS['throughput']:.0f}: {goals['throughput']}" if mine is fast["throughput"][-1] else ""))
    rows.append(("peak RSS, serving process (MB)", f"{fast['peak_rss_mb']:.0f}", f"{base['peak_rss_mb']:.0f}",
                 ratio(fast["peak_rss_mb"], base["peak_rss_mb"]), f"<= {GOALS['rss_mb']:.0f}: {goals['rss']}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(r: dict[str, Any]) -> str:
    m, busy = r["model"], r["other_load_cores"]
    lines = [f"skinscan benchmark, {r['date_utc']}: {r['machine']['cpus']} CPUs; model {m['version']} "
             f"({m['fast_kind']}, {m['input_size']} px); inputs {r['inputs']['photos']} {r['inputs']['source']}",
             "", table(r), "",
             f"plain Keras cold start: import {r['baseline']['import_s']:.2f} s + load .h5 "
             f"{r['baseline']['load_s']:.2f} s + first predict {r['baseline']['first_predict_s']:.2f} s",
             "other processes' CPU use (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in busy.items())]
    if any(v > CONTENDED_CORES for v in busy.values()):
        lines.append("WARNING: the machine was shared with other work: absolute figures are pessimistic "
                     "(the ratios are paired, so less affected).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results = run_benchmark(args)
    print("\n" + report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
