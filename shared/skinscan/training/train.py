"""Train the seed DenseNet121 from scratch on a folder of labelled photos.

Nothing is downloaded: the network starts from random weights (or from a
local weights file given with ``--weights``). Photos are decoded once into
memory exactly as serving decodes them; each batch is drawn by
:class:`~skinscan.training.sampling.BatchSampler` (balanced over classes and
photo types, two views of MILK10k lesions side by side) and augmented by
:mod:`~skinscan.training.augment` to hide the photo's style.

A run checkpoints its weights every epoch (``<out>.checkpoints/``) and can be
continued later, even in another session, with ``resume``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..imaging import Preprocessing
from ..labels import LABELS
from . import data as dataset
from .augment import AugmentConfig


@dataclass
class TrainConfig:
    data: Path
    out: Path
    image_size: int = 160
    epochs: int | None = None  # default 30; on --resume, None keeps the run's own schedule
    steps_per_epoch: int | None = None  # default: one pass over the training photos' count
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    dropout: float = 0.3
    label_smoothing: float = 0.05
    class_power: float = 0.35  # 0: every class equally often; 1: as often as in the data
    clinical_share: float = 0.35  # least share of camera photos inside a class that has both types
    pairs_per_batch: int = 4  # lesions shown as camera + dermoscope views in every batch
    consistency: float = 0.3  # weight of the two-view agreement term
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    val_limit: int | None = 900  # validation photos scored after every epoch (all camera photos kept)
    time_budget_minutes: float | None = None
    patience: int | None = None
    seed: int = 42
    architecture: str = "densenet121"
    weights: Path | None = None
    init_model: Path | None = None  # warm start: every weight from this trained skinscan .h5
    split_file: Path | None = None
    resume: Path | None = None  # a checkpoint directory (or a file inside it) written by an earlier run
    cache_dir: Path | None = None
    workers: int = 2
    verbose: int = 2


def checkpoint_dir(out: Path) -> Path:
    return Path(out).with_name(Path(out).stem + ".checkpoints")


def load_cached(root: Path, samples: list[dataset.Sample], size: int, cache_dir: Path | None) -> np.ndarray:
    """Decode the photos once (two threads), and keep them on disk for the next run."""
    key = hashlib.sha256(("\n".join(s.path for s in samples) + f"|{size}").encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"pixels-{size}-{key}.npy" if cache_dir else None
    if cache and cache.exists():
        return np.load(cache)
    started = time.time()
    with ThreadPoolExecutor(max_workers=2) as pool:
        pixels = np.stack(list(pool.map(lambda s: dataset.decode_sample(root, s, size), samples)))
    print(f"decoded {len(samples)} photos at {size}px in {time.time() - started:.0f}s", flush=True)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, pixels)
    return pixels


def learning_rate(epoch: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then a cosine down to 2% of ``base`` at the last epoch."""
    if epoch < warmup:
        return base * (epoch + 1) / warmup
    progress = (epoch - warmup) / max(1, total - warmup - 1)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def figures_by_type(probabilities: np.ndarray, truth: np.ndarray, types: list[str]) -> dict[str, float]:
    from ..metrics import balanced_accuracy

    predicted = probabilities.argmax(1)
    result: dict[str, float] = {}
    parts = []
    for kind in dataset.PHOTO_TYPES:
        mask = np.array([t == kind for t in types])
        if not mask.any():
            continue
        top1 = float(np.mean(predicted[mask] == truth[mask]))
        balanced = balanced_accuracy(truth[mask], predicted[mask], len(LABELS))
        result[f"{kind}_top1"], result[f"{kind}_balanced"] = round(top1, 4), round(balanced, 4)
        parts += [top1, balanced]
    result["score"] = round(float(np.mean(parts)) if parts else float(np.mean(predicted == truth)), 4)
    return result


def parent_training_lesions(init_model: Path, samples: list[dataset.Sample]) -> set[str]:
    """The lesions of every photo the parent model trained or was validated on (from its split file)."""
    parent_split = Path(init_model).with_name(Path(init_model).stem + ".split.json")
    if not parent_split.exists():
        raise FileNotFoundError(f"{parent_split}: a warm start needs the parent's split, or test figures would "
                                "include photos it trained on")
    payload = json.loads(parent_split.read_text())
    seen = set(payload["train"]) | set(payload["val"])
    return {s.group for s in samples if s.path in seen}


def build_network(config: TrainConfig):
    from .architecture import ARCHITECTURES, SEED_PARAMETER_COUNT

    network = ARCHITECTURES[config.architecture](config.image_size, config.dropout,
                                                 str(config.weights) if config.weights else None)
    if config.architecture == "densenet121" and network.count_params() != SEED_PARAMETER_COUNT:
        raise RuntimeError(f"DenseNet121 head has {network.count_params()} parameters, not {SEED_PARAMETER_COUNT}")
    return network


