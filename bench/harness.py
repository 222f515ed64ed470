"""The machinery of the skinscan benchmark: servers, clients, clocks and sizes.

Everything here measures; nothing decides PASS/MISS (that is :mod:`run`).
Child processes (the plain-Keras baseline, the int8 check, the cold-start
probe) are separate scripts so that TensorFlow never loads into the process
that drives the clients.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
FUNCTION_SOURCE = REPO / "functions" / "main.py"
PYTHON = sys.executable
BUCKET = "skinscan-bench"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


# --------------------------------------------------------------------------- statistics

def percentile(values: Iterable[float], q: float) -> float:
    values = list(values)
    return float(np.percentile(values, q)) if values else float("nan")


def summary_ms(seconds: list[float]) -> dict[str, float]:
    return {"n": len(seconds), "p50_ms": 1000 * percentile(seconds, 50), "p95_ms": 1000 * percentile(seconds, 95),
            "mean_ms": 1000 * float(np.mean(seconds)) if seconds else float("nan")}


# --------------------------------------------------------------------------- processes

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
    """Direct children of ``pid`` (Linux /proc), e.g. the gunicorn worker under its arbiter."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return found


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS in kB from /proc/PID/status; psutil is not a dependency."""
    figures = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    figures[key] = int(value.split()[0])
    except OSError:
        pass
    return figures


def tree_peak_rss(pid: int) -> dict[str, Any]:
    """Peak RSS of a process and its descendants, MB (10^6 bytes)."""
    processes = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        status = proc_status(current)
        if status:
            processes[current] = status.get("VmHWM", 0) * 1024 / 1e6
        pending += children(current)
    return {"per_process_mb": processes, "max_mb": max(processes.values(), default=float("nan")),
            "sum_mb": sum(processes.values())}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child: ours, minus anything that would point it at another model or store."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SKINSCAN_", "AWS_")) or k == "SKINSCAN_DATA"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(extra)
    return env


# --------------------------------------------------------------------------- input photos

def synthetic_jpeg(size: tuple[int, int] = (640, 480), seed: int = 0, quality: int = 90) -> bytes:
    """A textured, skin-toned photo with a dark spot (as the tests make)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([200 + 30 * np.sin(xx / 7), 150 + 25 * np.cos(yy / 5), 120 + 20 * np.sin((xx + yy) / 9)], -1)
    spot = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) < (min(w, h) / 4) ** 2
    base[spot] *= 0.45
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def load_photos(manifest: dict[str, Any], data: Path | None, split_file: Path | None, count: int,
                seed: int = 0) -> tuple[list[bytes], str]:
    """``count`` JPEGs that pass the manifest's quality rules, so every request reaches the network.

    Prefers the held-out (test split) photos, then any skin9 photo, then generated ones.
    """
    import random

    from skinscan import quality
    from skinscan.imaging import decode

    rules = {**quality.DEFAULT_QUALITY, **manifest.get("quality", {})}
    paths: list[Path] = []
    source = "generated 640x480 JPEGs (no skin9 photos found)"
    if data and Path(data).is_dir():
        if split_file and Path(split_file).is_file():
            from skinscan.training.data import load_split

            paths = [Path(data) / s.path for s in load_split(split_file)["test"]]
            source = f"skin9 held-out test split ({Path(split_file).name})"
        else:
            paths = sorted(Path(data).glob("*/*.jp*g"))
            source = "skin9 photos (no split file: any photo)"
        random.Random(seed).shuffle(paths)
    photos: list[bytes] = []
    for path in paths:
        if len(photos) >= count:
            break
        body = path.read_bytes()
        image = decode(body)
        if quality.problem(quality.measure(image), rules) is None:
            photos.append(body)
    if not photos:
        photos = [synthetic_jpeg(seed=seed + i) for i in range(count)]
        source = "generated 640x480 JPEGs"
    return photos, source


# --------------------------------------------------------------------------- S3 (moto)

