"""The benchmark's machinery: processes, clocks, clients and memory. Linux only (reads /proc).

Everything here measures; nothing decides PASS/MISS (that is :mod:`run`).
The plain-Keras baseline runs in its own process (``child_keras.py``) so that
TensorFlow never loads into the process that drives the clients.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
BUCKET = "skinscan-bench"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def function_source() -> str:
    """``functions/main.py`` wherever the functions package is installed."""
    return importlib.util.find_spec("functions.main").origin


# --------------------------------------------------------------------------- statistics

def percentile(values: Iterable[float], q: float) -> float:
    values = list(values)
    return float(np.percentile(values, q)) if values else float("nan")


def summary_ms(seconds: list[float]) -> dict[str, float]:
    return {"n": len(seconds), "p50_ms": 1000 * percentile(seconds, 50), "p95_ms": 1000 * percentile(seconds, 95)}


# --------------------------------------------------------------------------- processes and /proc

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on port {port} after {timeout:.0f} s")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, e.g. the gunicorn worker under its arbiter."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return found


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """VmHWM (peak resident set) of one process, MB (10^6 bytes); ``field="VmRSS"``: the current one."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return float("nan")


def reset_peak_rss(pid: int) -> None:
    """Start ``pid``'s VmHWM again from its current RSS (Linux 4.0+), so the next peak is one request's."""
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")


def tree_peak_rss(pid: int) -> dict[int, float]:
    """Peak RSS of a process and all its descendants, MB per pid."""
    found = {current: peak_rss_mb(current) for current in [pid, *descendants(pid)]}
    return {current: rss for current, rss in found.items() if rss == rss}


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment minus anything that would point a child at another model or store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKINSCAN_", "AWS_"))}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(extra)
    return env


def _busy_seconds() -> float:
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a live process, with that of the children it has already reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``: the function's arbiter and workers, the Keras baseline."""
    found, pending = [], children(pid)
    while pending:
        current = pending.pop()
        found.append(current)
        pending += children(current)
    return found


class OtherLoad:
    """Cores used by *other* processes while a block ran (machine busy time minus ours and our helpers').

    A figure well above 0 means the block was measured on a shared machine; the paired
    design (fast path and baseline in turns) keeps the ratios fair even then.
    """

    def __init__(self, helpers: Iterable[int] = ()) -> None:
        self.helpers = helpers
        self.cores = 0.0

    def our_cpu_seconds(self) -> float:
        # A running child's time is not in os.times() until it is reaped, so live ones are read from /proc.
        t = os.times()
        live = set(descendants(os.getpid()))
        for helper in self.helpers:
            live |= {helper, *descendants(helper)}
        return t.user + t.system + t.children_user + t.children_system + sum(map(cpu_seconds, live))

    def __enter__(self) -> "OtherLoad":
        self.wall, self.busy, self.ours = time.monotonic(), _busy_seconds(), self.our_cpu_seconds()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.monotonic() - self.wall
        others = (_busy_seconds() - self.busy) - (self.our_cpu_seconds() - self.ours)
        self.cores = max(0.0, others / wall) if wall > 0 else 0.0


# --------------------------------------------------------------------------- input photos

def synthetic_jpeg(size: tuple[int, int] = (640, 480), seed: int = 0) -> bytes:
    """The tests' synthetic skin photo (``tests/photos.py``, loaded from its file) as a JPEG."""
    spec = importlib.util.spec_from_file_location("skinscan_test_photos", BENCH.parent / "tests" / "photos.py")
    photos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(photos)
    return photos.photo_bytes(size=size, seed=seed, quality=90)


def load_photos(manifest: dict[str, Any], data: Path | None, count: int, seed: int = 0) -> tuple[list[bytes], str]:
    """``count`` JPEGs that pass the manifest's quality rules, so every request reaches the network:
    skin9 photos when the folder is there, else generated ones."""
    import random

    from skinscan import quality
    from skinscan.imaging import decode

    rules = {**quality.DEFAULT_QUALITY, **manifest.get("quality", {})}
    paths = sorted(Path(data).glob("*/*.jp*g")) if data and Path(data).is_dir() else []
    random.Random(seed).shuffle(paths)
    photos = []
    for path in paths:
        if len(photos) >= count:
            break
        body = path.read_bytes()
        if quality.problem(quality.measure(decode(body)), rules) is None:
            photos.append(body)
    if photos:
        return photos, "skin9 photos"
    return [synthetic_jpeg(seed=seed + i) for i in range(count)], "generated 640x480 JPEGs"