def train(config: TrainConfig) -> dict[str, Any]:
    import keras

    from . import fit
    from .sampling import BatchSampler

    keras.utils.set_random_seed(config.seed)
    started = time.time()
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoints = checkpoint_dir(out)
    preprocessing = Preprocessing(size=config.image_size)

    state: dict[str, Any] = {}
    if config.resume:
        resume_dir = Path(config.resume) if Path(config.resume).is_dir() else Path(config.resume).parent
        state = json.loads((resume_dir / "state.json").read_text())
        checkpoints = resume_dir

    split_path = Path(config.split_file) if config.split_file else out.with_name(out.stem + ".split.json")
    if split_path.exists():
        split = dataset.load_split(split_path, config.data)
    else:
        samples = dataset.discover(config.data)
        parent_lesions = parent_training_lesions(config.init_model, samples) if config.init_model else set()
        split = dataset.stratified_split(samples, seed=config.seed, train_only=parent_lesions)
        note = (f"warm start from {Path(config.init_model).name}: the {len(parent_lesions)} lesions it trained or "
                "validated on are all in train" if config.init_model else None)
        dataset.save_split(split, split_path, config.seed, note)

    train_samples = split["train"]
    val_samples = dataset.camera_first_subset(split["val"], config.val_limit, config.seed)
    print(f"{len(train_samples)} training photos {dataset.type_counts(train_samples)}, "
          f"{len(val_samples)} validation photos per epoch, {config.image_size}px", flush=True)
    x_train = load_cached(config.data, train_samples, config.image_size, config.cache_dir)
    y_train = np.array([s.label for s in train_samples])
    x_val = preprocessing.normalize(load_cached(config.data, val_samples, config.image_size,
                                                config.cache_dir).astype(np.float32)).astype(np.float32)
    y_val = np.array([s.label for s in val_samples])
    val_types = [s.photo_type for s in val_samples]

    sampler = BatchSampler(train_samples, len(LABELS), batch_size=config.batch_size, pairs=config.pairs_per_batch,
                           class_power=config.class_power, clinical_share=config.clinical_share)
    steps = config.steps_per_epoch or max(1, len(train_samples) // config.batch_size)
    batches = fit.TrainingBatches(x_train, y_train, sampler, steps, preprocessing, config.augmentation,
                                  len(LABELS), config.seed, workers=config.workers,
                                  use_multiprocessing=False, max_queue_size=8)

    network = build_network(config)
    if config.init_model and not state:
        network.set_weights(keras.models.load_model(config.init_model, compile=False).get_weights())
        print(f"warm start: every weight from {config.init_model}", flush=True)
    if state:
        network.load_weights(checkpoints / "last.weights.h5")
        print(f"resumed from {checkpoints} after epoch {state['epoch']} of {state['total_epochs']}", flush=True)
    trainer = fit.TwoViewTrainer(network, sampler.pairs, config.consistency, config.label_smoothing)
    trainer.compile(optimizer=keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay))

    def validate(model) -> dict[str, float]:
        return figures_by_type(model.predict(x_val, batch_size=64, verbose=0), y_val, val_types)

    total = int(config.epochs or state.get("total_epochs") or 30)
    if state and config.epochs:
        state["total_epochs"] = total  # a resumed run given --epochs follows the new cosine
    control = fit.EpochControl(network, total, config.learning_rate, config.warmup_epochs, validate, checkpoints,
                               state, config.time_budget_minutes * 60 if config.time_budget_minutes else None,
                               batches, fit_to_budget=not state or bool(config.epochs))
    trainer.fit(batches, epochs=total, initial_epoch=int(state.get("epoch", 0)), callbacks=[control],
                verbose=config.verbose)

    finished = state.get("epoch", 0) >= total
    best = checkpoints / "best.weights.h5"
    if best.exists():
        network.load_weights(best)
    keras.mixed_precision.set_global_policy("float32")
    clean = build_network(config)  # plain float32 layers, whatever policy trained it
    clean.set_weights(network.get_weights())
    clean.save(out, include_optimizer=False)

    from ..manifest import manifest_path_for, new_manifest, sha256_file

    summary = {
        "data": str(config.data),
        "split_file": split_path.name,
        "split_counts": {name: len(split[name]) for name in dataset.SPLITS},
        "split_photo_types": {name: dataset.type_counts(split[name]) for name in dataset.SPLITS},
        "train_class_counts": dataset.class_counts(train_samples),
        "sampling_class_share": {LABELS[c]: round(w, 4) for c, w in sampler.class_share.items()},
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "finished_schedule": finished,
        "epochs_run": state.get("epoch"),
        "total_epochs": total,
        "best_epoch": state.get("best_epoch"),
        "best_val": state.get("best_val"),
        "seconds": state.get("seconds"),
        "hardware": f"{os.cpu_count()} CPU cores, Keras backend {keras.backend.backend()}",
        "history": state.get("history", []),
    }
    version = f"densenet121-{config.image_size}px-v2-{time.strftime('%Y%m%d-%H%M', time.gmtime())}"
    new = new_manifest(out, preprocessing.to_dict(), version,
                       training={k: summary[k] for k in ("split_counts", "epochs_run", "best_epoch", "best_val",
                                                         "seconds", "hardware")})
    from ..manifest import write_manifest

    write_manifest(new, manifest_path_for(out))
    out.with_name(out.stem + ".training.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"saved {out} (sha256 {sha256_file(out)[:12]}...), best epoch {summary['best_epoch']}: "
          f"{summary['best_val']} in {time.time() - started:.0f}s", flush=True)
    return summary