class MotoS3:
    """A real S3 HTTP endpoint on loopback: ``python -m moto.server``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
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

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, **S3_ENV}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=S3_ENV["AWS_DEFAULT_REGION"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def publish(self, model_path: Path, prefix: str) -> str:
        from skinscan.training.publish import publish_model

        return publish_model(model_path, f"s3://{BUCKET}/{prefix}/", client=self.client())


def keras_only_copy(model_path: Path, folder: Path) -> Path:
    """A copy of the model whose manifest lists no fast form: serving then runs the .h5 through Keras."""
    from skinscan.manifest import manifest_path_for, read_manifest, write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / model_path.name
    shutil.copy(model_path, target)
    manifest = read_manifest(manifest_path_for(model_path))
    manifest.pop("fast_path", None)
    write_manifest(manifest, manifest_path_for(target))
    return target


# --------------------------------------------------------------------------- the function over HTTP

def post_image(port: int, body: bytes, timeout: float = 120.0) -> tuple[int, bytes]:
    """One classify request: a raw ``image/jpeg`` body on a fresh connection (as a browser or bot would)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/", body=body, headers={"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def answered(status: int, body: bytes) -> dict[str, Any] | None:
    """The result if this was a successful classification (the network ran), else None."""
    if status != 200:
        return None
    try:
        result = json.loads(body)
    except ValueError:
        return None
    return result if result.get("status") in ("ok", "not_recognised") else None


