"""The lent GPU machine's side of training: a pack becomes a photo folder, the runs come back in parts.

The device machine has PyTorch and CUDA but no TensorFlow; it receives the working tree plus a few
carried paths (64 MiB in all) and returns files under 16 MiB each. It trains with the same trainer
as the CPU (``skinscan train``, :mod:`skinscan.training.torch_train`): one training path, not two.
This module only does what is particular to the trip:

* ``stage``: a pack (:mod:`skinscan.training.pack`) becomes what ``skinscan train`` reads - a photo
  folder (lossless PNGs of the packed pixels under their original names) with ``METADATA.csv``, the
  split file, and the pixel cache ``train()`` reads at the pack's size, so the photos are decoded once;
* ``bundle``: the teacher's and the student's ``best.pt`` and ``state.json`` in parts under 16 MiB,
  with ``SHA256SUMS`` covering the parts and the whole files;
* ``join``: back here, the parts become the files again, every sum checked.

``infra/gpu/train_on_device.sh`` drives it; ``infra/gpu/README.md`` says how.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from . import data as dataset

PART_BYTES = 15 * 2 ** 20  # files back from the device are capped at 16 MiB each
PART_MARK = ".part-"
SUMS = "SHA256SUMS"
METADATA_COLUMNS = ("class", "file", "lesion_id", "image_type", "source", "skin_tone_class")
RUN_FILES = ("best.pt", "state.json")  # what each run brings back: the weights to export, and its record


# ---------------------------------------------------------------- parts and sums (both machines)

def split_parts(path: Path, out_dir: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """``<name>.part-000``, ``-001``, ... in ``out_dir``; ``cat <name>.part-*`` joins them back."""
    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    with path.open("rb") as source:
        while True:
            block = source.read(part_bytes)
            if not block and parts:
                break
            part = out_dir / f"{path.name}{PART_MARK}{len(parts):03d}"
            part.write_bytes(block)
            parts.append(part)
            if len(block) < part_bytes:
                break
    return parts


def join_parts(parts: list[Path], out: Path) -> Path:
    """Concatenate parts in name order (what ``cat name.part-*`` does)."""
    out = Path(out)
    with out.open("wb") as sink:
        for part in sorted(Path(p) for p in parts):
            with part.open("rb") as source:
                shutil.copyfileobj(source, sink)
    return out


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle(runs: dict[str, Path], out: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """Each run's :data:`RUN_FILES` under ``out/<name>/``, split where larger than ``part_bytes``.

    ``out/SHA256SUMS`` (``sha256sum -c`` format, paths relative to ``out``) names every file that
    travels and, for a split file, the whole file too, which :func:`join_folder` checks after joining.
    A run that wrote nothing (a failed teacher, say) is skipped; the log says why.
    """
    out = Path(out)
    travelling: list[Path] = []
    wholes: list[tuple[str, str]] = []
    for name, run in runs.items():
        for file_name in RUN_FILES:
            source = Path(run) / file_name
            if not source.is_file():
                continue
            if source.stat().st_size > part_bytes:
                travelling += split_parts(source, out / name, part_bytes)
                wholes.append((sha256(source), f"{name}/{file_name}"))
            else:
                (out / name).mkdir(parents=True, exist_ok=True)
                travelling.append(Path(shutil.copyfile(source, out / name / file_name)))
    lines = [f"{sha256(p)}  {p.relative_to(out).as_posix()}" for p in travelling]
    (out / SUMS).write_text("".join(f"{line}\n" for line in lines + [f"{d}  {n}" for d, n in wholes]))
    return travelling + [out / SUMS]


def join_folder(folder: Path) -> list[str]:
    """Join every ``<name>.part-*`` group under ``folder`` and check every entry of ``SHA256SUMS``.

    Returns the problems found (empty: every file is as the device wrote it). The parts are removed
    only once everything checked out; on a problem the joined files go instead (nothing half-right is
    left to be used by mistake) and the parts stay to be looked at.
    """
    folder = Path(folder)
    sums = folder / SUMS
    if not sums.is_file():
        return [f"no {SUMS} in {folder}"]
    groups: dict[Path, list[Path]] = {}
    for part in folder.rglob(f"*{PART_MARK}*"):
        groups.setdefault(part.with_name(part.name.rsplit(PART_MARK, 1)[0]), []).append(part)
    for whole, parts in groups.items():
        join_parts(parts, whole)
    problems = []
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        path = folder / name.strip()
        if not path.is_file():
            problems.append(f"{name.strip()}: missing")
        elif sha256(path) != digest:
            problems.append(f"{name.strip()}: sha256 MISMATCH")
    for whole, parts in groups.items():
        for path in (parts if not problems else [whole]):
            path.unlink()
    return problems


# ---------------------------------------------------------------- the pack as a photo folder (device)

def cache_file(cache_dir: Path, samples: list[dataset.Sample], size: int) -> Path:
    """The file :func:`skinscan.training.train.load_cached` reads for these samples at this size."""
    key = hashlib.sha256(("\n".join(s.path for s in samples) + f"|{size}").encode()).hexdigest()[:16]
    return Path(cache_dir) / f"pixels-{size}-{key}.npy"


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def stage(pack, work: Path, val_limit: int | None, seed: int, workers: int = 8) -> dict[str, str]:
    """Write the pack as a data folder ``skinscan train`` reads; returns its paths.

    * ``work/data/<class>/<file>``: each packed photo as a lossless PNG under its original name
      (Pillow reads by content), so a run at another size decodes it like any photo;
    * ``work/data/METADATA.csv`` and ``work/split.json`` (the packed split, test paths kept);
    * ``work/cache/``: the pixels at the pack's size for the training photos and the validation
      subset (``val_limit``, ``seed``: the run's own), keyed as ``load_cached`` looks them up.
    """
    work = Path(work)
    root, cache = work / "data", work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    with (root / dataset.METADATA_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(METADATA_COLUMNS)
        for sample, source in zip(pack.samples, pack.sources, strict=True):
            label, name = sample.path.split("/", 1)
            writer.writerow([label, name, sample.lesion_id, sample.photo_type, source,
                             "" if sample.skin_tone is None else sample.skin_tone])

    def write(i: int) -> None:
        path = root / pack.samples[i].path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png(pack.pixels[i]))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(write, range(len(pack.samples))))
    split_file = work / "split.json"
    split_file.write_text(json.dumps(pack.split, indent=1) + "\n")
    split = dataset.load_split(split_file, root)
    index = {s.path: i for i, s in enumerate(pack.samples)}
    for samples in (split["train"], dataset.camera_first_subset(split["val"], val_limit, seed)):
        np.save(cache_file(cache, samples, pack.size), pack.pixels[[index[s.path] for s in samples]])
    return {"data": str(root), "split": str(split_file), "cache": str(cache), "size": str(pack.size)}


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skinscan.training.gpu", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    s = commands.add_parser("stage", help="pack -> photo folder, METADATA.csv, split file and pixel cache")
    s.add_argument("--pack", type=Path, required=True)
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--val-limit", type=int, default=900, help="the training runs' --val-limit")
    s.add_argument("--seed", type=int, default=42, help="the training runs' --seed")
    s.add_argument("--workers", type=int, default=8, help="decoding and writing threads")

    b = commands.add_parser("bundle", help="runs' best.pt and state.json -> parts under 16 MiB + SHA256SUMS")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")

    j = commands.add_parser("join", help="join the parts in FOLDER and check every SHA256SUMS entry")
    j.add_argument("folder", type=Path)

    args = parser.parse_args(argv)
    if args.command == "stage":
        from .pack import read_pack

        pack = read_pack(args.pack, workers=args.workers)
        paths = stage(pack, args.work, args.val_limit, args.seed, args.workers)
        print(f"staged {len(pack.samples)} photos at {pack.size}px ({pack.info.get('codec')} "
              f"q{pack.info.get('quality')}, {pack.info.get('psnr_db_mean')} dB): {json.dumps(paths)}", flush=True)
    elif args.command == "bundle":
        runs = dict(item.split("=", 1) for item in args.runs)
        for path in bundle({k: Path(v) for k, v in runs.items()}, args.out):
            print(f"{path.relative_to(args.out)}  {path.stat().st_size} bytes")
    else:
        problems = join_folder(args.folder)
        for problem in problems:
            print(problem)
        if problems:
            print(f"{args.folder}: NOT as the device wrote it; do not use these files", file=sys.stderr)
            return 1
        print(f"{args.folder}: parts joined, every sha256 in {SUMS} checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
