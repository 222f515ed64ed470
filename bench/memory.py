"""Memory and time of one request for the costliest uploads the function takes (issue 19). Linux (reads /proc).

    python bench/memory.py                 # the table (about a minute on 2 cores)
    python bench/memory.py --json out.json
    python bench/memory.py --limits        # what the limits mean in megapixels, per kind of file

The real function (functions-framework under gunicorn's threaded worker, as Cloud Run runs it)
serves the shipped model from its folder. After a warm-up with ordinary photos, each upload goes
alone: the worker's peak resident set is reset (``/proc/PID/clear_refs``) just before it and
read just after, so each row is that request's own peak, the model and everything else already
in memory included (and whatever an earlier request left resident: "RSS after" shows what each
leaves). Then three of the costliest go at once. The uploads are small files that decode to tens
of megapixels (the hostile-input corpus's decoded-size bombs, ``tests/bad_inputs.py``), the
costliest the limits let through, and a phone photo for scale; all under the 10 MB upload limit.

Goals (issue 19): peak RSS <= 450 MB for any one of them, <= 800 MB for three at once, and each
answered in <= 1.5 s on these cores. "CPU s" is the worker's own CPU time for the request: the
wall-clock seconds also count whatever else the machine runs. MB here is 10^6 bytes, as in
bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent / "tests")]

import bad_inputs  # noqa: E402
import harness as h  # noqa: E402

GOALS = {"one_mb": 450.0, "three_mb": 800.0, "seconds": 1.5}
AT_ONCE = ("16-bit grey PNG 8900 x 8900", "RGBA PNG 6000 x 6000")  # the issue's row, and the costliest accepted


def uploads() -> list[tuple[str, bytes, str]]:
    """``(name, bytes, content type)`` for every row, made once (about ten seconds)."""
    made = [(name, make(), mime) for name, (make, mime, *_) in bad_inputs.MEMORY_BOMB_KINDS.items()]
    made += [(name, make(), mime) for name, (make, mime) in bad_inputs.AT_THE_LIMIT.items()]
    made.append(("phone photo, JPEG 4032 x 3024", h.synthetic_jpeg((4032, 3024)), "image/jpeg"))
    assert all(len(data) <= bad_inputs.LIMIT for _, data, _ in made), "every upload must be one the function takes"
    return made


def default_model() -> Path:
    from skinscan.store import SHIPPED_MODEL

    return SHIPPED_MODEL


def worker_pid(server: h.FunctionServer, timeout: float = 30.0) -> int:
    """gunicorn's worker under the functions-framework arbiter: the process that serves and holds the model."""
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = h.children(server.process.pid)
        if found:
            return found[0]
        time.sleep(0.05)
    raise RuntimeError("no gunicorn worker appeared")