@dataclass
class FunctionServer:
    """``functions-framework --source functions/main.py --target classify`` as a fresh process.

    That command serves through gunicorn (1 worker, 4 threads per core), as
    Cloud Functions does; the model loads in the worker on the first request.
    """

    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    spawned_at: float = 0.0
    launcher: list[str] | None = None  # e.g. [python, bench/pool_server.py] for an experiment

    def command(self) -> list[str]:
        script = Path(PYTHON).with_name("functions-framework")
        launcher = self.launcher or ([str(script)] if script.exists() else [PYTHON, "-m", "functions_framework"])
        return launcher + ["--source", str(FUNCTION_SOURCE), "--target", "classify",
                           "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"function-{self.port}.log", "wb")
        self.spawned_at = time.perf_counter()
        self.process = subprocess.Popen(self.command(), cwd=REPO, env=clean_env(**self.env),
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def first_answer(self, body: bytes, timeout: float = 180.0) -> dict[str, Any]:
        """Poll until the port accepts, then time the first successful classification from spawn."""
        assert self.process is not None
        deadline = self.spawned_at + timeout
        listening = None
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the function exited ({self.process.returncode}); see {self.log_dir}")
            try:
                status, reply = post_image(self.port, body, timeout=timeout)
            except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
                time.sleep(0.005)
                continue
            if listening is None:
                listening = time.perf_counter()
            result = answered(status, reply)
            if result is None:
                raise RuntimeError(f"first request answered {status}: {reply[:300]!r}")
            done = time.perf_counter()
            return {"seconds": done - self.spawned_at, "result": result,
                    "backend": result.get("model", {}).get("backend")}
        raise TimeoutError(f"no answer within {timeout} s")

    def peak_rss(self) -> dict[str, Any]:
        assert self.process is not None
        return tree_peak_rss(self.process.pid)

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)


def sequential_seconds(port: int, photos: list[bytes], requests: int, offset: int = 0) -> tuple[list[float], int]:
    """Seconds per successful request, one after another; and the number of failures."""
    seconds, failures = [], 0
    for i in range(requests):
        start = time.perf_counter()
        status, _ = post_image(port, photos[(offset + i) % len(photos)])
        elapsed = time.perf_counter() - start
        if status == 200:
            seconds.append(elapsed)
        else:
            failures += 1
    return seconds, failures


def sequential_latency(port: int, photos: list[bytes], requests: int, warmup: int = 3) -> dict[str, Any]:
    for i in range(warmup):
        post_image(port, photos[i % len(photos)])
    seconds, failures = sequential_seconds(port, photos, requests)
    return {**summary_ms(seconds), "failures": failures}


def concurrent_throughput(port: int, photos: list[bytes], clients: int, duration: float) -> dict[str, Any]:
    """``clients`` threads posting back to back for ``duration`` s; images/s over the whole window."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    finished = [0.0] * clients
    start = time.perf_counter()
    stop_at = start + duration

    def client(index: int) -> None:
        k = index
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            try:
                status, _ = post_image(port, photos[k % len(photos)])
            except OSError:
                status = 0
            if status == 200:
                latencies[index].append(time.perf_counter() - began)
            else:
                failures[index] += 1
            k += clients
        finished[index] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(finished) - start
    done = [x for per in latencies for x in per]
    return {"clients": clients, "seconds": elapsed, "images": len(done), "failures": sum(failures),
            "images_per_s": len(done) / elapsed if elapsed else float("nan"),
            "latency_p50_ms": 1000 * percentile(done, 50), "latency_p95_ms": 1000 * percentile(done, 95)}


# --------------------------------------------------------------------------- child scripts

def run_child(script: str, config: dict[str, Any], env: dict[str, str] | None = None,
              timeout: float = 900.0, python_flags: list[str] | None = None) -> tuple[dict[str, Any], float, str]:
    """Run ``bench/<script>`` with a JSON config; return (its JSON answer, spawn epoch, stderr)."""
    spawned = time.time()
    process = subprocess.run([PYTHON, *(python_flags or []), str(BENCH / script), json.dumps(config)],
                             cwd=REPO, env=clean_env(**(env or {})), capture_output=True, text=True,
                             timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"{script} failed ({process.returncode}):\n{process.stderr[-3000:]}")
    answer = json.loads(process.stdout.strip().splitlines()[-1])
    return answer, spawned, process.stderr


class KerasBaseline:
    """The plain-Keras baseline process (bench/child_keras.py): import Keras, load the .h5, predict.

    ``start()`` returns its cold start (spawn to first prediction). Unless
    ``cold_only``, it then stays up and takes commands, so its warm figures
    can be measured in turns with the fast path's.
    """

    def __init__(self, model: Path, photo_dir: Path, log_dir: Path, cold_only: bool = False) -> None:
        self.config = {"model": str(model), "photos": str(photo_dir), "cold_only": cold_only}
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None

    def start(self) -> dict[str, Any]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"keras-{time.time_ns()}.log", "wb")
        spawned = time.time()
        self.process = subprocess.Popen([PYTHON, str(BENCH / "child_keras.py"), json.dumps(self.config)], cwd=REPO,
                                        env=clean_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=log, text=True)
        log.close()
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

    def warm(self, n: int, offset: int = 0) -> list[float]:
        return self.ask(cmd="warm", n=n, offset=offset)["seconds"]

    def throughput(self, clients: int, duration: float) -> dict[str, Any]:
        return self.ask(cmd="throughput", clients=clients, duration=duration)

    def peak_rss_mb(self) -> float:
        return self.ask(cmd="rss")["peak_rss_mb"]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            try:
                self.ask(cmd="quit")
                self.process.wait(timeout=30)
            except (OSError, RuntimeError, subprocess.TimeoutExpired, ValueError):
                stop_process(self.process)


def top_imports(stderr: str, top: int = 10) -> list[dict[str, Any]]:
    """Aggregate ``python -X importtime`` output by top-level package (cumulative ms)."""
    totals: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name_field = parts[2]
        if len(name_field) - len(name_field.lstrip(" ")) != 1:
            continue  # nested import: already inside its parent's cumulative figure
        package = name_field.strip().split(".")[0]
        totals[package] = totals.get(package, 0.0) + int(parts[1]) / 1000
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    return [{"package": name, "ms": round(ms, 1)} for name, ms in ranked[:top]]


# --------------------------------------------------------------------------- install size

def tree_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def biggest_entries(folder: Path, top: int = 8) -> list[dict[str, Any]]:
    sizes = []
    for entry in folder.iterdir():
        if entry.name.endswith((".dist-info", ".pth")) or entry.name in ("__pycache__", "pip", "setuptools",
                                                                           "_distutils_hack", "pkg_resources"):
            continue
        size = tree_bytes(entry) if entry.is_dir() else entry.stat().st_size
        sizes.append((size, entry.name))
    return [{"name": name, "mb": round(size / 1e6, 1)} for size, name in sorted(sizes, reverse=True)[:top]]


def fresh_serve_install(workdir: Path, extra: str = "serve", timeout: float = 900.0) -> dict[str, Any]:
    """``pip install '.[serve]'`` into a brand-new venv; site-packages size minus the empty venv's."""
    source = workdir / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "node_modules")
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("shared", "functions", "web", "bot"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    venv = workdir / "venv"
    started = time.perf_counter()
    subprocess.run([PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=timeout)
    empty = tree_bytes(site_packages(venv))
    process = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", f"{source}[{extra}]"],
                             capture_output=True, text=True, timeout=timeout, env=clean_env())
    if process.returncode != 0:
        raise RuntimeError(f"pip install failed:\n{process.stderr[-2000:]}")
    packages = site_packages(venv)
    installed = tree_bytes(packages)
    heavy = [name for name in ("tensorflow", "keras", "torch") if (packages / name).exists()]
    return {"extra": extra, "site_packages_mb": installed / 1e6, "empty_venv_mb": empty / 1e6,
            "dependencies_mb": (installed - empty) / 1e6, "biggest": biggest_entries(packages),
            "heavy_frameworks_present": heavy, "seconds": time.perf_counter() - started}


def installed_closure_mb(requirements: list[str]) -> dict[str, Any]:
    """Size of a requirement set and everything it pulls in, as installed in *this* environment.

    Summed from each distribution's RECORD; used for the plain-Keras serving
    baseline (TensorFlow is too big to download into a throwaway venv each run).
    """
    import importlib.metadata as metadata

    from packaging.requirements import Requirement

    seen: dict[str, int] = {}
    missing: list[str] = []
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = requirement.name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(requirement.name)
            continue
        size = 0
        for file in dist.files or []:
            try:
                size += os.lstat(file.locate()).st_size
            except OSError:
                pass
        seen[key] = size
        pending += [Requirement(r) for r in (dist.requires or [])]
    ranked = sorted(seen.items(), key=lambda item: -item[1])
    return {"mb": sum(seen.values()) / 1e6, "distributions": len(seen), "missing": missing,
            "biggest": [{"name": n, "mb": round(s / 1e6, 1)} for n, s in ranked[:8]]}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    import platform

    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "load_average_at_start": os.getloadavg()}


def write_photo_dir(photos: list[bytes], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, body in enumerate(photos):
        (folder / f"{i:04d}.jpg").write_bytes(body)
    return folder


def temp_dir(prefix: str = "skinscan-bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# --------------------------------------------------------------------------- other load on the machine

def _busy_seconds() -> float:
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class OtherLoad:
    """How many cores *other* processes used while a section ran.

    Machine busy time (/proc/stat) minus this process and its waited-for
    children (os.times) minus long-lived helpers still running (moto). A
    figure well above 0 means the section was measured on a shared machine.
    """

    def __init__(self, helpers: list[int] | None = None) -> None:
        self.helpers = helpers or []

    def _ours(self) -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system + sum(
            _process_cpu_seconds(p) for p in self.helpers)

    def __enter__(self) -> "OtherLoad":
        self.wall, self.busy, self.ours = time.monotonic(), _busy_seconds(), self._ours()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.monotonic() - self.wall
        others = (_busy_seconds() - self.busy) - (self._ours() - self.ours)
        self.cores = max(0.0, others / wall) if wall > 0 else 0.0
