"""The benchmark's machinery, with tiny counts against the 32 px fixture model.

No speed goal is asserted here: speed is what ``bench/run.py`` prints. These
tests check that every measurement actually happens, is of the path it
claims (LiteRT over HTTP, model pulled from S3), and lands in the table and
the result files.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import REPO
from skinscan.manifest import manifest_path_for

sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
import run as bench  # noqa: E402

pytest.importorskip("ai_edge_litert", reason="the LiteRT runtime (skinscan[serve]) is not installed")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    """The seed's small CNN at 32 px with its verified fast form: the machinery does not care which
    network it times, and this one builds and converts in seconds (DenseNet121 takes ~30 s)."""
    import keras

    from skinscan.training.architecture import build_cnn
    from skinscan.training.fastpath import derive, sample_batches
    from skinscan.imaging import Preprocessing
    from skinscan.manifest import new_manifest, write_manifest

    keras.utils.set_random_seed(3)
    model = tmp_path_factory.mktemp("bench-model") / "bench-tiny.h5"
    build_cnn(32).save(model, include_optimizer=False)
    manifest = new_manifest(model, Preprocessing(32).to_dict(), "bench-test-tiny")
    manifest["quality"]["min_side"] = 16
    write_manifest(manifest, manifest_path_for(model))
    assert derive(model, sample_batches(model, None, None, limit=4))["verified"]["accepted"]
    return model


def test_a_tiny_run_measures_every_figure_and_writes_the_table(fast_model, tmp_path):
    out = tmp_path / "out"
    code = bench.main(["--model", str(fast_model), "--data", str(tmp_path / "no-photos"), "--photos", "3",
                       "--cold-runs", "1", "--requests", "3", "--clients", "2", "--duration", "0.5",
                       "--threads-duration", "0", "--skip-int8", "--skip-install-size", "--skip-keras-http", "--wait-quiet", "0",
                       "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    table = (out / "results.md").read_text()

    assert results["model"]["label"].startswith("model at ")  # neither the shipped model nor the stand-in
    assert results["inputs"]["source"].startswith("generated")
    fast = results["fast"]
    assert fast["backend"] == "litert-float32" and fast["uri"].startswith("s3://")
    assert 0 < fast["cold_median_s"] < 120
    assert fast["warm"]["n"] == 3 and fast["warm"]["failures"] == 0
    assert fast["throughput"][0]["images"] > 0 and fast["throughput"][0]["failures"] == 0
    assert fast["peak_rss_mb"] > 20 and len(fast["rss"]["per_process_mb"]) == 2  # gunicorn arbiter + worker
    base = results["baseline"]
    assert 0 < base["import_s"] < base["cold_median_s"] and base["warm"]["n"] == 3 and base["peak_rss_mb"] > 100
    phases = results["cold_breakdown"]["phases"]
    assert phases["backend"] == "litert-float32" and phases["s3_pull_s"] > 0
    assert any(item["package"] == "functions_framework" for item in results["cold_breakdown"]["top_imports"])
    assert set(results["hot_path"]["stages_p50_ms"]) >= {"decode", "quality", "network", "total"}

    verdicts = {g["goal"]: g["result"] for g in results["goals"]}
    assert verdicts["serving install (MB)"] == "n/a"
    assert all(v in ("PASS", "MISS", "n/a") for v in verdicts.values())
    for row in ("cold start", "warm latency p50", "throughput, 2 concurrent clients", "peak RSS"):
        assert row in table
    assert "PASS" in table or "MISS" in table


def test_a_model_without_a_fast_form_is_refused_not_silently_measured_as_keras(fast_model, tmp_path):
    plain = harness.keras_only_copy(fast_model, tmp_path / "plain")
    with pytest.raises(SystemExit, match="fast form"):
        bench.prepare_model(bench.parse_args(["--model", str(plain)]), tmp_path)


def test_importtime_parsing_counts_top_level_packages_only():
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        100 |   botocore.utils",
        "import time:       200 |       5000 | boto3",
        "import time:        50 |       3000 | numpy",
        "import time:        10 |         20 |     numpy.core",
        "import time:        70 |       1000 | numpy.linalg",
    ])
    assert harness.top_imports(stderr) == [{"package": "boto3", "ms": 5.0}, {"package": "numpy", "ms": 4.0}]


def test_peak_rss_and_install_closure_helpers():
    mine = harness.tree_peak_rss(os.getpid())
    assert mine["max_mb"] > 10 and os.getpid() in mine["per_process_mb"]
    closure = harness.installed_closure_mb(["numpy"])
    assert closure["mb"] > 1 and closure["distributions"] >= 1 and not closure["missing"]
    assert harness.summary_ms([0.01, 0.02, 0.03])["p50_ms"] == pytest.approx(20.0)
