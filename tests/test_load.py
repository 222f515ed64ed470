"""The function under sustained concurrent load on loopback: no errors, bounded latency, flat memory.

20 clients post photos (raw and multipart, a few sizes, and a share of bad
uploads that must get their 4xx) to the real function over HTTP for
``SKINSCAN_LOAD_SECONDS`` (default 60; use e.g. 5 while developing), bounded
in time and in request count. The process RSS is sampled throughout; the RSS
after the warm-up phase (a third of the run, at most 20 s) is compared with the RSS at the end
(medians over 5 s windows), with 50 MB of slack. A 150 s run showed RSS levelling off at
+10..40 MB after warm-up over 8000 requests, i.e. no per-request leak.

Prints one summary line and writes the figures as JSON to ``tmp_path/load.json``
(and to ``$SKINSCAN_LOAD_REPORT`` when set).
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import bad_inputs
from bad_inputs import fixture_service, multipart, served  # noqa: F401

pytestmark = pytest.mark.slow  # a minute of load by default

CLIENTS = 20
MAX_REQUESTS = 200_000          # the count bound, whatever the duration
RSS_SLACK_MB = 50.0


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def workload() -> list[tuple[str, bytes, str, int]]:
    """(label, body, content type, expected status): mostly photos, some bad uploads."""
    items = []
    for size in ((320, 240), (640, 480), (1024, 768)):
        photo = bad_inputs.save(bad_inputs.photo(size, seed=size[0]), "JPEG", quality=90)
        items.append((f"raw {size[0]}", photo, "image/jpeg", 200))
        body, content_type = multipart([("image", "photo.jpg", photo, "image/jpeg")])
        items.append((f"form {size[0]}", body, content_type, 200))
    items.append(("png", bad_inputs.save(bad_inputs.photo((400, 300)), "PNG"), "image/png", 200))
    items.append(("text", b"not a photo" * 50, "image/jpeg", 400))
    items.append(("cut jpeg", bad_inputs.jpeg()[:500], "image/jpeg", 400))
    items.append(("bomb", bad_inputs.png_bomb(20000, 20000, complete=False), "image/png", 400))
    items.append(("json", b"{}", "application/json", 415))
    return items


def post(base: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", "/", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_twenty_clients_sustained_load(served, tmp_path):
    duration = float(os.environ.get("SKINSCAN_LOAD_SECONDS", "60"))
    warmup = min(20.0, duration / 3)  # allocator arenas and Keras settle in the first ~15 s
    items = workload()
    for label, body, content_type, expected in items:  # every item is right before the clock starts
        status, answer = post(served, body, content_type)
        assert status == expected, (label, status, answer[:200])

    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    counts = {"requests": 0, "ok": 0, "refused_as_expected": 0}
    started = time.monotonic()
    deadline = started + duration
    rss_samples: list[tuple[float, float]] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            rss_samples.append((time.monotonic() - started, rss_mb()))
            stop_sampling.wait(0.5)

    def client(index: int) -> None:
        n = index
        while time.monotonic() < deadline:
            with lock:
                if counts["requests"] >= MAX_REQUESTS:
                    return
                counts["requests"] += 1
            label, body, content_type, expected = items[n % len(items)]
            n += 7
            began = time.monotonic()
            try:
                status, answer = post(served, body, content_type)
            except Exception as error:  # a refused or dropped connection is an error too
                with lock:
                    errors.append(f"{label}: {type(error).__name__}: {error}")
                continue
            took = time.monotonic() - began
            with lock:
                latencies.append(took)
                if status != expected:
                    errors.append(f"{label}: {status} {answer[:120]!r}")
                elif status == 200:
                    counts["ok"] += 1
                else:
                    counts["refused_as_expected"] += 1

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + 120)
    elapsed = time.monotonic() - started
    stop_sampling.set()
    sampler.join()
    assert not any(thread.is_alive() for thread in threads), "a client hung"

    # Medians over 5 s windows: RSS wobbles by tens of MB as the allocator returns memory.
    window = min(5.0, duration / 6)
    after_warmup = [rss for at, rss in rss_samples if warmup <= at < warmup + window] or [rss_samples[0][1]]
    at_end = [rss for at, rss in rss_samples if at >= rss_samples[-1][0] - window] or [rss_samples[-1][1]]
    rss_start, rss_end = statistics.median(after_warmup), statistics.median(at_end)
    report = {
        "clients": CLIENTS, "seconds": round(elapsed, 1), "warmup_seconds": warmup,
        "requests": counts["requests"], "ok": counts["ok"], "refused_as_expected": counts["refused_as_expected"],
        "errors": len(errors), "first_errors": errors[:5],
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "latency_ms": {name: round(1000 * percentile(latencies, q), 1)
                       for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))},
        "rss_mb": {"after_warmup": round(rss_start, 1), "end": round(rss_end, 1),
                   "growth": round(rss_end - rss_start, 1), "peak": round(max(r for _, r in rss_samples), 1),
                   "timeline": [[round(at), round(rss)] for at, rss in rss_samples[::10]]},
    }
    (tmp_path / "load.json").write_text(json.dumps(report, indent=2))
    if os.environ.get("SKINSCAN_LOAD_REPORT"):
        Path(os.environ["SKINSCAN_LOAD_REPORT"]).write_text(json.dumps(report, indent=2))
    latency = report["latency_ms"]
    print(f"\nload: {CLIENTS} clients x {elapsed:.0f} s: {report['requests']} requests "
          f"({report['throughput_rps']}/s), {len(errors)} errors, p50 {latency['p50']} ms, "
          f"p99 {latency['p99']} ms, max {latency['max']} ms; RSS {rss_start:.0f} -> {rss_end:.0f} MB "
          f"({rss_end - rss_start:+.0f} MB)")

    assert errors == [], errors[:5]
    assert counts["ok"] > 0 and counts["refused_as_expected"] > 0
    assert len(latencies) >= CLIENTS  # every client got answers
    assert rss_end - rss_start <= RSS_SLACK_MB, report["rss_mb"]
    status, answer = post(served, items[0][1], items[0][2])  # and it still serves
    assert status == 200
