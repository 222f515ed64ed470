"""The benchmark's machinery, with tiny counts against a 32 px model.

No speed goal is asserted here: speed is what ``bench/run.py`` prints. These
tests check that every paired figure is measured, is of the path it claims
(LiteRT over HTTP, model pulled from S3, against plain Keras), and lands in the table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from skinscan.manifest import manifest_path_for, read_manifest, write_manifest

sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
import run as bench  # noqa: E402

pytest.importorskip("ai_edge_litert", reason="the LiteRT runtime (skinscan[serve]) is not installed")


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    """The seed's small CNN at 32 px with its verified fast form: the machinery does not care which
    network it times, and this one builds and converts in seconds (DenseNet121 takes ~30 s)."""
    import keras

    from skinscan.imaging import Preprocessing
    from skinscan.manifest import new_manifest
    from skinscan.training.architecture import build_cnn
    from skinscan.training.fastpath import derive, sample_batches

    keras.utils.set_random_seed(3)
    model = tmp_path_factory.mktemp("bench-model") / "bench-tiny.h5"
    build_cnn(32).save(model, include_optimizer=False)
    manifest = new_manifest(model, Preprocessing(32).to_dict(), "bench-test-tiny")
    manifest["quality"]["min_side"] = 16
    write_manifest(manifest, manifest_path_for(model))
    assert derive(model, sample_batches(Preprocessing(32), None, None, limit=4))["verified"]["accepted"]
    return model


@pytest.mark.slow
def test_a_tiny_paired_run_measures_every_figure_and_prints_the_table(fast_model, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = bench.main(["--model", str(fast_model), "--data", str(tmp_path / "no-photos"), "--photos", "3",
                       "--cold-runs", "1", "--requests", "3", "--clients", "2", "--duration", "0.5",
                       "--json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    printed = capsys.readouterr().out

    assert results["model"]["input_size"] == 32  # read from the manifest
    assert results["inputs"]["source"].startswith("generated")
    fast, base = results["fast"], results["baseline"]
    assert fast["backend"] == "litert-float32" and fast["uri"].startswith("s3://")
    assert 0 < fast["cold_median_s"] < 120 and 0 < base["import_s"] < base["cold_median_s"]
    assert fast["warm"]["n"] == 3 and fast["warm"]["failures"] == 0 and base["warm"]["n"] == 3
    assert fast["throughput"][0]["images"] > 0 and fast["throughput"][0]["failures"] == 0
    assert base["throughput"][0]["images"] > 0
    assert fast["peak_rss_mb"] > 20 and base["peak_rss_mb"] > 100
    assert set(results["goals"]) == {"warm", "cold", "throughput", "rss"}
    assert all(v in ("PASS", "MISS") for v in results["goals"].values())
    for row in ("cold start to first answer", "warm latency p50", "throughput, 2 clients", "peak RSS", "fast / Keras"):
        assert row in printed


@pytest.mark.slow
def test_a_model_without_a_fast_form_is_refused_not_silently_measured_as_keras(fast_model, tmp_path):
    plain = tmp_path / fast_model.name
    shutil.copy(fast_model, plain)
    manifest = read_manifest(manifest_path_for(fast_model))
    manifest.pop("fast_path")
    write_manifest(manifest, manifest_path_for(plain))
    with pytest.raises(SystemExit, match="fast form"):
        bench.prepare_model(bench.parse_args(["--model", str(plain)]))


def test_peak_rss_reads_proc_for_the_whole_process_tree():
    mine = harness.tree_peak_rss(os.getpid())
    assert mine[os.getpid()] > 10
    assert harness.summary_ms([0.01, 0.02, 0.03])["p50_ms"] == pytest.approx(20.0)


def test_the_default_model_is_the_shipped_one():
    from skinscan.store import SHIPPED_MODEL

    assert bench.parse_args([]).model == SHIPPED_MODEL


def test_a_running_child_counts_as_the_benchmarks_own_cpu_not_as_other_load():
    """The function server and the Keras baseline are live children: their CPU time is ours."""
    probe = harness.OtherLoad()
    before = probe.our_cpu_seconds()
    spin = "import sys, time\nwhile time.process_time() < 0.5: pass\nprint('spun', flush=True)\nsys.stdin.read()"
    with subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as child:
        try:
            assert child.stdout.readline().strip() == "spun"
            assert probe.our_cpu_seconds() - before >= 0.45
        finally:
            child.stdin.close()  # lets the child finish, so leaving the block can wait for it
