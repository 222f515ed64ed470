"""The GPU path: packing photos to travel, staging them for train(), bringing the model back in parts.

Fast tests use a tiny generated photo folder (never real photos) and no Keras.
The torch smoke test runs ``infra/gpu/train_on_device.sh --smoke`` with the
Python named by ``SKINSCAN_TORCH_PYTHON`` (a venv with CPU torch and Keras 3)
and is skipped without it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinscan.labels import LABELS
from skinscan.training import data as dataset
from skinscan.training import gpu
from skinscan.training.pack import build_pack, psnr, read_pack

REPO = Path(__file__).resolve().parents[1]
TORCH_PYTHON = os.environ.get("SKINSCAN_TORCH_PYTHON", "")


def make_folder(root: Path, per_class: int = 8, classes: int = 3) -> Path:
    """Generated photos of a few classes; every class has a two-view lesion, one photo is sideways (EXIF)."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(classes):
        label = LABELS[c]
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            w, h = (90, 60) if i % 2 else (64, 80)
            yy, xx = np.mgrid[0:h, 0:w]
            pixels = np.stack([120 + 60 * np.sin(xx / (4 + c)), 100 + 50 * np.cos(yy / 6),
                               90 + 40 * np.sin((xx + yy) / 9)], -1) + rng.normal(0, 8, (h, w, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            name = f"p{c}_{i}.{'png' if i % 3 == 0 else 'jpg'}"
            if i == 5:
                exif = Image.Exif()
                exif[0x0112] = 6  # rotated: serving's decode turns it upright
                image.save(root / label / name, exif=exif.tobytes())
            else:
                image.save(root / label / name)
            lesion = f"L{c}_{i // 2}" if i < 2 else f"L{c}_{i}"  # photos 0 and 1: one lesion, two views
            kind = "clinical" if i == 0 or i % 4 == 3 else "dermoscopic"
            rows.append([label, name, lesion, kind, "generated", str(i % 6) if kind == "clinical" else ""])
    with (root / dataset.METADATA_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(gpu.METADATA_COLUMNS)
        writer.writerows(rows)
    return root


@pytest.fixture()
def folder_and_split(tmp_path):
    root = make_folder(tmp_path / "photos")
    split = dataset.stratified_split(dataset.discover(root), seed=3)
    split_file = tmp_path / "model.split.json"
    dataset.save_split(split, split_file, seed=3)
    return root, split_file


def test_a_pack_holds_train_and_val_as_serving_decodes_them(folder_and_split, tmp_path):
    root, split_file = folder_and_split
    info = build_pack(root, split_file, 32, tmp_path / "pack.npz", quality=95, workers=1)
    split = dataset.load_split(split_file, root)
    expected = split["train"] + split["val"]
    assert info["photos"] == len(expected) and info["parts"] == {"train": len(split["train"]),
                                                                 "val": len(split["val"])}

    pack = read_pack(tmp_path / "pack.npz", workers=2)
    assert pack.size == 32 and pack.pixels.shape == (len(expected), 32, 32, 3) and pack.pixels.dtype == np.uint8
    assert pack.samples == expected  # path, label, lesion id, photo type, skin tone
    assert list(pack.parts) == ["train"] * len(split["train"]) + ["val"] * len(split["val"])
    assert set(pack.sources) == {"generated"}
    for pixels, sample in zip(pack.pixels, pack.samples):
        assert psnr(pixels, dataset.decode_sample(root, sample, 32)) > 30  # EXIF turn included
    assert pack.split["test"] == [s.path for s in split["test"]]  # the held-out photos stay named
    assert info["file_bytes"] == (tmp_path / "pack.npz").stat().st_size


def test_a_limited_pack_keeps_two_view_lesions_whole(folder_and_split, tmp_path):
    root, split_file = folder_and_split
    info = build_pack(root, split_file, 24, tmp_path / "small.npz", limit=8, workers=1)
    pack = read_pack(tmp_path / "small.npz", workers=1)
    assert 4 <= info["photos"] <= 12
    lesions = {s.lesion_id for s in pack.samples}
    everything = dataset.load_split(split_file, root)
    for sample in everything["train"] + everything["val"]:
        if sample.lesion_id in lesions:
            assert sample in pack.samples
    assert sorted(pack.split["train"] + pack.split["val"]) == sorted(s.path for s in pack.samples)


def test_staged_pack_is_what_train_reads_from_its_cache(folder_and_split, tmp_path):
    from skinscan.training.data import camera_first_subset
    from skinscan.training.train import load_cached

    root, split_file = folder_and_split
    build_pack(root, split_file, 32, tmp_path / "pack.npz", workers=1)
    pack = read_pack(tmp_path / "pack.npz", workers=1)
    data_root, staged_split, cache = gpu.stage(pack, tmp_path / "work", val_limit=3, seed=42)
    assert not any(p.suffix in dataset.IMAGE_SUFFIXES for p in data_root.rglob("*"))  # no photo travels
    split = dataset.load_split(staged_split, data_root)
    original = dataset.load_split(split_file, root)
    assert split["train"] == original["train"] and split["val"] == original["val"]  # metadata rebuilt exactly
    by_path = {s.path: i for i, s in enumerate(pack.samples)}
    for samples in (split["train"], camera_first_subset(split["val"], 3, 42)):
        pixels = load_cached(data_root, samples, 32, cache)  # would fail if it had to decode a photo
        assert np.array_equal(pixels, pack.pixels[[by_path[s.path] for s in samples]])


def test_parts_are_under_the_limit_and_join_back(tmp_path):
    payload = np.random.default_rng(1).integers(0, 256, 2500, dtype=np.uint8).tobytes()
    model = tmp_path / "skinscan-densenet121.h5"
    model.write_bytes(payload)
    (tmp_path / "skinscan-densenet121.json").write_text("{}")
    out = tmp_path / "out"
    files = gpu.bundle(model, out, [tmp_path / "skinscan-densenet121.json"], part_bytes=1000)
    parts = sorted(out.glob("*.part-*"))
    assert [p.stat().st_size for p in parts] == [1000, 1000, 500] and set(parts) <= set(files)
    assert gpu.join_parts(parts, tmp_path / "joined").read_bytes() == payload
    joined = subprocess.run(f"cat {out}/skinscan-densenet121.h5.part-*", shell=True, capture_output=True, check=True)
    assert joined.stdout == payload  # the shell join the fetch script uses
    assert gpu.join_folder(out) == 0 and (out / model.name).read_bytes() == payload
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    broken = bytearray(parts[1].read_bytes())
    broken[10] ^= 1
    parts[1].write_bytes(bytes(broken))
    assert gpu.join_folder(out) == 1


def test_a_part_exactly_at_the_limit_and_an_empty_file(tmp_path):
    exact = tmp_path / "exact.bin"
    exact.write_bytes(b"x" * 64)
    assert [p.stat().st_size for p in gpu.split_parts(exact, tmp_path / "a", 64)] == [64]
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert [p.stat().st_size for p in gpu.split_parts(empty, tmp_path / "b", 64)] == [0]
    assert gpu.PART_BYTES < 16 * 2 ** 20


def test_fetch_and_join_checks_the_sha256_and_writes_the_split(folder_and_split, tmp_path):
    root, split_file = folder_and_split
    build_pack(root, split_file, 24, tmp_path / "pack.npz", workers=1)
    model = tmp_path / "device" / "skinscan-densenet121.h5"
    model.parent.mkdir()
    model.write_bytes(os.urandom(3000))
    import hashlib

    manifest = tmp_path / "device" / "skinscan-densenet121.json"
    manifest.write_text(json.dumps({"sha256": hashlib.sha256(model.read_bytes()).hexdigest()}))
    files_at = tmp_path / "files_at"
    gpu.bundle(model, files_at / "out", [manifest], part_bytes=1024)
    env = {**os.environ, "PYTHON": sys.executable, "PACK": str(tmp_path / "pack.npz")}
    dest = tmp_path / "model"
    done = subprocess.run(["bash", str(REPO / "infra/gpu/fetch_and_join.sh"), str(files_at), str(dest)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (dest / model.name).read_bytes() == model.read_bytes()
    assert "manifest sha256 matches the joined .h5: True" in done.stdout
    assert json.loads((dest / "skinscan-densenet121.split.json").read_text())["test"] == \
        json.loads(split_file.read_text())["test"]

    (files_at / "out" / "skinscan-densenet121.h5.part-001").write_bytes(b"tampered")
    failed = subprocess.run(["bash", str(REPO / "infra/gpu/fetch_and_join.sh"), str(files_at), str(dest)],
                            capture_output=True, text=True, env=env, cwd=REPO)
    assert failed.returncode != 0 and "MISMATCH" in failed.stdout


STUB_PYTHON = r"""#!/usr/bin/env bash
# Stands in for the device's python3: the shell logic runs for real, training is faked.
case "$*" in
  "-m pip install"*) exit 0 ;;
  *"import sys, torch"*) echo "stub imports"; exit 0 ;;
  "-m skinscan.training.gpu train"*)
    while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
    ck="${out%.h5}.checkpoints"; mkdir -p "$ck"; echo '{"epoch": 1}' > "$ck/state.json"
    echo weights > "$ck/last.weights.h5"
    if [ "$STUB_FAIL" = 1 ]; then echo "killed"; exit 124; fi
    head -c 40000 /dev/urandom > "$out"; echo '{"gpu": {}}' > "${out%.h5}.training.json"
    echo '{}' > "${out%.h5}.json"; exit 0 ;;
  "-m skinscan.training.gpu export"*)
    while [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done
    echo "exported"; head -c 30000 /dev/urandom > "$out"; exit 0 ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
"""


def run_script_with_stub(tmp_path, pack, extra_env, *args):
    stub = tmp_path / "python-stub"
    stub.write_text(STUB_PYTHON)
    stub.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(stub), "REAL_PYTHON": sys.executable, "PACK": str(pack), "OUT": str(out),
           "WORK": str(tmp_path / "work"), "PYTHONPATH": str(REPO / "shared"), **extra_env}
    done = subprocess.run(["bash", str(REPO / "infra/gpu/train_on_device.sh"), *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
    return done, out


@pytest.mark.parametrize("fail", [False, True], ids=["trained", "cut-short-exported"])
def test_the_device_script_brings_back_parts_sums_and_log(folder_and_split, tmp_path, fail):
    root, split_file = folder_and_split
    build_pack(root, split_file, 24, tmp_path / "pack.npz", workers=1)
    done, out = run_script_with_stub(tmp_path, tmp_path / "pack.npz", {"STUB_FAIL": "1" if fail else "0"})
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert "skinscan-densenet121.h5.part-000" in names and "SHA256SUMS" in names and "train.log" in names
    assert len(names) <= 8 and all(p.stat().st_size < 16 * 2 ** 20 for p in out.iterdir())
    assert ("exported" in done.stdout) == fail
    assert gpu.join_folder(out) == 0
    assert "== done in" in (out / "train.log").read_text()


def test_an_ablation_arm_brings_back_only_its_figures(folder_and_split, tmp_path):
    root, split_file = folder_and_split
    build_pack(root, split_file, 24, tmp_path / "pack.npz", workers=1)
    done, out = run_script_with_stub(tmp_path, tmp_path / "pack.npz", {"TAG": "nostyle", "KEEP_MODEL": "0"},
                                     "--", "--no-style-augmentation")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["nostyle.training.json", "train-nostyle.log"]
    assert "args: --no-style-augmentation" in (out / "train-nostyle.log").read_text()


def test_the_device_script_says_what_is_missing(tmp_path):
    done, out = run_script_with_stub(tmp_path, tmp_path / "absent.npz", {})
    assert done.returncode != 0 and "missing" in (out / "train.log").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not (TORCH_PYTHON and Path(TORCH_PYTHON).exists()),
                    reason="set SKINSCAN_TORCH_PYTHON to a Python with torch + Keras 3 to run the GPU script on CPU")
def test_device_script_smoke_on_cpu_torch_and_the_model_loads_in_tensorflow(folder_and_split, tmp_path):
    root, split_file = folder_and_split
    pack = tmp_path / "pack.npz"
    build_pack(root, split_file, 32, pack, workers=1)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": TORCH_PYTHON, "PACK": str(pack), "OUT": str(out), "WORK": str(tmp_path / "w"),
           "DEADLINE_S": "300"}
    done = subprocess.run(["bash", str(REPO / "infra/gpu/train_on_device.sh"), "--smoke", "--", "--workers", "1",
                           "--batch-size", "6", "--pairs", "1", "--precision", "fp32"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert all(p.stat().st_size < 16 * 2 ** 20 for p in out.iterdir())
    assert gpu.join_folder(out) == 0
    training = json.loads((out / "skinscan-densenet121.training.json").read_text())
    assert training["gpu"]["check"]["backend"] == "torch"
    assert gpu.verify_reference(out / "skinscan-densenet121.h5", training["gpu"]["check"]) < 1e-4


def test_park_empties_big_tracked_files_and_restore_brings_them_back(tmp_path):
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    big = os.urandom(3 * 2 ** 20)
    (repo / "models" / "model.h5").write_bytes(big)
    (repo / "small.txt").write_text("stays")
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(git + command, cwd=repo, check=True)
    script, env = str(REPO / "infra/gpu/park_models.sh"), {**os.environ, "PARK_DIR": str(tmp_path / "parked")}

    def park(*args):
        return subprocess.run(["bash", script, *args], cwd=repo, env=env, capture_output=True, text=True)

    assert "TOO BIG" not in park("check", "small.txt").stdout
    done = park("park")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "models" / "model.h5").stat().st_size == 0 and (repo / "small.txt").read_text() == "stays"
    assert park("park").returncode != 0  # never overwrites the kept copies
    assert "working tree 0.0 MiB" in park("check", "small.txt").stdout
    done = park("restore")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "models" / "model.h5").read_bytes() == big and not (tmp_path / "parked").exists()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert status == ""
