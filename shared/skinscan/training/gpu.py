"""The GPU path: train the full recipe on a lent GPU machine from a pack, bring the model back in parts.

The device machine has PyTorch but no TensorFlow, so Keras 3 runs there on the
torch backend (``KERAS_BACKEND=torch``). Nothing in :mod:`skinscan.training.train`
changes for it; this module only sets the stage:

* the photos come from a pack (:mod:`skinscan.training.pack`), decoded once
  into memory with 16 threads and handed to training through the pixel cache
  that ``skinscan train --cache`` already reads (same file name, same key), next
  to a ``METADATA.csv`` and the split file, so ``train()`` never touches a photo;
* mixed precision (``mixed_bfloat16``) is set before the network is built;
  ``train()`` rebuilds a float32 network before saving, so the ``.h5`` is the
  usual float32 model that TensorFlow Keras loads;
* more batch-building threads (``TrainConfig.workers``), cuDNN autotuning;
* a short probe measures the real epoch time on the machine and sizes the
  number of epochs so the cosine schedule ends inside a hard deadline;
* the ``.h5`` leaves the machine in parts smaller than 16 MiB, with SHA256SUMS.

``infra/gpu/train_on_device.sh`` drives it; ``infra/gpu/README.md`` says how.
"""

from __future__ import annotations

import argparse
import csv
import gc
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import data as dataset

PART_BYTES = 15 * 2 ** 20  # files back from the device are capped at 16 MiB each
METADATA_COLUMNS = ("class", "file", "lesion_id", "image_type", "source", "skin_tone_class")


# ---------------------------------------------------------------- parts (both machines, no Keras)

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
            part = out_dir / f"{path.name}.part-{len(parts):03d}"
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


def write_sums(files: list[Path], out: Path) -> None:
    """``sha256sum -c`` format, names relative to ``out``'s folder."""
    Path(out).write_text("".join(f"{sha256(f)}  {Path(f).name}\n" for f in files))


