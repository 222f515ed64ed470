"""skinscan training benchmark: the PyTorch trainer's step against a Keras-on-TensorFlow step (issue 18, item 6).

    python bench/train.py                         # ~3 min on 2 idle cores
    python bench/train.py --steps 2 --warmup 1    # a smoke run

The same network (the seed's DenseNet121, 7,046,729 parameters), input size (128 px), batch (32)
and optimizer (AdamW, the trainer's learning rate and weight decay) on the same synthetic photos:

* PyTorch: the trainer's own step, built from :mod:`skinscan.training.torch_train`'s pieces -
  ``to_tensor`` (uint8 photos normalised into channels_last), bf16 autocast where
  ``bf16_supported`` finds it (else float32, and the report says so), ``training_loss`` (label
  smoothing and the two-view agreement term), backward, AdamW;
* Keras on TensorFlow: ``build_densenet121`` compiled with AdamW (Keras' defaults, as the Keras
  trainer had them), ``train_on_batch``.

Augmentation is left out of both: it is the same numpy code whichever framework trains. Each side
runs in its own child process, one after the other: torchvision must load before TensorFlow in one
process, and each side gets the cores and the memory to itself. Warm-up steps (graph tracing,
oneDNN kernel choice) are not timed. The goal: the PyTorch step at least twice as fast.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
GOAL_RATIO = 2.0  # PyTorch images/s over Keras-on-TensorFlow images/s (issue 18)
# Both sides' optimizer and head: the PyTorch trainer's defaults (TorchTrainConfig; a test holds them equal).
LEARNING_RATE = 4e-4
WEIGHT_DECAY = 0.01
DROPOUT = 0.3
SIDES = ("pytorch", "keras")
CONTENDED_CORES = 0.25


# ---------------------------------------------------------------- the children: one side each

def synthetic_batch(size: int, batch: int, seed: int = 0) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 9, batch)
    return pixels, labels


def peak_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def timed(step, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return seconds


def pytorch_side(size: int, batch: int, warmup: int, steps: int) -> dict[str, Any]:
    import torch

    from skinscan.training.torch_networks import student
    from skinscan.training.torch_train import (TorchTrainConfig, autocast, bf16_supported, student_statistics,
                                               to_tensor, training_loss)

    config = TorchTrainConfig(data=Path("."), out=Path("."), split_file=Path("."))  # the loss's settings
    device = torch.device("cpu")
    bf16 = bf16_supported(device)
    network = student(DROPOUT).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    normalisation = student_statistics(size)
    pixels, labels = synthetic_batch(size, batch)
    target = torch.from_numpy(labels)
    pairs = min(config.pairs_per_batch, batch // 2)

    def step() -> None:
        with autocast(device, bf16):
            logits = network(to_tensor(pixels, normalisation, device))
        loss = training_loss(logits, target, None, config, pairs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = timed(step, warmup, steps)
    return {"precision": "bf16 autocast" if bf16 else "float32 (no bf16 support found)",
            "framework": f"PyTorch {torch.__version__}, channels_last", "threads": torch.get_num_threads(),
            "seconds": seconds}


def keras_side(size: int, batch: int, warmup: int, steps: int) -> dict[str, Any]:
    import keras
    import numpy as np

    from skinscan.imaging import Preprocessing
    from skinscan.training.architecture import build_densenet121

    model = build_densenet121(size, dropout=DROPOUT)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY),
                  loss="sparse_categorical_crossentropy")
    pixels, labels = synthetic_batch(size, batch)
    inputs = Preprocessing(size=size).normalize(pixels.astype(np.float32)).astype(np.float32)

    def step() -> None:
        model.train_on_batch(inputs, labels)

    seconds = timed(step, warmup, steps)
    return {"precision": str(keras.mixed_precision.global_policy().name),
            "framework": f"Keras {keras.__version__} on {keras.backend.backend()}", "seconds": seconds}


def child(side: str, size: int, batch: int, warmup: int, steps: int) -> dict[str, Any]:
    """One side's figures; printed by the child as its last line of output."""
    result = {"pytorch": pytorch_side, "keras": keras_side}[side](size, batch, warmup, steps)
    seconds = result.pop("seconds")
    return {"side": side, "size": size, "batch": batch, "warmup_steps": warmup, "timed_steps": len(seconds),
            **result, "step_median_s": statistics.median(seconds),
            "images_per_s": batch * len(seconds) / sum(seconds), "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------- the parent: both sides, the ratio, the goal

def parse_child_output(text: str) -> dict[str, Any]:
    """The child's figures: its last line that is a JSON object with ``images_per_s`` (logs may precede it)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                figures = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(figures, dict) and "images_per_s" in figures:
                return figures
    raise ValueError("the child printed no figures")


def compare(pytorch: dict[str, Any], keras: dict[str, Any], goal: float = GOAL_RATIO) -> dict[str, Any]:
    ratio = pytorch["images_per_s"] / keras["images_per_s"]
    return {"ratio": ratio, "goal": goal, "verdict": "PASS" if ratio >= goal else "FAIL"}


def run_side(side: str, args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH_DIR))
    import harness as h

    command = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--size", str(args.size),
               "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    with h.OtherLoad() as load:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                              env=h.clean_env(KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1"))
    if done.returncode != 0:
        raise SystemExit(f"the {side} side failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return {**parse_child_output(done.stdout), "other_load_cores": load.cores}


def report(pytorch: dict[str, Any], keras: dict[str, Any], verdict: dict[str, Any]) -> str:
    def line(r: dict[str, Any]) -> str:
        return (f"  {r['side']:<8} {r['images_per_s']:7.1f} images/s  (median step {r['step_median_s']:.3f} s, "
                f"{r['timed_steps']} timed after {r['warmup_steps']} warm-up; {r['framework']}, {r['precision']}; "
                f"peak RSS {r['peak_rss_mb']:.0f} MB)")

    lines = [f"training step, seed DenseNet121 at {pytorch['size']} px, batch {pytorch['batch']}, AdamW, "
             f"synthetic photos, {os.cpu_count()} CPUs:", line(pytorch), line(keras),
             f"  PyTorch / Keras on TensorFlow: {verdict['ratio']:.2f}x (goal >= {verdict['goal']:.1f}x): "
             f"{verdict['verdict']}"]
    busy = {r["side"]: r["other_load_cores"] for r in (pytorch, keras)}
    lines.append("  other processes' CPU use (cores): " + ", ".join(f"{k} {v:.2f}" for k, v in busy.items()))
    if any(v > CONTENDED_CORES for v in busy.values()):
        lines.append("  WARNING: the machine was shared with other work while this ran: the figures (and the "
                     "ratio, the sides ran one after the other) are not to be trusted; run it on idle cores.")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per side")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (tracing, kernel choice)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per side")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 2:
        parser.error("--steps must be at least 1, --warmup at least 0, --batch at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        print(json.dumps(child(args.child, args.size, args.batch, args.warmup, args.steps)), flush=True)
        return 0
    print(f"training benchmark: {args.warmup} + {args.steps} steps per side, one child process each", flush=True)
    results = {side: run_side(side, args) for side in SIDES}
    verdict = compare(results["pytorch"], results["keras"])
    print(report(results["pytorch"], results["keras"], verdict))
    if args.json:
        record = {"date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **results, **verdict}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