def write_photo_dir(photos: list[bytes], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, body in enumerate(photos):
        (folder / f"{i:04d}.jpg").write_bytes(body)
    return folder


# --------------------------------------------------------------------------- S3 (moto)

class MotoS3:
    """A real S3 HTTP endpoint on loopback (``python -m moto.server``) to pull the model from."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, **S3_ENV}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "MotoS3":
        self.process = subprocess.Popen([PYTHON, "-m", "moto.server", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
        wait_for_port(self.port, 60, self.process)
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process:
            stop_process(self.process)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_ENV["AWS_DEFAULT_REGION"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def publish(self, model_path: Path, prefix: str) -> str:
        from skinscan.training.publish import publish_model

        return publish_model(model_path, f"s3://{BUCKET}/{prefix}/", client=self.client())


# --------------------------------------------------------------------------- the function over HTTP

def post_image(port: int, body: bytes, timeout: float = 120.0, content_type: str = "image/jpeg") -> tuple[int, bytes]:
    """One classify request: a raw image body on a fresh connection (as a browser or bot would)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass
class FunctionServer:
    """``functions-framework --source functions/main.py --target classify`` as a fresh process
    (gunicorn, as Cloud Functions serves it); the model loads on the first request."""

    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    spawned_at: float = 0.0

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        script = Path(PYTHON).with_name("functions-framework")
        launcher = [str(script)] if script.exists() else [PYTHON, "-m", "functions_framework"]
        with open(self.log_dir / f"function-{self.port}.log", "wb") as log:
            self.spawned_at = time.perf_counter()
            self.process = subprocess.Popen(
                launcher + ["--source", function_source(), "--target", "classify", "--host", "127.0.0.1",
                            "--port", str(self.port)], env=clean_env(**self.env), stdout=log, stderr=subprocess.STDOUT)

    def first_answer(self, body: bytes, timeout: float = 180.0) -> dict[str, Any]:
        """Seconds from spawn to the first successful classification, and the backend that answered."""
        assert self.process is not None
        while time.perf_counter() < self.spawned_at + timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the function exited ({self.process.returncode}); see {self.log_dir}")
            try:
                status, reply = post_image(self.port, body, timeout=timeout)
            except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
                time.sleep(0.005)
                continue
            result = json.loads(reply) if status == 200 else {}
            if result.get("status") not in ("ok", "not_recognised"):
                raise RuntimeError(f"first request answered {status}: {reply[:300]!r}")
            return {"seconds": time.perf_counter() - self.spawned_at, "backend": result["model"]["backend"]}
        raise TimeoutError(f"no answer within {timeout} s")

    def peak_rss_mb(self) -> float:
        """The largest process of the tree: gunicorn's worker (the arbiter never loads the model)."""
        assert self.process is not None
        return max(tree_peak_rss(self.process.pid).values(), default=float("nan"))

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)


def sequential_seconds(port: int, photos: list[bytes], requests: int, offset: int = 0) -> tuple[list[float], int]:
    """Seconds per successful request, one after another; and the number of failures."""
    seconds, failures = [], 0
    for i in range(requests):
        start = time.perf_counter()
        status, _ = post_image(port, photos[(offset + i) % len(photos)])
        if status == 200:
            seconds.append(time.perf_counter() - start)
        else:
            failures += 1
    return seconds, failures


def concurrent_throughput(port: int, photos: list[bytes], clients: int, duration: float) -> dict[str, Any]:
    """``clients`` threads posting back to back for ``duration`` s; images/s over the whole window."""
    counts, failures, finished = [0] * clients, [0] * clients, [0.0] * clients
    start = time.perf_counter()

    def client(index: int) -> None:
        k = index
        while time.perf_counter() < start + duration:
            try:
                status, _ = post_image(port, photos[k % len(photos)])
            except OSError:
                status = 0
            counts[index] += status == 200
            failures[index] += status != 200
            k += clients
        finished[index] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(finished) - start
    return {"clients": clients, "images": sum(counts), "failures": sum(failures),
            "images_per_s": sum(counts) / elapsed if elapsed else float("nan")}


# --------------------------------------------------------------------------- the plain-Keras baseline

class KerasBaseline:
    """``child_keras.py``: import Keras, load the .h5, predict. ``start()`` answers its cold start;
    unless ``cold_only`` it then stays up and takes commands, so its warm figures are measured in
    turns with the fast path's."""

    def __init__(self, model: Path, photo_dir: Path, log_dir: Path, cold_only: bool = False) -> None:
        self.config = {"model": str(model), "photos": str(photo_dir), "cold_only": cold_only}
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None

    def start(self) -> dict[str, Any]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"keras-{time.time_ns()}.log", "wb") as log:
            spawned = time.time()
            self.process = subprocess.Popen([PYTHON, str(BENCH / "child_keras.py"), json.dumps(self.config)],
                                            env=clean_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=log, text=True)
        first = self._read()
        first["cold_seconds"] = first["first_prediction_epoch"] - spawned
        if self.config["cold_only"]:
            self.process.wait(timeout=60)
        else:
            assert self._read().get("ready")  # its own warm-up must not overlap anything we measure
        return first

    def _read(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Keras baseline process exited ({self.process.poll()}); see {self.log_dir}")
        return json.loads(line)

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            try:
                self.ask(cmd="quit")
                self.process.wait(timeout=30)
            except (OSError, RuntimeError, subprocess.TimeoutExpired, ValueError):
                stop_process(self.process)