def bundle(model: Path, out_dir: Path, extra: list[Path], part_bytes: int = PART_BYTES) -> list[Path]:
    """The model in parts plus the small files beside it, and SHA256SUMS covering the whole ``.h5`` too."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = split_parts(model, out_dir, part_bytes)
    copied = []
    for path in extra:
        if Path(path).exists():
            target = out_dir / Path(path).name
            if Path(path).resolve() != target.resolve():
                shutil.copyfile(path, target)
            copied.append(target)
    sums = out_dir / "SHA256SUMS"
    write_sums(copied + parts, sums)
    with sums.open("a") as handle:  # the joined file, checked after `cat`
        handle.write(f"{sha256(model)}  {Path(model).name}\n")
    return parts + copied + [sums]


# ---------------------------------------------------------------- the pack as training's inputs

def cache_file(cache_dir: Path, samples: list[dataset.Sample], size: int) -> Path:
    """The file :func:`skinscan.training.train.load_cached` reads for these samples at this size."""
    key = hashlib.sha256(("\n".join(s.path for s in samples) + f"|{size}").encode()).hexdigest()[:16]
    return Path(cache_dir) / f"pixels-{size}-{key}.npy"


def stage(pack, work: Path, val_limit: int | None, seed: int) -> tuple[Path, Path, Path]:
    """Write what ``train()`` reads (metadata, split, pixel caches) from a decoded pack.

    Returns ``(data_root, split_file, cache_dir)``. The data root holds only
    ``METADATA.csv``: every photo ``train()`` asks for is already in the cache.
    """
    from .data import camera_first_subset

    work = Path(work)
    root, cache = work / "data", work / "cache"
    root.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    with (root / dataset.METADATA_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(METADATA_COLUMNS)
        for sample, source in zip(pack.samples, pack.sources):
            label, name = sample.path.split("/", 1)
            writer.writerow([label, name, sample.lesion_id, sample.image_type, source,
                             "" if sample.skin_tone is None else sample.skin_tone])
    split_file = work / pack.info.get("split_file", "split.json")
    split_file.write_text(json.dumps(pack.split, indent=1) + "\n")
    split = dataset.load_split(split_file, root)
    index = {s.path: i for i, s in enumerate(pack.samples)}
    for samples in (split["train"], camera_first_subset(split["val"], val_limit, seed)):
        np.save(cache_file(cache, samples, pack.size), pack.pixels[[index[s.path] for s in samples]])
    return root, split_file, cache


# ---------------------------------------------------------------- training on the device

def configure_torch() -> str:
    """cuDNN autotuning and TF32 where there is a GPU; returns a line describing the device."""
    import torch

    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        props = torch.cuda.get_device_properties(0)
        return f"{props.name}, {props.total_memory / 2 ** 30:.0f} GiB, torch {torch.__version__}"
    return f"CPU only ({os.cpu_count()} cores), torch {torch.__version__}"


def set_precision(precision: str) -> None:
    import keras

    keras.mixed_precision.set_global_policy({"bf16": "mixed_bfloat16", "fp16": "mixed_float16",
                                             "fp32": "float32"}[precision])


def use_processes(enabled: bool) -> None:
    """Build batches in worker processes instead of threads (``train.py`` asks for threads).

    Kept off by default: threads are what ``train()`` was tested with; this is a
    switch to try when the probe shows the GPU waiting for batches.
    """
    if not enabled:
        return
    from . import fit

    base = fit.TrainingBatches
    if getattr(base, "_skinscan_processes", False):
        return

    class ProcessBatches(base):  # type: ignore[misc, valid-type]
        _skinscan_processes = True

        def __init__(self, *args, **kwargs):
            kwargs["use_multiprocessing"] = True
            super().__init__(*args, **kwargs)

    fit.TrainingBatches = ProcessBatches


def probe_epoch_seconds(config, x_train: np.ndarray, y_train: np.ndarray, samples, val_count: int,
                        steps: int, warm_steps: int = 6, timed_steps: int = 20) -> dict[str, float]:
    """Time real training steps (augmentation threads included) and one validation pass.

    Builds the same network, trainer and batches as ``train()`` and throws them
    away; the cuDNN autotuning it triggers stays warm for the real run.
    """
    import keras

    from ..imaging import Preprocessing
    from ..labels import LABELS
    from . import fit
    from .sampling import BatchSampler
    from .train import build_network

    preprocessing = Preprocessing(size=config.image_size)
    sampler = BatchSampler(samples, len(LABELS), batch_size=config.batch_size, pairs=config.pairs_per_batch,
                           class_power=config.class_power, clinical_share=config.clinical_share)
    network = build_network(config)
    trainer = fit.TwoViewTrainer(network, sampler.pairs, config.consistency, config.label_smoothing)
    trainer.compile(optimizer=keras.optimizers.AdamW(config.learning_rate * 0.1, weight_decay=config.weight_decay))

    def batches(n: int):
        # threads or processes: whatever train() will get (see use_processes)
        return fit.TrainingBatches(x_train, y_train, sampler, n, preprocessing, config.augmentation, len(LABELS),
                                   config.seed + 1, workers=config.workers, max_queue_size=8)

    started = time.time()
    trainer.fit(batches(warm_steps), epochs=1, verbose=0)
    warm = time.time() - started
    started = time.time()
    trainer.fit(batches(timed_steps), epochs=1, verbose=0)
    step = (time.time() - started) / timed_steps
    images = np.zeros((min(val_count, 1024), config.image_size, config.image_size, 3), np.float32)
    network.predict(images[:64], batch_size=64, verbose=0)
    started = time.time()
    network.predict(images, batch_size=64, verbose=0)
    val = (time.time() - started) * max(1, val_count) / max(1, len(images))
    del trainer, network
    gc.collect()
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - no torch or no GPU: nothing to free
        pass
    epoch = steps * step + val + 1.0  # + two weight files written per epoch
    return {"warm_up_s": round(warm, 1), "step_s": round(step, 4), "images_per_s": round(config.batch_size / step, 1),
            "validation_s": round(val, 2), "epoch_s": round(epoch, 1)}


def train_from_pack(args: argparse.Namespace) -> dict[str, Any]:
    script_started = time.time()
    deadline = args.deadline or (script_started + 9.0 * 60)
    device = configure_torch()
    import keras

    from ..labels import LABELS
    from .augment import AugmentConfig
    from .pack import read_pack
    from .train import TrainConfig, train

    print(f"device: {device}; keras {keras.__version__} on {keras.backend.backend()}", flush=True)
    started = time.time()
    pack = read_pack(args.pack, workers=args.decode_workers)
    print(f"pack: {len(pack.samples)} photos at {pack.size}px decoded in {time.time() - started:.1f}s "
          f"({pack.info.get('codec')} q{pack.info.get('quality')}, {pack.info.get('psnr_db_mean')} dB)", flush=True)
    root, split_file, cache = stage(pack, args.work, args.val_limit, args.seed)
    x_train, train_samples = pack.select("train")
    split = dataset.load_split(split_file, root)
    order = {s.path: i for i, s in enumerate(train_samples)}
    x_train = x_train[[order[s.path] for s in split["train"]]]
    y_train = np.array([s.label for s in split["train"]])
    val_count = len(split["val"]) if not args.val_limit else min(args.val_limit, len(split["val"]))
    del pack
    gc.collect()

    set_precision(args.precision)
    use_processes(args.processes)
    steps = args.steps_per_epoch or max(1, len(split["train"]) // args.batch_size)
    config = TrainConfig(
        data=root, out=Path(args.out), image_size=int(x_train.shape[1]), epochs=args.epochs or 1000,
        steps_per_epoch=steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        warmup_epochs=args.warmup_epochs, class_power=args.class_power, clinical_share=args.clinical_share,
        pairs_per_batch=args.pairs, consistency=args.consistency,
        augmentation=AugmentConfig(style=not args.no_style_augmentation), val_limit=args.val_limit,
        seed=args.seed, split_file=split_file, cache_dir=cache, workers=args.workers, verbose=args.verbose)

    probe: dict[str, float] = {}
    if not args.epochs:
        probe = probe_epoch_seconds(config, x_train, y_train, split["train"], val_count, steps,
                                    args.probe_warm_steps, args.probe_steps)
        print(f"probe: {json.dumps(probe)}", flush=True)
    del x_train
    budget_s = deadline - time.time() - args.reserve_seconds
    if budget_s < 60:
        raise SystemExit(f"only {budget_s:.0f}s left before the deadline: not starting")
    if not args.epochs:
        config.epochs = max(args.min_epochs, int(budget_s * 0.97 / probe["epoch_s"]))
        if args.max_epochs:
            config.epochs = min(config.epochs, args.max_epochs)
    config.time_budget_minutes = budget_s / 60
    print(f"training: {config.epochs} epochs x {steps} steps x batch {config.batch_size} at {config.image_size}px, "
          f"{args.precision}, {config.workers} batch {'processes' if args.processes else 'threads'}, "
          f"budget {budget_s:.0f}s, "
          f"{len(LABELS)} classes", flush=True)
    summary = train(config)
    summary["gpu"] = {"device": device, "precision": args.precision, "probe": probe,
                      "batch_threads": config.workers, "batch_processes": bool(args.processes),
                      "pack": {k: v for k, v in read_pack_info(args.pack).items() if k != "decoded_as"},
                      "check": reference_check(Path(args.out), config.image_size),
                      "script_seconds": round(time.time() - script_started, 1)}
    Path(args.out).with_name(Path(args.out).stem + ".training.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


CHECK_SEED = 20261127


def check_input(size: int, count: int = 4) -> np.ndarray:
    """A fixed batch (random photos, normalised as training does) to compare backends on."""
    from ..imaging import Preprocessing

    pixels = np.random.default_rng(CHECK_SEED).integers(0, 256, (count, size, size, 3)).astype(np.float32)
    return Preprocessing(size=size).normalize(pixels).astype(np.float32)


def reference_check(model_path: Path, size: int) -> dict[str, Any]:
    """Reload the saved ``.h5`` on this backend and record its answer to :func:`check_input`."""
    import keras

    model = keras.models.load_model(model_path, compile=False)
    probabilities = np.asarray(keras.ops.convert_to_numpy(model(check_input(size), training=False)),
                               dtype=np.float64)
    return {"seed": CHECK_SEED, "count": len(probabilities), "size": size, "backend": keras.backend.backend(),
            "probabilities": probabilities.round(8).tolist()}


def verify_reference(model_path: Path, check: dict[str, Any]) -> float:
    """Max |difference| between this backend's answer (TensorFlow here) and the device's recorded one."""
    import keras

    model = keras.models.load_model(model_path, compile=False)
    ours = np.asarray(model.predict(check_input(int(check["size"]), int(check["count"])), verbose=0))
    return float(np.max(np.abs(ours - np.array(check["probabilities"]))))


def read_pack_info(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["info_json"]))


def export_checkpoint(checkpoints: Path, out: Path, image_size: int, dropout: float = 0.3) -> Path:
    """The fallback when training was cut short: best (else last) checkpoint -> float32 ``.h5`` + manifest."""
    import keras

    from ..imaging import Preprocessing
    from ..manifest import manifest_path_for, new_manifest, write_manifest
    from .train import TrainConfig, build_network

    checkpoints, out = Path(checkpoints), Path(out)
    weights = checkpoints / "best.weights.h5"
    if not weights.exists():
        weights = checkpoints / "last.weights.h5"
    keras.mixed_precision.set_global_policy("float32")
    network = build_network(TrainConfig(data=Path("."), out=out, image_size=image_size, dropout=dropout))
    network.load_weights(weights)
    network.save(out, include_optimizer=False)
    state_file = checkpoints / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    training = {k: state.get(k) for k in ("epoch", "best_epoch", "best_val", "seconds")}
    training["exported_from"] = weights.name
    version = f"densenet121-{image_size}px-v2-{time.strftime('%Y%m%d-%H%M', time.gmtime())}-gpu-partial"
    write_manifest(new_manifest(out, Preprocessing(size=image_size).to_dict(), version, training=training),
                   manifest_path_for(out))
    summary_file = out.with_name(out.stem + ".training.json")
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {"state": state}
    summary.setdefault("gpu", {})["check"] = reference_check(out, image_size)
    summary["gpu"]["exported_from"] = str(weights)
    summary_file.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"exported {weights} -> {out}", flush=True)
    return out


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skinscan.training.gpu", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("train", help="train from a pack (Keras 3 on KERAS_BACKEND=torch)")
    t.add_argument("--pack", type=Path, default=Path("runs/gpu/pack.npz"))
    t.add_argument("--work", type=Path, default=Path("/tmp/skinscan-gpu"))
    t.add_argument("--out", type=Path, default=None, help="the .h5 (default: WORK/skinscan-densenet121.h5)")
    t.add_argument("--deadline", type=float, help="unix time by which everything must have ended")
    t.add_argument("--reserve-seconds", type=float, default=60.0,
                   help="kept back from the budget for the final save (default 60)")
    t.add_argument("--epochs", type=int, default=0, help="0: size from the probe to fit the deadline")
    t.add_argument("--min-epochs", type=int, default=4)
    t.add_argument("--max-epochs", type=int, default=0, help="cap on the probe's choice (0: none)")
    t.add_argument("--probe-warm-steps", type=int, default=6)
    t.add_argument("--probe-steps", type=int, default=20, help="timed training steps of the probe")
    t.add_argument("--steps-per-epoch", type=int, default=0, help="0: one pass over the training photos")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--learning-rate", type=float, default=2e-3)
    t.add_argument("--warmup-epochs", type=int, default=2)
    t.add_argument("--pairs", type=int, default=8, help="two-view lesions per batch (0: off)")
    t.add_argument("--consistency", type=float, default=0.3)
    t.add_argument("--class-power", type=float, default=0.35)
    t.add_argument("--clinical-share", type=float, default=0.35)
    t.add_argument("--no-style-augmentation", action="store_true")
    t.add_argument("--val-limit", type=int, default=900)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default="bf16")
    t.add_argument("--workers", type=int, default=min(14, os.cpu_count() or 2), help="batch-building threads")
    t.add_argument("--processes", action="store_true", help="build batches in processes, not threads")
    t.add_argument("--decode-workers", type=int, default=os.cpu_count() or 2)
    t.add_argument("--verbose", type=int, default=2)

    e = commands.add_parser("export", help="checkpoint directory -> float32 .h5 (when training was cut short)")
    e.add_argument("--checkpoints", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--image-size", type=int, required=True)

    b = commands.add_parser("bundle", help="split the .h5 into < 16 MiB parts, copy the JSON files, SHA256SUMS")
    b.add_argument("--model", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("files", type=Path, nargs="*")

    j = commands.add_parser("join", help="join <name>.part-* back into <name> and check SHA256SUMS")
    j.add_argument("folder", type=Path)
    j.add_argument("--out", type=Path, help="the joined file (default: FOLDER/<name>)")

    v = commands.add_parser("verify", help="load the .h5 on this backend and compare with the device's answer")
    v.add_argument("--model", type=Path, required=True)
    v.add_argument("--training-json", type=Path, required=True)
    v.add_argument("--tolerance", type=float, default=1e-4)

    args = parser.parse_args(argv)
    if args.command == "train":
        args.out = args.out or args.work / "skinscan-densenet121.h5"
        train_from_pack(args)
    elif args.command == "export":
        export_checkpoint(args.checkpoints, args.out, args.image_size)
    elif args.command == "bundle":
        for path in bundle(args.model, args.out, args.files):
            print(f"{path}  {path.stat().st_size} bytes")
    elif args.command == "join":
        return join_folder(args.folder, args.out)
    elif args.command == "verify":
        check = json.loads(Path(args.training_json).read_text()).get("gpu", {}).get("check")
        if not check:
            print(f"{args.training_json} holds no gpu.check")
            return 1
        import keras

        difference = verify_reference(args.model, check)
        ok = difference <= args.tolerance
        print(f"{args.model} on {keras.backend.backend()} vs the device ({check['backend']}): max |dp| "
              f"{difference:.2e} (tolerance {args.tolerance:g}) -> {'OK' if ok else 'MISMATCH'}")
        return 0 if ok else 1
    return 0


def join_folder(folder: Path, out: Path | None = None) -> int:
    folder = Path(folder)
    names = sorted({p.name.rsplit(".part-", 1)[0] for p in folder.glob("*.part-*")})
    if len(names) != 1:
        print(f"expected the parts of one file in {folder}, found {names}")
        return 1
    target = Path(out) if out else folder / names[0]
    join_parts(sorted(folder.glob(f"{names[0]}.part-*")), target)
    expected = {}
    sums = folder / "SHA256SUMS"
    if sums.exists():
        for line in sums.read_text().splitlines():
            digest, name = line.split(maxsplit=1)
            expected[name.strip()] = digest
    actual = sha256(target)
    if expected.get(names[0]) != actual:
        print(f"{target}: sha256 {actual} does not match SHA256SUMS ({expected.get(names[0])})")
        return 1
    print(f"{target}: joined, sha256 {actual} OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