def outcome(status: int, body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{status} (not JSON)"
    if status == 200:
        return f"200 {payload.get('status')}"
    return f"{status} {(payload.get('error') or {}).get('code')}"


def one(port: int, pid: int, name: str, data: bytes, mime: str) -> dict[str, Any]:
    h.reset_peak_rss(pid)
    cpu, start = h.cpu_seconds(pid), time.perf_counter()
    status, body = h.post_image(port, data, content_type=mime)
    seconds = time.perf_counter() - start
    return {"upload": name, "bytes": len(data), "answer": outcome(status, body), "status": status,
            "peak_rss_mb": h.peak_rss_mb(pid), "seconds": seconds, "cpu_s": h.cpu_seconds(pid) - cpu,
            "rss_after_mb": h.peak_rss_mb(pid, "VmRSS")}


def at_once(port: int, pid: int, name: str, data: bytes, mime: str, count: int = 3) -> dict[str, Any]:
    """``count`` clients post ``data`` together (released by one barrier); the worker's peak over all of them."""
    answers: list[tuple[int, bytes, float]] = [(0, b"", 0.0)] * count
    barrier = threading.Barrier(count)

    def client(index: int) -> None:
        barrier.wait()
        start = time.perf_counter()
        status, body = h.post_image(port, data, content_type=mime)
        answers[index] = (status, body, time.perf_counter() - start)

    h.reset_peak_rss(pid)
    cpu = h.cpu_seconds(pid)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kinds = sorted({outcome(status, body) for status, body, _ in answers})
    return {"upload": f"{count} x {name}, at once", "bytes": len(data), "answer": " / ".join(kinds),
            "status": max(status for status, _, _ in answers), "peak_rss_mb": h.peak_rss_mb(pid),
            "seconds": max(seconds for _, _, seconds in answers), "cpu_s": h.cpu_seconds(pid) - cpu,
            "rss_after_mb": h.peak_rss_mb(pid, "VmRSS")}


def measure(model: Path, made: list[tuple[str, bytes, str]], log_dir: Path) -> dict[str, Any]:
    server = h.FunctionServer({"SKINSCAN_MODEL_URI": str(model), "SKINSCAN_PRELOAD": "1",
                               "SKINSCAN_CACHE_DIR": str(log_dir / "cache")}, log_dir)
    server.start()
    try:
        first = server.first_answer(h.synthetic_jpeg())
        pid = worker_pid(server)
        for seed in range(3):  # warm: every code path of an ordinary request has run once
            h.post_image(server.port, h.synthetic_jpeg(seed=seed))
        idle = h.peak_rss_mb(pid, "VmRSS")
        print(f"function up in {first['seconds']:.1f} s ({first['backend']}); worker RSS after warm-up {idle:.0f} MB",
              flush=True)
        rows = []
        for name, data, mime in made:
            rows.append(one(server.port, pid, name, data, mime))
            print(f"  {name}: {rows[-1]['answer']}, peak {rows[-1]['peak_rss_mb']:.0f} MB, "
                  f"{rows[-1]['seconds']:.2f} s", flush=True)
        by_name = {name: (data, mime) for name, data, mime in made}
        for name in AT_ONCE:
            rows.append(at_once(server.port, pid, name, *by_name[name]))
            print(f"  {rows[-1]['upload']}: {rows[-1]['answer']}, peak {rows[-1]['peak_rss_mb']:.0f} MB, "
                  f"slowest {rows[-1]['seconds']:.2f} s", flush=True)
        return {"backend": first["backend"], "idle_rss_mb": idle, "rows": rows}
    finally:
        server.stop()


def evaluate(result: dict[str, Any]) -> dict[str, str]:
    """PASS/MISS per goal; a row that was refused (4xx) still counts: it too must stay within them."""
    ones = [r for r in result["rows"] if "at once" not in r["upload"]]
    threes = [r for r in result["rows"] if "at once" in r["upload"]]
    return {
        "one": "PASS" if max(r["peak_rss_mb"] for r in ones) <= GOALS["one_mb"] else "MISS",
        "three": "PASS" if max(r["peak_rss_mb"] for r in threes) <= GOALS["three_mb"] else "MISS",
        "seconds": "PASS" if max(r["seconds"] for r in ones) <= GOALS["seconds"] else "MISS",
        "no_5xx": "PASS" if all(r["status"] < 500 for r in result["rows"]) else "MISS",
    }


def table(result: dict[str, Any]) -> str:
    """A Markdown table, as pasted into notes and issues."""
    lines = ["| upload | bytes | answer | peak RSS (MB) | seconds | CPU s | RSS after (MB) |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        lines.append(f"| {r['upload']} | {r['bytes']:,} | {r['answer']} | {r['peak_rss_mb']:,.0f} | "
                     f"{r['seconds']:.2f} | {r['cpu_s']:.2f} | {r['rss_after_mb']:,.0f} |")
    goals = result["goals"]
    lines += ["", f"worker RSS after warm-up: {result['idle_rss_mb']:.0f} MB ({result['backend']}); "
              f"load average at start {result['load_average']:.2f} on {result['cpus']} CPUs",
              f"goals: one upload <= {GOALS['one_mb']:.0f} MB: {goals['one']}; three at once <= "
              f"{GOALS['three_mb']:.0f} MB: {goals['three']}; each alone <= {GOALS['seconds']} s: {goals['seconds']}; "
              f"no 5xx: {goals['no_5xx']}"]
    return "\n".join(lines)


def run(model: Path | None = None) -> dict[str, Any]:
    model = model or default_model()
    load = os.getloadavg()[0]
    made = uploads()
    with tempfile.TemporaryDirectory(prefix="skinscan-memory-") as work:
        result = measure(model, made, Path(work))
    result.update({"model": str(model), "load_average": load, "cpus": os.cpu_count(),
                   "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    result["goals"] = evaluate(result)
    return result


# (kind, Pillow mode, format, JPEG component sampling or TIFF tags): what ``limits`` tabulates.
_LAYERS_420, _LAYERS_444 = [(1, 2, 2, 0), (2, 1, 1, 1), (3, 1, 1, 1)], [(1, 1, 1, 0), (2, 1, 1, 1), (3, 1, 1, 1)]
LIMIT_KINDS = [
    ("JPEG, baseline (what cameras and phones write)", "RGB", "JPEG", {"layer": _LAYERS_420}),
    ("JPEG, progressive, 4:2:0", "RGB", "JPEG", {"layer": _LAYERS_420, "scans": 2}),
    ("JPEG, progressive, 4:4:4", "RGB", "JPEG", {"layer": _LAYERS_444, "scans": 2}),
    ("PNG or BMP, RGB", "RGB", "PNG", {}),
    ("PNG, RGBA", "RGBA", "PNG", {}),
    ("PNG, 8-bit grey", "L", "PNG", {}),
    ("PNG, 16-bit grey", "I;16", "PNG", {}),
    ("GIF", "P", "GIF", {}),
    ("TIFF, RGB in strips of a few rows", "RGB", "TIFF", {"tag_v2": {258: (8, 8, 8), 277: 3, 278: 8}}),
    ("TIFF, 32-bit float in one strip", "F", "TIFF", {"tag_v2": {258: (32,), 277: 1}}),
    ("WebP", "RGB", "WEBP", {}),
]


def limits(draft_size: int = 512) -> list[tuple[str, int, float]]:
    """The largest square image of each kind ``decode`` accepts: (kind, side, megapixels).

    Computed from :func:`skinscan.imaging.decode_cost` on stand-ins for opened images (only the
    header's figures matter), with the draft size the shipped model's classifier asks for.
    """
    from types import SimpleNamespace

    from skinscan.imaging import MAX_DECODE_BYTES, MAX_PIXELS, decode_cost, reduction_factor

    def accepted(side: int, mode: str, fmt: str, extra: dict[str, Any]) -> bool:
        size = (side, side)
        if fmt == "JPEG":  # libjpeg's DCT scaling, as Pillow's draft() picks it
            scale = next(s for s in (8, 4, 2, 1) if s <= max(1, side // draft_size))
            size = (-(-side // scale),) * 2
        image = SimpleNamespace(size=size, mode=mode, format=fmt, **{k: v for k, v in extra.items() if k != "scans"})
        data = b"\xff\xda" * extra.get("scans", 1)
        cost = decode_cost(image, data, (side, side), reduction_factor(size, draft_size))
        return side * side <= MAX_PIXELS and cost <= MAX_DECODE_BYTES

    rows = []
    for kind, mode, fmt, extra in LIMIT_KINDS:
        low, high = 1, int(MAX_PIXELS ** 0.5) + 1  # accepted(low), not accepted(high)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if accepted(middle, mode, fmt, extra) else (low, middle)
        rows.append((kind, low, low * low / 1e6))
    return rows


def limits_table(draft_size: int = 512) -> str:
    from skinscan.imaging import MAX_DECODE_BYTES, MAX_PIXELS

    lines = [f"Largest square image accepted (MAX_PIXELS {MAX_PIXELS / 1e6:.0f} MP, MAX_DECODE_BYTES "
             f"{MAX_DECODE_BYTES / 2**20:.0f} MiB, draft size {draft_size}):", "",
             "| kind | largest square | megapixels |", "| --- | ---: | ---: |"]
    lines += [f"| {kind} | {side} x {side} | {mp:.0f} |" for kind, side, mp in limits(draft_size)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--limits", action="store_true", help="only print what the limits mean in megapixels")
    args = parser.parse_args(argv)
    if args.limits:
        print(limits_table())
        return 0
    result = run(args.model)
    print("\n" + table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if all(v == "PASS" for v in result["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
