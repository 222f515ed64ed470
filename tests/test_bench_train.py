"""The training benchmark (``bench/train.py``): how it reads its children, the ratio and the verdict.

No speed is asserted: speed is what ``make bench-train`` prints on idle cores. The slow test runs
both children for real with a tiny network input and step count.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "train.py")
bench_train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_train)


def figures(side: str, images_per_s: float, other_load: float = 0.0) -> dict:
    return {"side": side, "size": 128, "batch": 32, "warmup_steps": 3, "timed_steps": 20,
            "framework": side, "precision": "float32", "step_median_s": 32 / images_per_s,
            "images_per_s": images_per_s, "peak_rss_mb": 900.0, "other_load_cores": other_load}


def test_the_childs_figures_are_its_last_json_line_whatever_it_logged_before():
    logged = "\n".join(["oneDNN custom operations are on", '{"not": "figures"}', json.dumps(figures("keras", 15.5)),
                        "", "{broken json"])
    assert bench_train.parse_child_output(logged)["images_per_s"] == 15.5
    with pytest.raises(ValueError, match="no figures"):
        bench_train.parse_child_output("Traceback (most recent call last):\n  ...\nMemoryError")


@pytest.mark.parametrize(("pytorch", "keras", "verdict"), [(31.0, 15.5, "PASS"), (30.9, 15.5, "FAIL"),
                                                           (38.5, 15.5, "PASS")])
def test_the_goal_is_twice_the_keras_images_per_second(pytorch, keras, verdict):
    result = bench_train.compare(figures("pytorch", pytorch), figures("keras", keras))
    assert result["ratio"] == pytest.approx(pytorch / keras) and result["verdict"] == verdict
    assert result["goal"] == bench_train.GOAL_RATIO == 2.0


def test_the_report_prints_both_sides_the_ratio_and_warns_when_the_machine_was_shared():
    quiet = bench_train.report(figures("pytorch", 38.5), figures("keras", 15.5),
                               bench_train.compare(figures("pytorch", 38.5), figures("keras", 15.5)))
    assert "38.5 images/s" in quiet and "15.5 images/s" in quiet and "2.48x (goal >= 2.0x): PASS" in quiet
    assert "WARNING" not in quiet
    busy = bench_train.report(figures("pytorch", 10.0, 1.5), figures("keras", 15.5),
                              bench_train.compare(figures("pytorch", 10.0), figures("keras", 15.5)))
    assert "FAIL" in busy and "WARNING: the machine was shared" in busy


def test_both_sides_train_with_the_pytorch_trainers_own_optimizer_settings():
    pytest.importorskip("torch")
    from pathlib import Path

    from skinscan.training.torch_train import TorchTrainConfig

    config = TorchTrainConfig(data=Path("."), out=Path("."), split_file=Path("."))
    assert (bench_train.LEARNING_RATE, bench_train.WEIGHT_DECAY, bench_train.DROPOUT) == (
        config.learning_rate, config.weight_decay, config.dropout)
    assert (config.image_size, config.batch_size) == (128, 32)  # what the benchmark measures by default
    defaults = bench_train.parse_args([])
    assert (defaults.size, defaults.batch) == (config.image_size, config.batch_size)


@pytest.mark.slow
def test_a_tiny_run_measures_both_sides_in_their_own_processes(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "train-bench.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "train.py"), "--size", "32", "--batch", "4",
                           "--steps", "1", "--warmup", "1", "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PyTorch / Keras on TensorFlow:" in done.stdout and ("PASS" in done.stdout or "FAIL" in done.stdout)
    record = json.loads(out.read_text())
    assert record["pytorch"]["images_per_s"] > 0 and record["keras"]["images_per_s"] > 0
    assert "tensorflow" in record["keras"]["framework"] and "PyTorch" in record["pytorch"]["framework"]
    assert record["pytorch"]["precision"] in ("bf16 autocast", "float32 (no bf16 support found)")
    assert record["ratio"] == pytest.approx(record["pytorch"]["images_per_s"] / record["keras"]["images_per_s"])
